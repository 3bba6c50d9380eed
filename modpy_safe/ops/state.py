"""Where each httpd child publishes its state, and how the others read it back.

Every child (and every Python interpreter in it) writes one small JSON file,
``<directory>/children/<pid>-<tag>.json``, so a status page served by any child
can show all of them without a daemon. A file names the child by its pid *and*
the time the kernel started it, and the server by its parent's pid and start
time: a pid that was reused by another process, or a file left by a server
that was stopped, is recognised as stale and removed by the next reader.

Metrics live beside it in one directory per server run
(``metrics-<parent pid>-<parent start>``), in prometheus_client's multiprocess
file format (see :mod:`modpy_safe.ops.metrics`).

The directory is ``PythonOption modpy_safe.status.directory`` (server level),
else ``modpy_safe`` next to the server's ``PidFile`` when the child may write
there, else a private directory under the temporary directory, named after the
server (``ServerRoot`` and ``PidFile``) so two servers never mix.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "Identity", "alive", "start_time", "identity", "is_current", "choose_directory",
    "ensure_directory",
    "state_path", "write_state", "remove_state", "read_states", "metrics_directory",
    "prune_metrics_directories", "DirectoryError",
]

CHILDREN = "children"
METRICS_PREFIX = "metrics-"


class DirectoryError(RuntimeError):
    """The state directory cannot be used (not ours, not a directory, not writable)."""


def start_time(pid: int) -> int:
    """Return when the kernel started process ``pid`` (clock ticks since boot), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw.rsplit(b")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 of stat(5), counted from field 3
    except (IndexError, ValueError):
        return 0


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who wrote a state file: the child and the server (parent) it belongs to."""

    pid: int
    started: int
    ppid: int
    parent_started: int

    def as_dict(self) -> dict[str, int]:
        """Return the identity as the JSON fields of a state file."""
        return dataclasses.asdict(self)


def identity() -> Identity:
    """Return the identity of this process."""
    pid, ppid = os.getpid(), os.getppid()
    return Identity(pid, start_time(pid), ppid, start_time(ppid))


def alive(pid: int, started: int) -> bool:
    """Return True when process ``pid`` exists and was started at ``started`` (0: unknown)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user: only the start time can tell whose
    now = start_time(pid)
    # Without /proc nothing better than the pid is known: trust it.
    return now == 0 or started == 0 or now == started


def is_current(doc: dict[str, Any], server: Identity) -> bool | None:
    """Return True for a live child of ``server``, False if stale, None for another server's.

    Stale: its process is gone, or its pid now belongs to a process started
    at another time (pid reuse). A live process under another parent is left
    alone: it belongs to another server sharing the directory.
    """
    try:
        pid, started = int(doc["pid"]), int(doc["started"])
        ppid, parent_started = int(doc["ppid"]), int(doc["parent_started"])
    except (KeyError, TypeError, ValueError):
        return False
    if not alive(pid, started):
        return False
    if ppid != server.ppid or (parent_started and server.parent_started
                               and parent_started != server.parent_started):
        return None
    return True


def choose_directory(option: str | None, server_root: str, pidfile: str | None,
                     uid: int | None = None) -> tuple[Path, str]:
    """Return the state directory for a server and a phrase saying why it was chosen.

    ``option`` is ``modpy_safe.status.directory`` when set; ``pidfile`` is the
    ``PidFile`` directive (relative to ``server_root``) or None.
    """
    uid = os.getuid() if uid is None else uid
    if option:
        path = Path(os.path.expandvars(option))
        return (path if path.is_absolute() else Path(server_root) / path,
                "PythonOption modpy_safe.status.directory")
    pid_path = Path(os.path.expandvars(pidfile.strip('"'))) if pidfile else None
    if pid_path is not None and not pid_path.is_absolute():
        pid_path = Path(server_root) / pid_path
    if pid_path is not None:
        beside = pid_path.parent / "modpy_safe"
        if _usable(beside, uid) or (not beside.exists() and os.access(pid_path.parent, os.W_OK)):
            return beside, f"beside the PidFile {pid_path}"
    digest = hashlib.sha1(f"{server_root}\0{pid_path}".encode()).hexdigest()[:12]
    return (Path(tempfile.gettempdir()) / f"modpy_safe-{uid}-{digest}",
            "in the temporary directory (the PidFile's directory is not writable)")


def _usable(path: Path, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and os.access(path, os.W_OK)


def ensure_directory(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check that this user owns it; return it.

    A directory someone else owns is refused: in a shared temporary directory
    it could have been made to catch or forge what the children publish.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise DirectoryError(f"{str(path)!r} is not a directory: remove it, or set "
                             f"'PythonOption modpy_safe.status.directory' elsewhere")
    if st.st_uid != os.getuid():
        raise DirectoryError(f"{str(path)!r} belongs to uid {st.st_uid}, not to httpd's "
                             f"user (uid {os.getuid()}): chown it, or set 'PythonOption "
                             f"modpy_safe.status.directory' elsewhere")
    if not os.access(path, os.W_OK | os.X_OK):
        raise DirectoryError(f"{str(path)!r} is not writable by uid {os.getuid()}")
    (path / CHILDREN).mkdir(mode=0o700, exist_ok=True)
    return path


def state_path(directory: Path, who: Identity, tag: str) -> Path:
    """Return the state file of one interpreter (``tag``) of process ``who``."""
    return directory / CHILDREN / f"{who.pid}-{tag}.json"


def write_state(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (readers see the old or the new file, never half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def remove_state(path: Path) -> None:
    """Remove a state file; a missing one is fine."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _documents(directory: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    try:
        names = sorted(os.listdir(directory / CHILDREN))
    except FileNotFoundError:
        return
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = directory / CHILDREN / name
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue  # removed by its child or another reader meanwhile
        except (OSError, ValueError):
            doc = None
        yield path, doc if isinstance(doc, dict) else None


def read_states(directory: Path, server: Identity) -> tuple[list[dict[str, Any]], list[int]]:
    """Return the documents of the live children of ``server``, and the pids pruned as stale."""
    live: list[dict[str, Any]] = []
    pruned: list[int] = []
    for path, doc in _documents(directory):
        verdict = False if doc is None else is_current(doc, server)
        if verdict is None:
            continue
        if verdict:
            live.append(doc)  # type: ignore[arg-type]
            continue
        remove_state(path)
        with contextlib.suppress(ValueError):
            pruned.append(int(path.name.split("-", 1)[0]))
    live.sort(key=lambda d: (int(d["pid"]), str(d.get("interpreter", ""))))
    return live, pruned


def metrics_directory(directory: Path, server: Identity) -> Path:
    """Return (and create) the multiprocess metrics directory of this server run."""
    path = directory / f"{METRICS_PREFIX}{server.ppid}-{server.parent_started}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def prune_metrics_directories(directory: Path, server: Identity) -> list[Path]:
    """Remove the metrics directories of server runs whose parent process is gone."""
    removed: list[Path] = []
    mine = f"{METRICS_PREFIX}{server.ppid}-{server.parent_started}"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if not name.startswith(METRICS_PREFIX) or name == mine:
            continue
        try:
            ppid, started = (int(x) for x in name[len(METRICS_PREFIX):].split("-", 1))
        except ValueError:
            continue
        if not alive(ppid, started):
            shutil.rmtree(directory / name, ignore_errors=True)
            removed.append(directory / name)
    return removed
