"""A PostgreSQL restart under concurrent load, through real httpd, in every connection mode.

While the server is down requests get 503; from the moment it accepts
connections again (``pg_ctl -w start`` has returned) not one request fails:
a request waits for the attempt that says whether the database is back
instead of failing on an older verdict (see ``Pool._open``).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer

pytestmark = pytest.mark.httpd

CLIENTS = 8
APP = """\
import modpy_safe

db = modpy_safe.Database({dsn!r}, mode={mode!r})

def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT 1")
        return "ok %s" % cur.fetchone()[0]
"""


@dataclass(frozen=True)
class Outcome:
    client: int
    started: float  # time.monotonic() when the request was sent
    finished: float  # and when its answer (or error) had come back
    status: int  # 0: no HTTP answer at all
    text: str


class Load:
    """CLIENTS threads requesting ``path`` one request after another until stopped."""

    def __init__(self, server: Httpd, path: str, *, max_seconds: float = 120) -> None:
        self.server, self.path = server, path
        self.deadline = time.monotonic() + max_seconds
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(c,), daemon=True)
                        for c in range(CLIENTS)]

    def run(self, client: int) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            started = time.monotonic()
            try:
                response = self.server.get(self.path, timeout=60)
                outcome = Outcome(client, started, time.monotonic(), response.status,
                                  response.text)
            except OSError as exc:
                outcome = Outcome(client, started, time.monotonic(), 0, repr(exc))
            with self.lock:
                self.outcomes.append(outcome)

    def snapshot(self) -> list[Outcome]:
        with self.lock:
            return list(self.outcomes)

    def wait(self, predicate: Any, what: str, tries: int = 1200) -> None:
        """Poll (bounded) until ``predicate(outcomes)`` holds."""
        for _ in range(tries):
            if predicate(self.snapshot()):
                return
            time.sleep(0.05)
        raise AssertionError(f"never happened: {what}; last outcomes "
                             f"{[(o.status, o.text[:80]) for o in self.snapshot()[-5:]]}")

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)


@pytest.fixture
def restored(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, running again after the test whatever happened."""
    try:
        yield postgres
    finally:
        postgres.start()


@pytest.mark.parametrize("mpm, mode, processes", [
    ("prefork", "persistent", 4),
    ("event", "pooled", 1),
    ("worker", "pooled", 2),
    ("event", "per-request", 1),
])
def test_no_request_fails_once_the_restarted_database_accepts_connections(
        httpd: Any, restored: PostgresServer, mpm: str, mode: str, processes: int) -> None:
    postgres = restored
    app = f"recovery_{mpm}_{mode.replace('-', '_')}"
    server = httpd(mpm, processes=processes, threads=CLIENTS,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                   files={"app.py": APP.format(dsn=postgres.dsn_for(app), mode=mode)})
    assert server.get("/app.py").text == "ok 1"
    with Load(server, "/app.py") as load:
        load.wait(lambda out: sum(o.status == 200 for o in out) >= 200, "200 answers first")
        went_down = time.monotonic()
        postgres.stop()  # fast: the server closes every connection
        load.wait(lambda out: sum(o.status == 503 and o.started > went_down for o in out) >= 16,
                  "503 answers while the database is down")
        postgres.start()  # returns once the server accepts connections
        came_up = time.monotonic()
        load.wait(lambda out: all(sum(o.status == 200 and o.started > came_up
                                      for o in out if o.client == c) >= 30
                                  for c in range(CLIENTS)),
                  "30 answers per client after the restart")
    outcomes = load.snapshot()
    before = [o for o in outcomes if o.finished < went_down]
    after = [o for o in outcomes if o.started > came_up]
    during = [o for o in outcomes if not (o.finished < went_down or o.started > came_up)]
    assert before and [o for o in before if o.status != 200] == []
    assert {o.status for o in during} <= {200, 503}, [o for o in during if o.status != 503][:3]
    assert all("Traceback" not in o.text for o in during)
    failed_after = [(o.status, o.text[:300]) for o in after if o.status != 200]
    assert failed_after == [], (f"{len(failed_after)} of {len(after)} requests failed after "
                                f"the database accepted connections again: {failed_after[:3]}")
