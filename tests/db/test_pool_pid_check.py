"""The pool's own pid check keeps a forked child off its parent's connections.

Python's at-fork hook (``os.register_at_fork``) fixes the pools up in a child
made by ``os.fork``, but a fork it does not see (one made from C, as httpd
forks its children, or a pool the hook's registry lost) leaves only the pid
check that ``checkout``, ``close`` and ``stats`` make. These tests fork for
real with the hook's registry emptied, so that check alone must notice: the
child never hands out, closes or counts a connection of its parent, and the
parent's connection keeps its server session.
"""
from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fix_fork import in_forked_child

from modpy_safe import Database
from modpy_safe.db import driver as _driver
from modpy_safe.db import pool as _pool
from modpy_safe.db.driver import BaseDriver
from modpy_safe.db.pool import Pool


class Conn:
    """A stand-in connection that records what the pool did to it."""

    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.number = Conn.made
        self.closed = False
        self.abandoned = False


class Driver(BaseDriver[Conn]):
    """Opens stand-in connections; closing and abandoning only mark them."""

    name = "stand-in"

    def connect(self) -> Conn:
        return Conn()

    def close(self, conn: Conn) -> None:
        conn.closed = True

    def abandon(self, conn: Conn) -> None:
        conn.abandoned = True


@pytest.fixture
def hide_from_fork_hook(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Return a function that makes the at-fork hook find none of the pools made so far."""
    return lambda: monkeypatch.setattr(_pool, "_pools", weakref.WeakSet())


def test_checkout_in_the_child_abandons_the_parents_connections(
        hide_from_fork_hook: Callable[[], None]) -> None:
    """The child gets a new connection; the parent's are abandoned, never closed nor reused."""
    pool: Pool[Conn] = Pool(Driver(), name="forked", max_size=2)
    idle, out = pool.checkout(), pool.checkout()
    pool.checkin(idle)
    hide_from_fork_hook()

    def child() -> dict[str, Any]:
        got = pool.checkout()
        pool.checkin(got)
        again = pool.checkout()
        return {"got": got.conn.number, "again": again.conn.number,
                "abandoned": [idle.conn.abandoned, out.conn.abandoned],
                "closed": [idle.conn.closed, out.conn.closed], "stats": pool.stats()}

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["got"] not in (idle.conn.number, out.conn.number)
    assert report["again"] == report["got"]  # its own connection, reused
    assert report["abandoned"] == [True, True] and report["closed"] == [False, False]
    assert report["stats"]["discarded_fork"] == 2 and report["stats"]["size"] == 1
    # The parent's pool is untouched.
    assert pool.stats()["size"] == 2 and not idle.conn.abandoned
    pool.checkin(out)


def test_close_in_the_child_never_closes_the_parents_connections(
        hide_from_fork_hook: Callable[[], None]) -> None:
    """Closing the pool in the child (its exit) abandons what it inherited instead."""
    pool: Pool[Conn] = Pool(Driver(), name="forked", max_size=2)
    entries = [pool.checkout(), pool.checkout()]
    for entry in entries:
        pool.checkin(entry)
    hide_from_fork_hook()

    def child() -> dict[str, Any]:
        done = pool.close(wait=0)
        return {"done": done, "closed": [e.conn.closed for e in entries],
                "abandoned": [e.conn.abandoned for e in entries], "stats": pool.stats()}

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["done"] is True
    assert report["closed"] == [False, False] and report["abandoned"] == [True, True]
    assert report["stats"]["size"] == 0 and report["stats"]["closed"] == 0
    assert pool.stats()["idle"] == 2 and not any(e.conn.closed for e in entries)


@pytest.fixture
def database(postgres: Any) -> Iterator[Database]:
    db = Database(postgres.dsn_for("pool_pid_check"), name="pid_check", mode="persistent")
    yield db
    db.close(wait=1)


def backend_pid(db: Database) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def test_a_child_gets_its_own_server_session(hide_from_fork_hook: Callable[[], None],
                                             postgres: Any, database: Database) -> None:
    """Against PostgreSQL: a session of its own in the child; the parent's lives on."""
    parent = backend_pid(database)
    hide_from_fork_hook()

    def child() -> dict[str, Any]:
        mine = backend_pid(database)
        stats = database.stats()
        database.close(wait=0)
        _driver._forsaken.clear()  # free the parent's objects: nothing may reach the server
        gc.collect()
        return {"backend": mine, "stats": stats}

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["backend"] != parent and report["stats"]["discarded_fork"] == 1
    assert backend_pid(database) == parent  # the same session, still working
    # The child's own session is gone (a backend leaves pg_stat_activity a moment later).
    assert postgres.settled_count("pool_pid_check", expected=1) == 1
    assert postgres.backend_pids("pool_pid_check") == [parent]
