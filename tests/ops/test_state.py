"""The state files: who wrote them, which are stale, where they live (plain Python).

A file names its child by pid and start time and its server by the parent's
pid and start time, so a reused pid or a dead child's file is pruned, and a
live child of another server is left alone.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modpy_safe.ops import state


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def _write(directory: Path, name: str, **fields: object) -> Path:
    path = directory / state.CHILDREN / name
    path.write_text(json.dumps(fields))
    return path


def test_stale_files_are_pruned_and_other_servers_left_alone(tmp_path: Path) -> None:
    directory = state.ensure_directory(tmp_path / "s")
    me = state.identity()
    assert me.started > 0 and me.parent_started > 0
    mine = me.as_dict()
    _write(directory, f"{me.pid}-a.json", **mine, interpreter="a")
    reused = _write(directory, f"{me.pid}-b.json", **dict(mine, started=me.started + 1))
    dead_pid = _dead_pid()
    dead = _write(directory, f"{dead_pid}-a.json", **dict(mine, pid=dead_pid))
    other = _write(directory, f"{me.pid}-c.json", **dict(mine, ppid=me.ppid + 1))
    corrupt = directory / state.CHILDREN / "1-x.json"
    corrupt.write_text("{not json")

    live, pruned = state.read_states(directory, me)
    assert [d["interpreter"] for d in live] == ["a"]
    assert sorted(pruned) == sorted([1, me.pid, dead_pid])
    assert not reused.exists() and not dead.exists() and not corrupt.exists()
    assert other.exists()


def test_a_written_state_reads_back(tmp_path: Path) -> None:
    directory = state.ensure_directory(tmp_path / "s")
    me = state.identity()
    path = state.state_path(directory, me, "tag")
    state.write_state(path, dict(me.as_dict(), modules=["x"]))
    (doc,), _ = state.read_states(directory, me)
    assert doc["modules"] == ["x"]
    state.remove_state(path)
    assert state.read_states(directory, me) == ([], [])


def test_the_directory_is_chosen_per_server(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    found, why = state.choose_directory(None, str(root), "run/httpd.pid")
    assert found == root / "run" / "modpy_safe" and "PidFile" in why
    found, why = state.choose_directory("state", str(root), "run/httpd.pid")
    assert found == root / "state" and "modpy_safe.status.directory" in why
    # A PidFile directory httpd's user cannot write in: a private one in the temp dir,
    # different for two servers.
    first, why = state.choose_directory(None, "/etc/apache2", "/nonexistent/apache2.pid", uid=33)
    second, _ = state.choose_directory(None, "/etc/apache2-two", "/nonexistent/apache2.pid", uid=33)
    assert first.name.startswith("modpy_safe-33-") and first != second
    assert "temporary" in why


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_directory_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "theirs"
    path.mkdir()
    os.chown(path, 65534, 65534)
    with pytest.raises(state.DirectoryError, match="belongs to uid 65534"):
        state.ensure_directory(path)


def test_metrics_directories_of_stopped_servers_are_removed(tmp_path: Path) -> None:
    directory = state.ensure_directory(tmp_path / "s")
    me = state.identity()
    current = state.metrics_directory(directory, me)
    gone = directory / f"{state.METRICS_PREFIX}{_dead_pid()}-1"
    gone.mkdir()
    assert state.prune_metrics_directories(directory, me) == [gone]
    assert current.exists() and not gone.exists()
