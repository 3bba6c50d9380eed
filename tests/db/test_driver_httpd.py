"""Each driver through httpd under event: 40 concurrent requests within the pool bound, a
PostgreSQL restart with every request after recovery succeeding, and reloads that keep the
connection count flat. Counted from pg_stat_activity."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer

pytestmark = pytest.mark.httpd

CONCURRENT = 40
POOL_MAX = 8

APP = """\
import modpy_safe

db = modpy_safe.Database(name="d", mode="pooled", pool_max={pool_max}, timeout=30)
VERSION = {version}


def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid(), pg_sleep(0.1)")
        backend = cur.fetchone()[0]
        library = type(cur.connection).__module__.split(".")[0]
    stats = db.stats()
    return {{"version": VERSION, "backend": backend, "waits": stats["waits"],
             "library": library}}
"""


def source(version: int) -> str:
    return APP.format(pool_max=POOL_MAX, version=version)


def burst(server: Httpd, postgres: PostgresServer, app: str) -> tuple[list[Any], int]:
    """Send CONCURRENT requests at once; return the answers and the most connections seen."""
    answers: list[Any] = [None] * CONCURRENT
    start = threading.Barrier(CONCURRENT + 1)

    def one(i: int) -> None:
        start.wait(30)
        answers[i] = server.get("/x", timeout=60)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    start.wait(30)
    most = 0
    while any(thread.is_alive() for thread in threads):  # ends with the requests (60 s each)
        most = max(most, postgres.count_connections(app))
    for thread in threads:
        thread.join()
    return answers, most


def test_driver_under_event_bounded_restarted_and_reloaded(
        driver: str, httpd: Any, postgres: PostgresServer) -> None:
    app = f"driver_event_{driver}"
    server = httpd("event", processes=1, threads=CONCURRENT,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                   files={"app.py": source(1)},
                   options={"modpy_safe.handler": "app.py",
                            "modpy_safe.db.d.dsn": postgres.dsn_for(app),
                            "modpy_safe.db.d.driver": driver,
                            "modpy_safe.reload.interval": "0"})

    answers, most = burst(server, postgres, app)
    assert [a.status for a in answers] == [200] * CONCURRENT, server.log_tail()
    assert {a.json()["library"] for a in answers} == {driver}, "connections of that driver"
    assert 1 <= most <= POOL_MAX, f"{most} connections for a pool of {POOL_MAX}"
    assert max(a.json()["waits"] for a in answers) > 0, "some requests waited for the pool"

    postgres.restart()
    # Each pooled connection is found dead and replaced at its next checkout.
    answers, most = burst(server, postgres, app)
    assert [a.status for a in answers] == [200] * CONCURRENT, [
        (a.status, a.text[:200]) for a in answers if a.status != 200]
    assert most <= POOL_MAX
    steady = postgres.settled_count(app, at_most=POOL_MAX)

    for version in (2, 3, 4):  # the same Database declared again: handed over, not reopened
        server.write("app.py", source(version))
        server.wait_for("/x", f'"version": {version}', tries=100, delay=0.05)
        answers, most = burst(server, postgres, app)
        assert [a.status for a in answers] == [200] * CONCURRENT
        assert most <= POOL_MAX
    assert postgres.settled_count(app, expected=steady) == steady, "reloads changed the count"
    assert postgres.password not in server.error_log()
