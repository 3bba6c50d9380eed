"""A threaded child's first requests: mod_python's defect, and modpy_safe surviving it.

Under worker and event, a fresh child serves its first requests on several
threads at once, and mod_python 3.5 may create one interpreter per thread.
Each imports psycopg2; two first imports at once run psycopg2's C init twice,
and the child answers 500 with ``ImportError: cannot import name 'encodings'
from 'psycopg2._psycopg'`` from then on (or, when another thread gets the
module half-executed, "module ... contains no 'handler'").
modpy_safe/reload/coldstart.py closes both races; these tests pin the defect in
plain mod_python and show the minimal configuration (no PythonInterpreter, no
PythonImport) answering every request of the first bursts and of the bursts
after a graceful restart, with handlers that use modpy_safe.Database, handlers
that import psycopg2 themselves and handlers without a database.
"""
from __future__ import annotations

import concurrent.futures
import fcntl
import importlib
import os
import sys
import threading
import types
from pathlib import Path

import pytest

from modpy_safe.reload import coldstart

THREADS = 16
PROCESSES = 2
BURST = 32  # concurrent clients: every thread of both children at once

PLAIN = """\
import psycopg2
from mod_python import apache

def handler(req):
    req.write("ok")
    return apache.OK
"""

APP = """\
import psycopg2

def handler(req):
    return "ok"
"""

MINIMAL = "SetHandler mod_python\nPythonHandler modpy_safe.dispatch"


def _handlers(dsn: str) -> dict[str, str]:
    """One handler file of each kind the minimal configuration must serve."""
    return {
        "with_database.py": (
            "import modpy_safe\n\n"
            f"db = modpy_safe.Database({dsn!r})\n\n"
            "def handler(req):\n"
            "    with db.transaction() as cur:\n"
            "        cur.execute('SELECT 1')\n"
            "        return 'db %s' % cur.fetchone()[0]\n"),
        "own_psycopg2.py": (
            "import psycopg2\n\n"
            "def handler(req):\n"
            "    return 'own %s' % psycopg2.extensions.parse_dsn('dbname=x')['dbname']\n"),
        "no_database.py": "def handler(req):\n    return 'none'\n",
    }


EXPECTED = {"/with_database.py": "db 1", "/own_psycopg2.py": "own x", "/no_database.py": "none"}


def _burst(server, paths: list[str], total: int) -> list[tuple[str, int, str]]:
    """Send ``total`` requests, BURST at a time, cycling through ``paths``."""
    def one(i: int) -> tuple[str, int, str]:
        path = paths[i % len(paths)]
        response = server.get(path)
        return path, response.status, response.text

    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(one, range(total)))


def _failures(answers: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [(path, status, text[:200]) for path, status, text in answers
            if status != 200 or text != EXPECTED[path]]


def _cold_burst(server, path: str) -> list[int]:
    """Send THREADS requests at once to a child that has served nothing yet."""
    with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda _: server.get(path).status, range(THREADS)))


@pytest.mark.httpd
@pytest.mark.parametrize("mpm", ["worker", "event"])
def test_plain_mod_python_fails_a_cold_burst_baseline(httpd, mpm):
    """Baseline: without a preload, concurrent first imports of psycopg2 fail."""
    failures = 0
    for _ in range(5):  # the race is timing-dependent; 5 fresh children are plenty
        server = httpd(mpm, threads=THREADS, directory="PythonHandler plainpg",
                       files={"plainpg.py": PLAIN}, preload=False)
        statuses = _cold_burst(server, "/plainpg.py")
        log = server.error_log()
        server.stop()
        if any(status == 500 for status in statuses):
            # Two faces of the same unlocked import: psycopg2 half-initialized in a
            # sub-interpreter, or the handler module handed out half-executed.
            assert ("cannot import name 'encodings'" in log
                    or "plainpg.py' contains no 'handler'" in log), log[-3000:]
            failures += 1
            break
    assert failures, "mod_python survived 5 cold bursts: re-check reload/coldstart.py"


@pytest.mark.httpd
@pytest.mark.parametrize("mpm", ["worker", "event"])
def test_minimal_configuration_serves_every_request_of_fresh_children(httpd, postgres, mpm):
    """SetHandler + PythonHandler alone: the first bursts of fresh children all succeed."""
    for _ in range(3):  # 3 fresh servers: before the cure, nearly every request failed
        server = httpd(mpm, processes=PROCESSES, threads=THREADS, directory=MINIMAL,
                       files=_handlers(postgres.dsn_for("cold_fresh")), preload=False)
        answers = _burst(server, list(EXPECTED), 3 * BURST)
        assert _failures(answers) == [], server.log_tail(60)
        assert "cannot be used in process" not in server.error_log()
        server.stop()


