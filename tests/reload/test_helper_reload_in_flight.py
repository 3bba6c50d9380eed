"""A helper's connection outlives the requests still running on the module that imported it.

``app.py`` imports ``helpers.py`` from its own directory; the helper holds a
module-level connection. While a request is in flight on the old version (it
has used the connection and will use it again), ``helpers.py`` is edited and
another request loads the new versions of both files. The in-flight request
must finish on the old helper's connection; only then is that connection
closed, and the count goes back to one. Threaded MPMs only: in a prefork child
no other request can run (and reload) while one is in flight.
"""
from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import Response, make_tempdir

pytestmark = pytest.mark.httpd

HELPERS = """\
import psycopg2

conn = psycopg2.connect({dsn!r})
VERSION = {version}


def backend():
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        found = cur.fetchone()[0]
    conn.rollback()
    return found
"""

APP = """\
import os
import time

import helpers

STATE = {state!r}


def handler(req):
    first = helpers.backend()
    if req.args == "slow":
        open(os.path.join(STATE, "started"), "w").close()
        for _ in range(1200):  # bounded: the test creates "go" long before
            if os.path.exists(os.path.join(STATE, "go")):
                break
            time.sleep(0.05)
        else:
            return "never released"
    second = helpers.backend()
    return "helpers %d first %d second %d" % (helpers.VERSION, first, second)
"""


@pytest.fixture
def state() -> Iterator[Path]:
    """A directory httpd's unprivileged user can write to (pytest's tmp_path is private)."""
    path = make_tempdir("modpy_safe-inflight-")
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def parse(answer: Response) -> dict[str, int]:
    assert answer.status == 200, f"{answer.status}: {answer.text[:2000]}"
    words = answer.text.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def wait_for_file(path: Path, *, tries: int = 400) -> None:
    for _ in range(tries):
        if path.exists():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared: the slow request did not start")


@pytest.mark.parametrize("threaded", ["worker", "event"])
def test_in_flight_request_keeps_the_old_helpers_connection(httpd: Any, postgres: Any,
                                                            state: Path, threaded: str) -> None:
    """The old helper's connection serves the in-flight request, then is closed."""
    app = f"inflight_helper_{threaded}"
    dsn = postgres.dsn_for(app)
    server = httpd(threaded, processes=1, threads=4,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                   options={"modpy_safe.handler": "app.py", "modpy_safe.reload.interval": "0"},
                   files={"helpers.py": HELPERS.format(dsn=dsn, version=1),
                          "app.py": APP.format(state=str(state))})
    before = parse(server.get("/"))
    old = before["first"]
    assert before == {"helpers": 1, "first": old, "second": old}

    slow: list[Response] = []
    request = threading.Thread(target=lambda: slow.append(server.get("/?slow", timeout=90)))
    request.start()
    try:
        wait_for_file(state / "started")  # in flight on version 1, between its two queries
        server.write("helpers.py", HELPERS.format(dsn=dsn, version=2))
        after = parse(server.get("/"))
        new = after["first"]
        assert after == {"helpers": 2, "first": new, "second": new} and new != old
        # The old connection is still open: the in-flight request will use it again.
        assert sorted(postgres.backend_pids(app)) == sorted([old, new])
    finally:
        (state / "go").touch()
        request.join(60)
    assert not request.is_alive(), "the slow request never returned"
    assert parse(slow[0]) == {"helpers": 1, "first": old, "second": old}
    # Its last request done, the old version's connection is closed.
    assert postgres.settled_count(app, expected=1) == 1
    assert postgres.backend_pids(app) == [new]
    assert re.search(r"closed psycopg2 connection \S+ reached through 'conn' left by "
                     r"generation 1 of \S+/helpers\.py",
                     server.error_log())
