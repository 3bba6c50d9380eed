"""Shared pieces of the fault suite: a bounded load generator, polling, secret checks.

Every loop here is bounded twice, by a count and by a deadline, so a fault that
makes the server hang fails the test instead of hanging the run. Deadlines are
safety nets only: no test asserts how long anything took.
"""
from __future__ import annotations

import html
import http.client
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fix_drivers import driver  # noqa: F401 - the fixture: a test asking for it runs per driver

from modpy_safe.testing import Httpd, PostgresServer

DISPATCH = "SetHandler mod_python\nPythonHandler modpy_safe.dispatch"
PUBLISHER = "SetHandler mod_python\nPythonHandler modpy_safe.publisher"

#: Server config that adds the status page at /status (loopback only, its default).
STATUS = """\
<Location "/status">
    SetHandler mod_python
    PythonHandler modpy_safe.status
</Location>
"""


@dataclass(frozen=True)
class Outcome:
    """One request a load client made: in which phase, and what came back."""

    client: int
    phase: str  # the phase the request started in
    status: int  # 0: the connection failed (no HTTP answer at all)
    text: str
    ended: str = ""  # the phase it ended in
    started: int = 0  # when it started and ended, on one clock shared by every client
    finished: int = 0

    @property
    def within(self) -> str:
        """The phase the whole request fell in, or "a->b" when it straddled a change."""
        return self.phase if self.ended == self.phase else f"{self.phase}->{self.ended}"


class Clients:
    """``count`` threads requesting ``path`` until stopped, bounded by requests and time.

    ``path`` is a string or a function of (client number, request number).
    The test moves :attr:`phase` along ("before", "down", "up", ...); every
    outcome records the phase its request *started* in. With ``keepalive``
    each client keeps one HTTP/1.1 connection (reopened after an error).
    """

    def __init__(self, server: Httpd, count: int, path: str | Callable[[int, int], str], *,
                 max_requests: int, max_seconds: float, keepalive: bool = False) -> None:
        self.server = server
        self.count = count
        self.path = path if callable(path) else (lambda _c, _i: path)
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.keepalive = keepalive
        self.phase = "before"
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._made = 0
        self._lock = threading.Lock()
        self._clock = itertools.count(1)  # next() is atomic in CPython
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(count)]

    # -- running ------------------------------------------------------------------
    def _take(self) -> int | None:
        with self._lock:
            if (self._stop.is_set() or self._made >= self.max_requests
                    or time.monotonic() >= self.deadline):
                return None
            self._made += 1
            return self._made

    def _run(self, client: int) -> None:
        conn: http.client.HTTPConnection | None = None
        while (number := self._take()) is not None:
            phase = self.phase
            path = self.path(client, number)
            started = next(self._clock)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                if not self.keepalive or resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status, body = 0, repr(exc).encode()
                if conn is not None:
                    conn.close()
                conn = None
            self.outcomes.append(Outcome(client, phase, status,
                                         body[:300].decode("utf-8", "replace"), self.phase,
                                         started, next(self._clock)))
        if conn is not None:
            conn.close()

    def start(self) -> "Clients":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "a load client never returned"

    def __enter__(self) -> "Clients":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observing ----------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once the request or time budget is spent."""
        return self._made >= self.max_requests or time.monotonic() >= self.deadline

    def in_phase(self, phase: str) -> list[Outcome]:
        """Return the outcomes of requests that started and ended in ``phase``."""
        return [o for o in list(self.outcomes) if o.within == phase]

    def wait(self, predicate: Callable[[], bool], *, what: str, tries: int = 600,
             delay: float = 0.02) -> None:
        """Poll ``predicate`` (bounded); fail naming ``what`` when it never holds."""
        for _ in range(tries):
            if predicate():
                return
            if self.finished:
                break
            time.sleep(delay)
        raise AssertionError(f"{what}: never happened; last outcomes "
                             f"{[(o.phase, o.status, o.text[:80]) for o in self.outcomes[-5:]]}")


def poll(predicate: Callable[[], bool], *, tries: int = 200, delay: float = 0.05) -> bool:
    """Return True as soon as ``predicate`` holds, False after ``tries`` polls."""
    for _ in range(tries):
        if predicate():
            return True
        time.sleep(delay)
    return predicate()



def active_queries(postgres: PostgresServer, app: str, marker: str) -> int:
    """Count ``app``'s backends running a query that contains ``marker`` right now."""
    rows = postgres.admin_execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND state = 'active' AND position(%s in query) > 0", (app, marker))
    return int(rows[0][0])


def assert_no_secret(postgres: PostgresServer, server: Httpd | None, *texts: str) -> None:
    """The cluster's password is in no response text given and not in the error log."""
    secret = postgres.password
    for text in texts:
        assert secret not in text, f"the database password appears in: {text[:300]!r}"
    if server is not None:
        log = server.error_log()
        leaked = [line for line in log.splitlines() if secret in line]
        assert not leaked, f"the database password appears in the error log: {leaked[:3]}"


def child_rss_kb(server: Httpd) -> dict[int, int]:
    """Return VmRSS (kB) of each httpd child, from /proc/<pid>/status."""
    found: dict[int, int] = {}
    for pid in server.child_pids():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        found[pid] = int(line.split()[1])
        except OSError:  # the child exited between ps and the read
            continue
    return found


@pytest.fixture
def database_restored(postgres: PostgresServer) -> Iterator[PostgresServer]:
    """The session's PostgreSQL, started again after the test whatever the test did to it."""
    try:
        yield postgres
    finally:
        postgres.start()


@pytest.fixture
def fault_rows(postgres: PostgresServer) -> str:
    """The table the integrity tests write to, and a token unique to this test."""
    import psycopg2

    conn = psycopg2.connect(postgres.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS fault_rows (token text NOT NULL)")
    finally:
        conn.close()
    return secrets.token_hex(6)


def report(record_property: Any, **figures: Any) -> None:
    """Attach the figures of a case to the test report (and print them for -s / -rA)."""
    for key, value in figures.items():
        record_property(key, value)
    print("FIGURES", " ".join(f"{k}={v}" for k, v in figures.items()))


def logged_for(server: Any, page: str) -> str:
    """Return the error log lines of the reference an error page shows."""
    found = re.search(r"Reference: <code>([0-9a-f]+)</code>", page)
    assert found, page
    return html.unescape("\n".join(line for line in server.error_log().splitlines()
                                    if f"[{found.group(1)}]" in line))
