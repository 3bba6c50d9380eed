"""The connection pool core: bounded, thread-safe, fork-aware, no background threads.

The core knows nothing about httpd and little about the driver: it is given one
driver object (:class:`~modpy_safe.db.driver.Driver`) that opens connections
(``connect()``, passed in as DBUtils' ``steady_db`` passes its creator) and
checks, pings, resets, closes and abandons them. :class:`~modpy_safe.Database`
builds one :class:`Pool` per database with the driver it names.

Names (used by the benchmark):

* ``Pool(driver, *, name, max_size, ...)`` — the pool.
* ``Pool.checkout(timeout=None) -> Entry`` — take a connection (``entry.conn``).
* ``Pool.checkin(entry)`` — give it back; always frees the slot.
* ``Pool.close(wait=3.0) -> bool`` — refuse new checkouts, close what comes back.
* ``Pool.stats() -> dict`` — the counters (see :data:`COUNTERS`).

The fast path of checkout + checkin is one lock round each, a deque pop/append,
one ``os.getpid()`` and one monotonic clock read; everything else (opening,
ping, replacement, waiting) is off that path. Nothing is logged on it.
"""
from __future__ import annotations

import collections
import os
import random
import threading
import time
import weakref
from typing import Any, Generic, TypeVar

from .._errors import DatabaseUnavailable, PoolClosed, PoolTimeout
from .driver import Driver, forsake

__all__ = ["Pool", "Entry", "COUNTERS", "DISCARD_CAUSES", "forsake"]

Conn = TypeVar("Conn")

#: Why a connection was thrown away instead of being reused.
DISCARD_CAUSES = ("lifetime", "idle", "ping", "error", "fork")

#: Every key of :meth:`Pool.stats`.
COUNTERS = (
    "requests", "waits", "wait_time_total", "wait_time_max", "timeouts",
    "opened", "connect_failures", "reconnect_waits", "closed",
    *(f"discarded_{cause}" for cause in DISCARD_CAUSES),
    "returned_in_transaction", "reset_failures", "in_use", "idle", "size",
)

# After a failed connect the next attempt waits this long (doubling up to the
# maximum), so a dead server costs one connect timeout per window, not one per thread.
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 1.0

monotonic = time.monotonic
getpid = os.getpid

# Pools alive in this process, so the fork hook can fix them up in the child.
_pools: "weakref.WeakSet[Pool[Any]]" = weakref.WeakSet()


class Entry(Generic[Conn]):
    """One connection of a pool and what the pool knows about it."""

    __slots__ = ("conn", "created", "expires", "last_used", "gen", "out")

    def __init__(self, conn: Conn, now: float, expires: float, gen: int) -> None:
        self.conn = conn
        self.created = now
        self.expires = expires
        self.last_used = now
        self.gen = gen
        self.out = True




