"""A database coming back: one attempt at a time, and no request fails on an old verdict.

The pool with a stand-in driver and a fake clock; the same rule through real
httpd and a real PostgreSQL restart is in tests/db/test_recovery_httpd.py.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

import pytest

from modpy_safe import DatabaseUnavailable
from modpy_safe.db import pool as _pool
from modpy_safe.db.driver import BaseDriver
from modpy_safe.db.pool import Pool

CLIENTS = 8


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedDriver(BaseDriver[object]):
    """Connects (or refuses) when ``gate`` opens; counts attempts and how many overlap."""

    def __init__(self) -> None:
        self.down = True
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        self.attempts = 0
        self.in_flight = 0
        self.most_in_flight = 0

    def connect(self) -> object:
        with self.lock:
            self.attempts += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            down = self.down
        try:
            assert self.gate.wait(30)
            if down:
                raise OSError("connection refused")
            return object()
        finally:
            with self.lock:
                self.in_flight -= 1

    def describe_error(self, exc: BaseException) -> str:
        return "refused"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_pool, "monotonic", fake)
    return fake


def poll(predicate: Any, what: str, tries: int = 3000) -> None:
    """Wait (bounded) until ``predicate()`` holds; fail saying ``what`` never happened."""
    event = threading.Event()
    for _ in range(tries):
        if predicate():
            return
        event.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def _down_pool(driver: GatedDriver, clock: Clock, *, keep: bool = True) -> Pool[object]:
    """A pool whose first attempt failed and whose back-off window has passed."""
    pool = Pool(driver, name="fake", max_size=CLIENTS, timeout=30, keep=keep)
    with pytest.raises(DatabaseUnavailable):
        pool.checkout()
    clock.now += _pool.BACKOFF_MAX
    return pool


def _checkout_all(pool: Pool[object], count: int) -> tuple[Any, list[Any]]:
    """Start ``count`` checkouts at once; return the executor and their futures."""
    executor = concurrent.futures.ThreadPoolExecutor(count)
    return executor, [executor.submit(pool.checkout) for _ in range(count)]


@pytest.mark.parametrize("keep", [True, False], ids=["pooled", "per-request"])
def test_the_others_wait_for_the_attempt_in_flight_and_succeed_with_it(
        clock: Clock, keep: bool) -> None:
    """Database back: while one request's attempt is in flight, the rest wait, then connect."""
    driver = GatedDriver()
    pool = _down_pool(driver, clock, keep=keep)
    driver.down = False
    driver.gate.clear()  # the next attempt hangs until the test lets it finish
    executor, futures = _checkout_all(pool, CLIENTS)
    try:
        poll(lambda: pool.stats()["reconnect_waits"] == CLIENTS - 1,
             f"{CLIENTS - 1} requests waiting for the attempt in flight")
        assert driver.in_flight == 1  # one attempt, not one per thread
        driver.gate.set()
        entries = [future.result(30) for future in futures]  # none raised
    finally:
        driver.gate.set()
        executor.shutdown()
    assert len({id(entry) for entry in entries}) == CLIENTS
    assert driver.attempts == 1 + CLIENTS
    assert pool.stats()["connect_failures"] == 1


def test_an_attempt_fails_only_the_requests_that_arrived_before_it_began(clock: Clock) -> None:
    """Still down: a request fails on an attempt begun after it arrived, never on an older one."""
    driver = GatedDriver()
    pool = _down_pool(driver, clock)
    driver.gate.clear()
    executor, futures = _checkout_all(pool, CLIENTS)
    try:
        poll(lambda: pool.stats()["reconnect_waits"] == CLIENTS - 1,
             f"{CLIENTS - 1} requests waiting for the attempt in flight")
        driver.gate.set()  # attempt 2 fails: only its own request fails with it
        poll(lambda: sum(f.done() for f in futures) == 1 and driver.in_flight == 0,
             "the request that made the attempt failed")
        assert [f for f in futures if f.done() and f.exception() is None] == []
        assert driver.attempts == 2  # the waiters arrived after it began: they wait on
        clock.now += _pool.BACKOFF_MAX  # the next window opens: one of them dials
        errors = [f.exception(30) for f in futures]
    finally:
        driver.gate.set()
        executor.shutdown()
    assert all(isinstance(exc, DatabaseUnavailable) for exc in errors), errors
    assert driver.attempts == 3  # the third failed all the requests that waited for it
    assert driver.most_in_flight == 1


def test_a_waiting_request_gives_up_after_the_pool_timeout(clock: Clock) -> None:
    """The wait for an attempt is bounded: past ``timeout`` the request gets 503, not a hang."""
    driver = GatedDriver()
    pool = _down_pool(driver, clock)
    driver.gate.clear()
    executor = concurrent.futures.ThreadPoolExecutor(2)
    try:
        checker = executor.submit(pool.checkout)
        poll(lambda: driver.in_flight == 1, "an attempt in flight")
        waiter = executor.submit(pool.checkout, 0.5)
        poll(lambda: pool.stats()["reconnect_waits"] == 1, "a request waiting")
        clock.now += 0.5  # its deadline passes; it looks again when its wait runs out
        with pytest.raises(DatabaseUnavailable, match="no new attempt to connect ended within 0.5"):
            waiter.result(30)
    finally:
        driver.gate.set()
        executor.shutdown()
    with pytest.raises(DatabaseUnavailable):
        checker.result(30)
    assert pool.stats()["in_use"] == 0 and pool.stats()["size"] == 0
