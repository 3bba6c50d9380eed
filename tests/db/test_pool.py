"""The pool core (modpy_safe.db.pool) with a stand-in driver and a fake clock, plus a
thread stress against the private PostgreSQL."""
from __future__ import annotations

import os
import threading
from typing import Any

import psycopg2
import pytest
from fix_fork import in_forked_child

from modpy_safe import DatabaseUnavailable, PoolClosed, PoolTimeout
from modpy_safe.db import pool as _pool
from modpy_safe.db.driver import BaseDriver
from modpy_safe.db.pool import COUNTERS, Pool
from modpy_safe.db.psycopg2 import Psycopg2Driver


class FakeConn:
    """A stand-in connection that records what the pool did to it."""

    serial = 0

    def __init__(self) -> None:
        FakeConn.serial += 1
        self.number = FakeConn.serial
        self.closed = False
        self.abandoned = False
        self.dirty = False
        self.broken = False


class Driver(BaseDriver[FakeConn]):
    """connect/close/ping/reset hooks over FakeConn, with failure switches."""

    def __init__(self) -> None:
        self.connects = 0
        self.down = False
        self.pings: list[FakeConn] = []

    def connect(self) -> FakeConn:
        self.connects += 1
        if self.down:
            raise OSError("connection refused (password=hunter22)")
        return FakeConn()

    def close(self, conn: FakeConn) -> None:
        conn.closed = True

    def abandon(self, conn: FakeConn) -> None:
        conn.abandoned = True

    def ping(self, conn: FakeConn) -> bool:
        self.pings.append(conn)
        return not conn.broken

    def reset(self, conn: FakeConn) -> bool:
        if conn.broken:
            raise RuntimeError("unknown state")
        dirty, conn.dirty = conn.dirty, False
        return dirty

    def pool(self, **kw: Any) -> Pool[FakeConn]:
        kw.setdefault("max_size", 2)
        kw.setdefault("name", "fake")
        return Pool(self, **kw)

    def describe_error(self, exc: BaseException) -> str:
        return "refused (password=***)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now



@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_pool, "monotonic", fake)
    return fake


@pytest.fixture
def driver() -> Driver:
    return Driver()


def test_reuses_an_idle_connection_and_counts(driver: Driver) -> None:
    pool = driver.pool()
    first = pool.checkout()
    pool.checkin(first)
    second = pool.checkout()
    assert second.conn is first.conn
    pool.checkin(second)
    stats = pool.stats()
    assert set(stats) == set(COUNTERS)
    assert (stats["requests"], stats["opened"], stats["in_use"], stats["idle"], stats["size"]) == (
        2, 1, 0, 1, 1)


def test_exhaustion_times_out_naming_the_database(driver: Driver) -> None:
    pool = driver.pool(max_size=1, timeout=0.05)
    held = pool.checkout()
    with pytest.raises(PoolTimeout, match=r"database 'fake' .* within 0.05 s") as info:
        pool.checkout()
    assert isinstance(info.value, psycopg2.OperationalError)
    stats = pool.stats()
    assert (stats["waits"], stats["timeouts"], stats["in_use"]) == (1, 1, 1)
    assert stats["wait_time_max"] > 0
    pool.checkin(held)
    assert pool.checkout().conn is held.conn


def test_a_waiter_gets_the_connection_given_back(driver: Driver) -> None:
    pool = driver.pool(max_size=1, timeout=30)
    held = pool.checkout()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.checkout()))
    waiter.start()
    for _ in range(1000):  # until the waiter is blocked in the pool
        if pool.stats()["waits"]:
            break
        threading.Event().wait(0.005)
    pool.checkin(held)
    waiter.join(10)
    assert got and got[0].conn is held.conn


def test_expired_connection_is_replaced(driver: Driver, clock: Clock) -> None:
    pool = driver.pool(max_lifetime=100)
    entry = pool.checkout()
    pool.checkin(entry)
    clock.now += 89  # below 90 %, the least a connection lives
    assert pool.checkout().conn is entry.conn
    clock.now += 12
    pool.checkin(entry)  # checked in past its lifetime: closed at once
    assert entry.conn.closed
    assert pool.stats()["discarded_lifetime"] == 1

    fresh = pool.checkout()
    pool.checkin(fresh)
    clock.now += 101
    replaced = pool.checkout()  # expired while idle: replaced in the same checkout
    assert replaced.conn is not fresh.conn and fresh.conn.closed
    assert pool.stats()["discarded_lifetime"] == 2