class Pool(Generic[Conn]):
    """A bounded pool of connections opened by ``driver`` (see :class:`~.driver.Driver`).

    ``max_size`` connections at most are open; ``min_size`` idle ones are kept
    even when they sat unused for ``max_idle`` seconds. A checkout that finds
    none free waits up to ``timeout`` seconds, then raises PoolTimeout.
    A connection is replaced when it is older than ``max_lifetime`` (each one
    gets 90–100 % of it, so they do not all expire at once) or idle longer than
    ``max_idle``; ``None`` means no limit. ``keep=False`` closes every
    connection when it comes back (per-request connections). A connection
    given back less than ``trust_for`` seconds ago skips the driver's check.

    The driver's hooks: ``check(conn)`` is a cheap local test run at every
    reuse (True: fine, False: broken, None: doubtful, ping it); ``ping(conn)``
    makes one round trip and returns False when the connection is dead; it also
    runs when a connection was idle ``ping_after`` seconds. ``reset(conn)``
    cleans a returned connection and returns True when it had to roll back;
    raising means the connection is closed. ``close(conn)`` closes one; it must
    not raise. ``abandon(conn)`` disposes of a connection inherited from the
    parent after a fork without telling the server. ``describe_error(exc)``
    turns a connect failure into a message without secrets.
    """

    def __init__(
        self,
        driver: Driver[Conn],
        *,
        name: str = "default",
        max_size: int,
        min_size: int = 0,
        timeout: float = 10.0,
        max_lifetime: float | None = None,
        max_idle: float | None = None,
        ping_after: float | None = None,
        keep: bool = True,
        trust_for: float = 0.0,
    ) -> None:
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a whole number of at least 1, not {max_size!r}")
        if not isinstance(min_size, int) or not 0 <= min_size <= max_size:
            raise ValueError(f"min_size must be from 0 to max_size ({max_size}), not {min_size!r}")
        if timeout < 0:
            raise ValueError(f"timeout must be at least 0 seconds, not {timeout!r}")
        self.name = name
        self.driver = driver
        # The hooks as bound methods, looked up once: checkout and checkin call them.
        self._connect = driver.connect
        self.max_size = max_size
        self.min_size = min_size
        self.timeout = timeout
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.ping_after = ping_after
        self.keep = keep
        # Given back less than this long ago: handed out again without the driver's
        # check (see Database's TRUST_FOR for why that keeps the guarantees).
        self._trust_for = trust_for
        self._check = driver.check
        self._ping = driver.ping
        self._reset = driver.reset
        self._close = driver.close
        self._abandon = driver.abandon
        self._describe = driver.describe_error
        # One threshold for the fast path: past it, the slow path sorts out
        # whether the connection needs a ping or a replacement.
        limits = [x for x in (max_idle, ping_after) if x is not None]
        self._suspect_after = min(limits) if limits else float("inf")
        self._init_state()
        _pools.add(self)

    def _init_state(self) -> None:
        # Plain lock for the fast path (its context manager is C code); the
        # condition on the same lock is used only when someone waits.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self._requests = 0
        self._idle: collections.deque[Entry[Conn]] = collections.deque()
        self._all: set[Entry[Conn]] = set()
        self._pid = getpid()
        self._gen = getattr(self, "_gen", 0) + 1
        self._size = 0  # open or being opened
        self._in_use = 0  # checked out or being opened
        self._closed = False
        # While the database is down, one attempt at a time says whether it is back.
        self._checked = threading.Condition(self._lock)  # notified when an attempt ends
        self._checking = False
        self._attempts = 0  # connect attempts begun, numbered from 1
        self._last_failed = 0  # the number of the latest attempt that failed
        self._down_until = 0.0
        self._backoff = BACKOFF_FIRST
        self._down_reason = ""
        self._counts: dict[str, float] = dict.fromkeys(COUNTERS[1:-3], 0)
        self._counts["wait_time_total"] = 0.0
        self._counts["wait_time_max"] = 0.0

    # ------------------------------------------------------------------ checkout
    def checkout(self, timeout: float | None = None) -> Entry[Conn]:
        """Return a checked, usable connection's entry; ``entry.conn`` is the connection.

        Waits up to ``timeout`` (default: the pool's) for a free slot, then
        raises PoolTimeout; raises DatabaseUnavailable when a needed new
        connection cannot be opened and PoolClosed after :meth:`close`.
        """
        if self._pid != getpid():
            self._after_fork()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            self._requests += 1
            if self._idle:
                entry: Entry[Conn] | None = self._idle.pop()
                self._in_use += 1
            else:
                entry = self._reserve(self.timeout if timeout is None else timeout)
        if entry is None:
            return self._open(self.timeout if timeout is None else timeout)
        entry.out = True
        now = monotonic()
        idle = now - entry.last_used
        if now >= entry.expires or idle >= self._suspect_after:
            return self._revalidate(entry, now)
        if idle >= self._trust_for and self._check(entry.conn) is not True:
            return self._revalidate(entry, now)
        return entry

    def _reserve(self, timeout: float) -> Entry[Conn] | None:
        """With the lock held: take a free slot (None) or wait for an idle entry."""
        if self._size < self.max_size:
            self._size += 1
            self._in_use += 1
            return None
        counts = self._counts
        counts["waits"] += 1
        start = monotonic()
        deadline = start + timeout
        self._waiting += 1
        try:
            while True:
                remaining = deadline - monotonic()
                if remaining <= 0:
                    counts["timeouts"] += 1
                    raise PoolTimeout(
                        f"No connection of database {self.name!r} became free within "
                        f"{timeout:g} s: all {self.max_size} were in use. Raise its pool_max "
                        f"or timeout, or hold connections for shorter times."
                    )
                self._cond.wait(remaining)
                if self._closed:
                    raise self._closed_error()
                if self._idle:
                    self._in_use += 1
                    return self._idle.pop()
                if self._size < self.max_size:
                    self._size += 1
                    self._in_use += 1
                    return None
        finally:
            self._waiting -= 1
            waited = monotonic() - start
            counts["wait_time_total"] += waited
            if waited > counts["wait_time_max"]:
                counts["wait_time_max"] = waited

    def _revalidate(self, entry: Entry[Conn], now: float) -> Entry[Conn]:
        """Keep ``entry`` if it passes its checks, else replace it in the same slot."""
        cause = None
        if now >= entry.expires:
            cause = "lifetime"
        elif self.max_idle is not None and now - entry.last_used >= self.max_idle:
            cause = "idle"
        else:
            verdict = self._check(entry.conn)
            if verdict is False:
                cause = "error"
            elif verdict is None or (
                self.ping_after is not None and now - entry.last_used >= self.ping_after
            ):
                if not self._ping(entry.conn):
                    cause = "ping"
        if cause is None:
            return entry
        self._drop(entry, cause)
        return self._open()

    def _drop(self, entry: Entry[Conn], cause: str) -> None:
        """Close a checked-out entry's connection but keep its slot for a replacement."""
        with self._lock:
            self._all.discard(entry)
            self._counts["discarded_" + cause] += 1
            self._counts["closed"] += 1
        self._close(entry.conn)

    def _open(self, timeout: float | None = None) -> Entry[Conn]:
        """Open a connection into a slot already reserved; free the slot on failure.

        While the database is down (the last attempt failed), one request at a
        time makes the next attempt, when the back-off has passed; the others
        wait for it, at most ``timeout`` seconds (default: the pool's). A
        request fails only when an attempt begun after it arrived failed, so
        once the server accepts connections again, none fails.
        """
        checker = False
        try:
            with self._lock:
                if self._down_reason:
                    checker = self._await_attempt(self.timeout if timeout is None else timeout)
                self._attempts += 1
                attempt = self._attempts
            try:
                conn = self._connect()
            except Exception as exc:
                reason = self._describe(exc)
                with self._lock:
                    self._counts["connect_failures"] += 1
                    self._down_reason = reason
                    self._last_failed = max(self._last_failed, attempt)
                    self._down_until = monotonic() + self._backoff
                    self._backoff = min(self._backoff * 2, BACKOFF_MAX)
                raise DatabaseUnavailable(
                    f"Database {self.name!r} is unavailable: {reason}"
                ) from None
        except BaseException:
            with self._lock:
                self._size -= 1
                self._in_use -= 1
                if self._waiting:
                    self._cond.notify()
                if checker:
                    self._checking = False
                    self._checked.notify_all()
            raise
        now = monotonic()
        lifetime = self.max_lifetime
        expires = now + lifetime * random.uniform(0.9, 1.0) if lifetime else float("inf")
        entry = Entry(conn, now, expires, self._gen)
        with self._lock:
            self._down_reason = ""
            self._down_until = 0.0
            self._backoff = BACKOFF_FIRST
            self._counts["opened"] += 1
            self._all.add(entry)
            if checker:
                self._checking = False
                self._checked.notify_all()
        return entry

    def _await_attempt(self, timeout: float) -> bool:
        """With the lock held and the database down: wait until this thread may connect.

        Return True when this thread is to make the next attempt, False when
        one begun since it arrived succeeded. Raise DatabaseUnavailable when
        such an attempt failed, or when none ended within ``timeout`` seconds.
        """
        arrived = self._attempts
        deadline = monotonic() + timeout
        waited = False
        while self._down_reason:
            if self._last_failed > arrived:
                raise DatabaseUnavailable(
                    f"Database {self.name!r} is unavailable: {self._down_reason}")
            now = monotonic()
            if not self._checking and now >= self._down_until:
                self._checking = True
                return True
            if now >= deadline:
                raise DatabaseUnavailable(
                    f"Database {self.name!r} is unavailable: {self._down_reason} (no new "
                    f"attempt to connect ended within {timeout:g} s)")
            if not waited:
                waited = True
                self._counts["reconnect_waits"] += 1
            until = deadline if self._checking else min(deadline, self._down_until)
            self._checked.wait(until - now)
        return False

    # ------------------------------------------------------------------- checkin
    def checkin(self, entry: Entry[Conn]) -> None:
        """Give ``entry`` back: reset it, then keep it idle or close it. Frees the slot."""
        if entry.gen != self._gen:
            # Made before a fork; the slot it held belonged to the parent. (An
            # entry given back after a fork that no hook saw is caught by the
            # next checkout's pid check, which abandons every inherited entry.)
            entry.out = False
            return
        if not entry.out:
            raise RuntimeError(f"a connection was given back twice to database {self.name!r}")
        entry.out = False
        dirty = failed = False
        try:
            dirty = self._reset(entry.conn)
        except Exception:
            failed = True
        now = monotonic()
        stale: Entry[Conn] | None = None
        with self._lock:
            self._in_use -= 1
            counts = self._counts
            if dirty:
                counts["returned_in_transaction"] += 1
            if failed or self._closed or not self.keep or now >= entry.expires:
                self._size -= 1
                self._all.discard(entry)
                counts["closed"] += 1
                if failed:
                    counts["reset_failures"] += 1
                    counts["discarded_error"] += 1
                elif now >= entry.expires and self.keep and not self._closed:
                    counts["discarded_lifetime"] += 1
                stale, entry = entry, None  # type: ignore[assignment]
            else:
                entry.last_used = now
                self._idle.append(entry)
                # Shrink without a thread: the oldest idle one goes once it sat too long.
                oldest = self._idle[0]
                if (self.max_idle is not None and self._size > self.min_size
                        and oldest is not entry and now - oldest.last_used >= self.max_idle):
                    self._idle.popleft()
                    self._size -= 1
                    self._all.discard(oldest)
                    counts["closed"] += 1
                    counts["discarded_idle"] += 1
                    stale = oldest
            if self._waiting:
                self._cond.notify()
        if stale is not None:
            self._close(stale.conn)

    # --------------------------------------------------------------- lifecycle
    def close(self, wait: float = 3.0) -> bool:
        """Refuse new checkouts, close idle connections, wait up to ``wait`` s for the rest.

        Connections still checked out after that are closed when they come
        back. Return True when none was out any more.
        """
        if self._pid != getpid():
            self._after_fork()
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._size -= len(idle)
            for entry in idle:
                self._all.discard(entry)
            self._counts["closed"] += len(idle)
            self._cond.notify_all()
        for entry in idle:
            self._close(entry.conn)
        deadline = monotonic() + wait
        with self._lock:
            self._waiting += 1
            try:
                while self._in_use > 0:
                    remaining = deadline - monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1
        return True

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _closed_error(self) -> PoolClosed:
        return PoolClosed(
            f"Database {self.name!r} is closed (the process is exiting or the module "
            f"that declared it was reloaded with other settings)."
        )

    def _after_fork(self) -> None:
        """In a child process: forget the parent's connections without closing them."""
        with _fork_lock:
            if self._pid == getpid():
                return
            inherited = list(self._all)
            closed = self._closed
            counts = self._counts
            self._init_state()
            self._closed = closed
            self._counts["discarded_fork"] = counts["discarded_fork"] + len(inherited)
        for entry in inherited:
            self._abandon(entry.conn)

    def stats(self) -> dict[str, float]:
        """Return a snapshot of the counters (names in :data:`COUNTERS`)."""
        if self._pid != getpid():
            self._after_fork()
        with self._lock:
            out = dict(self._counts)
            out["requests"] = self._requests
            out["in_use"] = self._in_use
            out["idle"] = len(self._idle)
            out["size"] = self._size
        return out


_fork_lock = threading.Lock()


def _fix_pools_in_child() -> None:
    global _fork_lock
    # The lock may have been held by a thread that does not exist in the child.
    _fork_lock = threading.Lock()
    for pool in list(_pools):
        pool._after_fork()


os.register_at_fork(after_in_child=_fix_pools_in_child)
