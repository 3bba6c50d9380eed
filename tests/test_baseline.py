"""Baselines: what Debian's mod_python 3.5 really does, measured through httpd.

These tests pass by asserting mod_python's own defects. They stay as the
reference that modpy_safe is measured against: if a future mod_python fixes
one, its test fails and the docs must change.
"""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.httpd

PLAIN = """\
import os
from mod_python import apache

def handler(req):
    req.content_type = "text/plain"
    req.write("version %d pid %d" % ({version}, os.getpid()))
    return apache.OK
"""


def _answers(server, path: str, count: int) -> list[tuple[str, int]]:
    out = []
    for _ in range(count):
        words = server.get(path).text.split()
        out.append((words[1], int(words[3])))
    return out


def test_plain_handler_is_never_reloaded(httpd, mpm):
    """PythonHandler plainmod with PythonAutoReload On keeps serving the old code."""
    server = httpd(mpm, directory="PythonHandler plainmod",
                   files={"plainmod.py": PLAIN.format(version=1)})
    before = _answers(server, "/plainmod.py", 20)
    assert {v for v, _ in before} == {"1"}
    loaded_in = {pid for _, pid in before}

    server.write("plainmod.py", PLAIN.format(version=2))
    # mod_python checks a module's mtime at most once a second; watch for 2.5 s.
    deadline = time.monotonic() + 2.5
    seen_old_after_interval = 0
    while time.monotonic() < deadline:
        version, pid = _answers(server, "/plainmod.py", 1)[0]
        if pid in loaded_in:
            assert version == "1", "mod_python reloaded a PythonHandler module"
            seen_old_after_interval += 1
        time.sleep(0.05)
    assert seen_old_after_interval > 10


PAGE = """\
import os
import psycopg2

conn = psycopg2.connect({dsn!r})

def index(req):
    return "edit %d pid %d" % ({edit}, os.getpid())
"""


def test_publisher_leaks_one_connection_per_edit(httpd, mpm, postgres):
    """mod_python.publisher: N edits of a page with a module-level connect leave N+1 connections."""
    app = f"baseline_pub_{mpm}"
    dsn = postgres.dsn_for(app)
    server = httpd(mpm, processes=1,
                   directory="SetHandler mod_python\nPythonHandler mod_python.publisher",
                   files={"page.py": PAGE.format(dsn=dsn, edit=0)})
    first = server.get("/page.py")
    assert first.status == 200, first.text
    pid = int(first.text.split()[-1])
    assert postgres.count_connections(app) == 1

    edits = 5
    for edit in range(1, edits + 1):
        server.write("page.py", PAGE.format(dsn=dsn, edit=edit))
        answer = server.get("/page.py")
        assert answer.text == f"edit {edit} pid {pid}"
    assert postgres.count_connections(app) == edits + 1