def test_long_idle_connection_is_replaced_and_the_pool_shrinks(driver: Driver,
                                                               clock: Clock) -> None:
    pool = driver.pool(max_size=3, max_idle=60, min_size=1)
    a, b, c = pool.checkout(), pool.checkout(), pool.checkout()
    pool.checkin(a)
    clock.now += 61
    pool.checkin(b)  # a has been idle too long and the pool is above min_size
    assert a.conn.closed and pool.stats()["size"] == 2
    clock.now += 61
    pool.checkin(c)  # b too, still above min_size
    assert b.conn.closed and pool.stats()["size"] == 1
    clock.now += 61
    got = pool.checkout()  # c sat 61 s: replaced rather than handed out
    assert got.conn is not c.conn and c.conn.closed
    stats = pool.stats()
    assert stats["discarded_idle"] == 3 and stats["size"] == 1


def test_ping_only_after_ping_after_and_dead_one_replaced(driver: Driver, clock: Clock) -> None:
    pool = driver.pool(ping_after=5)
    entry = pool.checkout()
    pool.checkin(entry)
    clock.now += 4
    pool.checkin(pool.checkout())
    assert driver.pings == []
    clock.now += 5
    entry.conn.broken = True
    got = pool.checkout()
    assert driver.pings == [entry.conn]
    assert got.conn is not entry.conn and entry.conn.closed
    assert pool.stats()["discarded_ping"] == 1 and pool.stats()["size"] == 1


def test_cheap_check_decides_between_keep_ping_and_discard(driver: Driver) -> None:
    verdicts: dict[int, bool | None] = {}
    class Checking(Driver):
        def check(self, conn: FakeConn) -> bool | None:
            return verdicts.get(conn.number, True)

    driver = Checking()
    pool = Pool(driver, max_size=2)
    entry = pool.checkout()
    pool.checkin(entry)
    verdicts[entry.conn.number] = None  # doubtful: ping, which succeeds
    assert pool.checkout().conn is entry.conn and driver.pings == [entry.conn]
    pool.checkin(entry)
    verdicts[entry.conn.number] = False  # broken: no ping, replaced
    got = pool.checkout()
    assert got.conn is not entry.conn and len(driver.pings) == 1
    assert pool.stats()["discarded_error"] == 1


def test_reset_on_checkin(driver: Driver) -> None:
    pool = driver.pool(max_size=1)
    entry = pool.checkout()
    entry.conn.dirty = True
    pool.checkin(entry)
    assert pool.stats()["returned_in_transaction"] == 1 and not entry.conn.closed
    entry = pool.checkout()
    entry.conn.broken = True
    pool.checkin(entry)  # reset failed: closed, and the slot is free again
    stats = pool.stats()
    assert entry.conn.closed
    assert (stats["reset_failures"], stats["discarded_error"], stats["size"], stats["in_use"]) == (
        1, 1, 0, 0)
    assert pool.checkout(timeout=0).conn is not entry.conn


def test_giving_back_twice_is_refused(driver: Driver) -> None:
    pool = driver.pool()
    entry = pool.checkout()
    pool.checkin(entry)
    with pytest.raises(RuntimeError, match="given back twice"):
        pool.checkin(entry)
    assert pool.stats()["idle"] == 1


def test_keep_false_closes_every_connection_on_return(driver: Driver) -> None:
    pool = driver.pool(keep=False)
    entry = pool.checkout()
    pool.checkin(entry)
    assert entry.conn.closed and pool.stats()["size"] == 0
    assert pool.stats()["closed"] == 1


def test_dead_server_is_dialled_once_per_back_off_window(driver: Driver, clock: Clock) -> None:
    pool = driver.pool()
    driver.down = True
    with pytest.raises(DatabaseUnavailable, match="'fake' is unavailable: refused") as info:
        pool.checkout()
    assert "hunter22" not in str(info.value)
    # Inside the back-off window nobody dials: a request waits for the next attempt
    # (here timeout=0: it gives up at once) instead of failing on the old verdict.
    with pytest.raises(DatabaseUnavailable, match="no new attempt to connect ended within 0 s"):
        pool.checkout(timeout=0)
    assert driver.connects == 1
    assert pool.stats()["size"] == 0 and pool.stats()["in_use"] == 0
    clock.now += _pool.BACKOFF_FIRST
    with pytest.raises(DatabaseUnavailable):
        pool.checkout()
    assert driver.connects == 2
    driver.down = False
    clock.now += _pool.BACKOFF_FIRST  # the window doubled: still closed
    with pytest.raises(DatabaseUnavailable, match="no new attempt"):
        pool.checkout(timeout=0)
    clock.now += _pool.BACKOFF_MAX
    entry = pool.checkout()
    assert not entry.conn.closed and driver.connects == 3
    assert pool.stats()["connect_failures"] == 2