@pytest.mark.httpd
@pytest.mark.parametrize("mpm", ["worker", "event"])
def test_minimal_configuration_serves_every_request_after_graceful_restart(
        httpd, postgres, mpm):
    """Right after 'apache2 -k graceful' the new children's first bursts all succeed."""
    server = httpd(mpm, processes=PROCESSES, threads=THREADS, directory=MINIMAL,
                   files=_handlers(postgres.dsn_for("cold_graceful")), preload=False)
    assert _failures(_burst(server, list(EXPECTED), BURST)) == [], server.log_tail(60)
    for _ in range(3):
        before = set(server.child_pids())
        server.graceful()
        assert before.isdisjoint(server.child_pids()), "graceful restart kept old children"
        answers = _burst(server, list(EXPECTED), 3 * BURST)
        assert _failures(answers) == [], server.log_tail(60)


@pytest.mark.httpd
@pytest.mark.parametrize("mpm", ["worker", "event"])
def test_documented_preload_serves_every_cold_request(httpd, mpm):
    """With PythonInterpreter + PythonImport (docs/deploying.md), no cold request fails."""
    for _ in range(3):
        server = httpd(
            mpm,
            threads=THREADS,
            directory=("PythonInterpreter coldapp\nPythonHandler modpy_safe.dispatch\n"
                       "PythonOption modpy_safe.handler app.py"),
            extra="PythonImport modpy_safe.dispatch coldapp",
            files={"app.py": APP},
            preload=False,  # only the documented lines, nothing from the harness
        )
        statuses = _cold_burst(server, "/app.py")
        assert statuses == [200] * THREADS, server.log_tail()
        server.stop()


# A handler that runs psycopg2's C init a second time, as an interpreter that
# imported psycopg2 without modpy_safe, at the same moment as another, would.
POISON = """\
import importlib.machinery, importlib.util
import psycopg2
from mod_python import apache

def handler(req):
    path = psycopg2._psycopg.__file__
    loader = importlib.machinery.ExtensionFileLoader("again._psycopg", path)
    importlib.util.module_from_spec(importlib.util.spec_from_loader("again._psycopg", loader))
    req.write("initialised twice")
    return apache.OK
"""


@pytest.mark.httpd
def test_a_poisoned_child_names_the_fix_and_is_replaced(httpd):
    """psycopg2 initialised twice by a foreign interpreter: one clear error, then a new child."""
    server = httpd(
        "worker", processes=1, threads=4, preload=False,
        directory=MINIMAL,
        extra=('<Location "/poison">\n    SetHandler mod_python\n'
               '    PythonInterpreter foreign\n    PythonHandler poison\n</Location>'),
        files={"poison.py": POISON, "app.py": APP},
    )
    first_child = server.child_pids()
    assert server.get("/poison").text == "initialised twice"
    # The next interpreter that imports psycopg2 in this child gets the broken copy.
    try:
        answer = server.get("/app.py").status
    except OSError:  # the child ended before it answered
        answer = None
    assert answer != 200
    response = server.wait_for("/app.py", lambda r: r.status == 200)
    assert response.text == "ok"
    assert not set(first_child) & set(server.child_pids()), "the poisoned child still runs"
    log = server.error_log()
    assert log.count("cannot be used in process") == 1, log[-3000:]
    assert "PythonImport modpy_safe.dispatch" in log
    assert "This child exits now" in log


# ------------------------------------------------- plain Python: the two hooks alone
def test_an_entry_module_being_imported_already_has_a_handler_that_waits(
        tmp_path: Path, monkeypatch):
    """Another thread sees the module mid-import: its handler waits, then runs the real one."""
    name = "coldstart_entry_probe"
    started, release = threading.Event(), threading.Event()
    (tmp_path / f"{name}.py").write_text(
        "import coldstart_gate\n"
        "coldstart_gate.started.set()\n"
        "coldstart_gate.release.wait(30)\n"
        "def handler(req):\n    return ('real', req)\n")
    gate = types.ModuleType("coldstart_gate")
    gate.started, gate.release = started, release  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "coldstart_gate", gate)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(coldstart, "ENTRY_POINTS", coldstart.ENTRY_POINTS | {name})
    importer = threading.Thread(target=importlib.import_module, args=(name,))
    importer.start()
    try:
        assert started.wait(30)
        half = sys.modules[name]  # what mod_python's import_module may hand out now
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(half.handler, "req")
            release.set()
            assert answer.result(30) == ("real", "req")
    finally:
        release.set()
        importer.join(30)
        sys.modules.pop(name, None)
    assert not hasattr(half, "authenhandler"), "a stand-in outlived the import"


def test_the_process_lock_excludes_other_descriptions_in_this_process():
    """While one holder has the lock, another open description of it cannot take it."""
    with coldstart.process_lock():
        path = coldstart._lock_path
        assert path is not None
        fd = os.open(path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once released
    finally:
        os.close(fd)
