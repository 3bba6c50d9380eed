"""A connection given back moments ago is handed out without its check, and that is safe.

``Database`` skips the driver's check (psycopg2: a ``poll`` system call) for a
connection given back less than ``TRUST_FOR`` seconds ago. These tests kill
the connection's backend for real (``pg_terminate_backend``) and show both
sides of that rule: inside the window the dead connection is found by the
first statement, which raises DatabaseUnavailable (a 503, never a 500) and the
connection is replaced for the next block; after the window the check finds it
and the block gets a working connection at once.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from modpy_safe import Database, DatabaseUnavailable
from modpy_safe.db import database as _database


def wait_until(what: str, predicate: Callable[[], bool], tries: int = 300) -> None:
    """Poll ``predicate`` (bounded); raise when it never held."""
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def backend(db: Database) -> int:
    with db.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        conn.commit()
        return int(pid)


def kill(postgres: Any, app: str, pid: int) -> None:
    """Terminate backend ``pid`` and wait until the server has let it go."""
    assert postgres.admin_execute("SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    wait_until(f"backend {pid} gone", lambda: postgres.count_connections(app) == 0)


@pytest.fixture
def db(postgres: Any, driver: str, request: pytest.FixtureRequest) -> Any:
    made: list[Database] = []

    def make(app: str) -> Database:
        database = Database(postgres.dsn_for(app), name=app, mode="persistent", driver=driver)
        made.append(database)
        return database

    yield make
    for database in made:
        database.close(wait=1)


def test_a_connection_killed_inside_the_window_fails_as_unavailable_then_is_replaced(
        postgres: Any, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every checkout inside the window, however long the test takes between them.
    monkeypatch.setattr(_database, "TRUST_FOR", 3600.0)
    app = "db_trust_inside"
    database = db(app)
    first = backend(database)
    kill(postgres, app, first)
    with pytest.raises(DatabaseUnavailable) as info:
        backend(database)  # handed out unchecked: the statement finds it dead
    assert "connection was lost" in str(info.value)
    assert postgres.password not in str(info.value)
    second = backend(database)  # the broken one was dropped when it came back
    assert second != first
    stats = database.stats()
    assert stats["discarded_error"] == 1 and stats["opened"] == 2, stats


def test_a_connection_quiet_longer_than_the_window_is_checked_and_replaced_at_once(
        postgres: Any, db: Any) -> None:
    app = "db_trust_after"
    database = db(app)
    first = backend(database)
    given_back = time.monotonic()
    kill(postgres, app, first)
    wait_until("the trust window over",
               lambda: time.monotonic() - given_back > _database.TRUST_FOR)
    second = backend(database)  # checked, found dead, replaced in the same checkout
    assert second != first
    stats = database.stats()
    assert stats["opened"] == 2 and stats["discarded_error"] == 0, stats