def test_close_refuses_checkouts_and_closes_late_returns(driver: Driver) -> None:
    pool = driver.pool(max_size=2, timeout=30)
    out, idle = pool.checkout(), pool.checkout()
    pool.checkin(idle)
    waiter_error: list[BaseException] = []
    pool2 = driver.pool(max_size=1, timeout=30)
    held = pool2.checkout()

    def wait_on_pool2() -> None:
        try:
            pool2.checkout()
        except BaseException as exc:
            waiter_error.append(exc)

    waiter = threading.Thread(target=wait_on_pool2)
    waiter.start()
    for _ in range(1000):
        if pool2.stats()["waits"]:
            break
        threading.Event().wait(0.005)
    assert pool2.close(wait=0) is False  # one still out
    waiter.join(10)
    assert waiter_error and isinstance(waiter_error[0], PoolClosed)
    pool2.checkin(held)
    assert held.conn.closed

    assert pool.close(wait=0.01) is False
    assert idle.conn.closed and not out.conn.closed
    with pytest.raises(PoolClosed, match="'fake' is closed"):
        pool.checkout()
    pool.checkin(out)
    assert out.conn.closed and pool.stats()["size"] == 0


def test_constructor_checks_its_arguments(driver: Driver) -> None:
    with pytest.raises(ValueError, match="max_size must be a whole number of at least 1"):
        Pool(driver, max_size=0)
    with pytest.raises(ValueError, match=r"min_size must be from 0 to max_size \(2\)"):
        Pool(driver, max_size=2, min_size=3)


def test_child_process_abandons_the_parents_connections(driver: Driver) -> None:
    pool = driver.pool(max_size=2)
    kept = pool.checkout()
    out = pool.checkout()
    pool.checkin(kept)
    def child() -> dict[str, Any]:
        got = pool.checkout()
        pool.checkin(out)  # made in the parent, given back in the child
        return {
            "new": got.conn.number not in (kept.conn.number, out.conn.number),
            "abandoned": [kept.conn.abandoned, out.conn.abandoned],
            "closed": [kept.conn.closed, out.conn.closed],
            "stats": pool.stats(),
        }

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["new"] is True
    assert report["abandoned"] == [True, True] and report["closed"] == [False, False]
    assert report["stats"]["discarded_fork"] == 2 and report["stats"]["size"] == 1
    # The parent's pool is untouched.
    assert not kept.conn.abandoned and pool.stats()["size"] == 2
    pool.checkin(out)


def test_thread_stress_never_shares_a_connection(driver: Driver) -> None:
    threads, rounds, size = 16, 200, 4
    pool = driver.pool(max_size=size, timeout=30)
    holders: dict[int, int] = {}
    lock = threading.Lock()
    errors: list[str] = []
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        me = threading.get_ident()
        for _ in range(rounds):
            entry = pool.checkout()
            with lock:
                if entry.conn.number in holders:
                    errors.append(f"{entry.conn.number} handed to two threads")
                holders[entry.conn.number] = me
            os.sched_yield()  # let others run while it is held
            with lock:
                del holders[entry.conn.number]
            entry.conn.dirty = entry.conn.number % 2 == 0
            pool.checkin(entry)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not any(worker.is_alive() for worker in workers)
    assert errors == []
    stats = pool.stats()
    assert stats["requests"] == threads * rounds
    assert stats["opened"] == stats["size"] <= size
    assert stats["in_use"] == 0 and stats["idle"] == stats["size"]
    assert stats["timeouts"] == 0 and stats["closed"] == 0


def test_thread_stress_against_postgres(postgres: Any) -> None:
    app = "pool_stress"
    dsn = postgres.dsn_for(app)
    pool: Pool[Any] = Pool(Psycopg2Driver(dsn), name="stress", max_size=4, timeout=30)
    seen: set[int] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(25):
                entry = pool.checkout()
                try:
                    with entry.conn.cursor() as cur:
                        cur.execute("SELECT pg_backend_pid()")
                        with lock:
                            seen.add(cur.fetchone()[0])
                    entry.conn.rollback()
                finally:
                    pool.checkin(entry)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(12)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert errors == []
    assert len(seen) <= 4 and postgres.count_connections(app) == pool.stats()["size"] <= 4
    assert pool.close(wait=1) is True
    assert postgres.settled_count(app, expected=0) == 0
