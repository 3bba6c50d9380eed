"""Reload faults through real httpd, counting the server's connections.

Already proven in tests/test_reload.py under prefork, worker and event, and not
repeated here: a syntax error and an exception at import keep the old version
answering (and close what the failed version opened) until the file is fixed
(``test_failed_reload_keeps_old_version_until_the_file_is_fixed``, and with
``PythonDebug On`` ``test_failed_reload_is_shown_with_python_debug``); a user
``__mp_clone__`` that raises purges the old version and starts the new one
fresh without leaking its connection (``test_hooks_keep_mod_python_33_meaning``).

Here: a file deleted while loaded, replaced by rename (also by an older file,
as ``cp -p`` or ``rsync -t`` leave it), and caught half-written. Every handler
version is the naive program (a module-level ``psycopg2.connect``), the
easiest one to leak with. The importer is per process and the same under every
MPM; prefork (one process) and event (threads racing to load) are the two
shapes of it.
"""
from __future__ import annotations

import os
from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer

from .conftest import DISPATCH, assert_no_secret, report

pytestmark = pytest.mark.httpd

NAIVE = """\
import os
import psycopg2

conn = psycopg2.connect({dsn!r})
VERSION = {version}


def handler(req):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return "version %d pid %d backend %d" % (VERSION, os.getpid(), backend)
"""


def serve(httpd: Any, mpm: str, source: str) -> Httpd:
    server: Httpd = httpd(mpm, directory=DISPATCH, processes=1, files={"app.py": source},
                          options={"modpy_safe.handler": "app.py",
                                   "modpy_safe.reload.interval": "0"})
    return server


def version(server: Httpd) -> int:
    answer = server.get("/")
    assert answer.status == 200, f"{answer.status}: {answer.text[:300]}\n{server.log_tail()}"
    return int(answer.text.split()[1])


def replace_by_rename(server: Httpd, text: str, *, mtime_ns: int | None = None) -> None:
    """Write ``text`` to a temporary file beside app.py and rename it over app.py."""
    temp = server.path(".app.py.new")
    temp.write_text(text)
    temp.chmod(0o644)
    if mtime_ns is not None:
        os.utime(temp, ns=(mtime_ns, mtime_ns))
    os.replace(temp, server.path("app.py"))


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_deleted_renamed_and_half_written_files(httpd: Any, postgres: PostgresServer, mpm: str,
                                                record_property: Any) -> None:
    """The site keeps answering, the fixed file loads, one connection at most throughout."""
    app = f"fault_reload_{mpm}"
    dsn = postgres.dsn_for(app)
    server = serve(httpd, mpm, NAIVE.format(dsn=dsn, version=1))
    requests = failures = 0
    worst = 0

    def check(expected: int) -> None:
        nonlocal requests, worst
        for _ in range(3):
            requests += 1
            assert version(server) == expected
        worst = max(worst, postgres.settled_count(app, at_most=1))
        assert worst <= 1, f"{worst} connections for one process"

    check(1)

    # Deleted while loaded: a clear 404 (not a 500), then a new file loads.
    server.remove("app.py")
    for _ in range(3):
        gone = server.get("/")
        requests += 1
        failures += 1
        assert gone.status == 404 and "Traceback" not in gone.text, gone.text[:300]
    assert postgres.settled_count(app, at_most=1) <= 1
    server.write("app.py", NAIVE.format(dsn=dsn, version=2))
    check(2)

    # Replaced by rename, as deploy tools and many editors save.
    replace_by_rename(server, NAIVE.format(dsn=dsn, version=3))
    check(3)
    # Replaced by an older file: restoring a backup keeps its old mtime.
    older = server.path("app.py").stat().st_mtime_ns - 86_400 * 10**9
    replace_by_rename(server, NAIVE.format(dsn=dsn, version=4), mtime_ns=older)
    check(4)

    # Caught half-written: the first half is on disk (cut inside a statement) when a
    # request comes; the old version keeps answering; the finished file loads.
    full = NAIVE.format(dsn=dsn, version=5)
    cut = full.index("        backend = cur.fetchone()")
    path = server.path("app.py")
    with open(path, "w") as out:
        out.write(full[:cut] + "        backend = cur.fetch(")
        out.flush()
        half_mtime = os.stat(path).st_mtime_ns
        check(4)
        out.seek(cut)
        out.write(full[cut:])
        out.truncate()
    check(5)
    assert "SyntaxError" in server.error_log()

    # The same, written in two parts within one tick of the file system's clock (a
    # coarse-grained mtime, or two write() calls a millisecond apart): the finished
    # file has the half file's mtime, and must load all the same.
    full = NAIVE.format(dsn=dsn, version=6)
    with open(path, "w") as out:
        out.write(full[:cut] + "        backend = cur.fetch(")
        out.flush()
        half_mtime = os.stat(path).st_mtime_ns
        check(5)
        out.seek(cut)
        out.write(full[cut:])
        out.truncate()
    os.utime(path, ns=(half_mtime, half_mtime))
    check(6)

    final = postgres.settled_count(app, at_most=1)
    report(record_property, mpm=mpm, requests=requests, expected_404s=failures,
           unexpected_failures=0, connections_max=worst, connections_after=final)
    assert_no_secret(postgres, server)
