"""The plan's own lease: a request served without a reload check still holds its version.

Within the reload interval the dispatcher's plan serves a request without
asking the importer (one identity test, one lease). That lease must keep the
version it runs on alive: here a request is in flight on version 1, taken on
that path; the file changes, the interval passes and the next request loads
version 2, which retires version 1. Version 1's connection must stay open
until the in-flight request ends, and be closed right after.

Plain Python with a stand-in request: what is under test is the plan and the
importer, not httpd (tests/reload/test_helper_reload_in_flight.py does that
through httpd, with an interval of 0).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fix_importer import write

from modpy_safe.web import plan as _plan

APP = """\
import threading
import fix_importer

conn = fix_importer.FakeConnection(__file__)
VERSION = {version}
started = threading.Event()
go_on = threading.Event()


def handler(req):
    if req.args == "slow":
        started.set()
        go_on.wait(30)
    conn.cursor()  # raises if the connection was closed under this request
    return VERSION
"""

INTERVAL = 2.0


class Hlist:
    is_location = False

    def __init__(self, directory: str) -> None:
        self.directory = directory


class Req:
    """The parts of mod_python's request the dispatcher's plan reads."""

    phase = "PythonHandler"

    def __init__(self, directory: Path, args: str | None = None) -> None:
        self.hlist = Hlist(str(directory))
        self.args = args
        self._options = {"modpy_safe.handler": "app.py",
                         "modpy_safe.reload.interval": str(INTERVAL)}

    def get_options(self) -> dict[str, str]:
        return dict(self._options)

    def get_config(self) -> dict[str, str]:
        return {}


def wait_until(what: str, predicate: Any, tries: int = 500) -> None:
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def test_a_request_on_the_fast_path_keeps_its_version_open_until_it_ends(tmp_path: Path) -> None:
    app = write(tmp_path / "app.py", APP.format(version=1))
    plan = _plan.for_dispatch(Req(tmp_path))  # type: ignore[arg-type]
    assert plan.serve(Req(tmp_path)) == 1  # type: ignore[arg-type]  # loads version 1
    old = plan.last.inst.module  # type: ignore[attr-defined]
    loaded = time.monotonic()
    answers: list[Any] = []
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            answers.append(plan.serve(Req(tmp_path, "slow")))  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    try:
        wait_until("the slow request started", old.started.is_set)
        # It was served within the interval: by the plan's lease, not the importer's.
        assert time.monotonic() - loaded < INTERVAL, "the machine was too slow to tell"
        write(app, APP.format(version=2))
        wait_until("the reload interval over", lambda: time.monotonic() - loaded > INTERVAL)
        assert plan.serve(Req(tmp_path)) == 2  # type: ignore[arg-type]  # retires version 1
        assert not old.conn.closed, "version 1's connection closed under a running request"
    finally:
        old.go_on.set()
        thread.join(30)
    assert errors == [] and answers == [1]
    assert old.conn.closed, "version 1's connection outlived its last request"
