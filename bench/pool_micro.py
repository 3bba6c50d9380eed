"""Row 7: the cost of one checkout + return, in process, modpy_safe's pool against the common pools.

modpy_safe's ``Pool`` is timed with a stand-in driver (a connection object that
does nothing), so the figure is the pool's own bookkeeping; it is also timed
with the psycopg2 hooks ``Database`` installs (a liveness check at checkout, a
reset at return) and as the whole ``with db.connection():`` block, on a real
connection, to show what a request pays beyond the bare pool. The baselines are
timed as users run them, on real connections to the private PostgreSQL: their
checkout and return do not talk to the server while a connection is idle and
outside a transaction, so they too measure only the pool's own bookkeeping.

Each timed loop prefetches the bound methods so the loops cost the same for
every pool; sides alternate, rounds are repeated and the median is kept.

Run alone: ``.venv/bin/python bench/pool_micro.py [--dsn DSN]``.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StandInConnection", "PoolTiming", "measure"]

# Size of every pool: what a threaded child with 4 threads would use.
POOL_SIZE = 4

Loop = Callable[[int], None]


class StandInConnection:
    """A DB-API connection that does nothing: what the pool sees, minus the driver."""

    closed = 0
    autocommit = False

    def cursor(self) -> "StandInConnection":
        return self

    def execute(self, *_args: object) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = 1


@dataclass
class PoolTiming:
    """Microseconds per checkout + return of one pool, one figure per round."""

    label: str
    rounds_us: list[float] = field(default_factory=list)
    error: str = ""

    @property
    def median_us(self) -> float:
        return statistics.median(self.rounds_us)


# ----------------------------------------------------------------- the sides


def _modpy_safe_loop(_dsn: str | None) -> tuple[Loop, Callable[[], None]]:
    from modpy_safe.db.driver import CallableDriver
    from modpy_safe.db.pool import Pool

    pool: Any = Pool(CallableDriver(StandInConnection), name="bench", max_size=POOL_SIZE)

    def loop(n: int) -> None:
        checkout, checkin = pool.checkout, pool.checkin
        for _ in range(n):
            checkin(checkout())

    return loop, pool.close


def _hooked_pool_loop(dsn: str | None) -> tuple[Loop, Callable[[], None]]:
    """modpy_safe's Pool with the psycopg2 hooks Database gives it, on a real connection."""
    from modpy_safe.db.pool import Pool
    from modpy_safe.db.psycopg2 import Psycopg2Driver

    real = _need(dsn)
    pool: Any = Pool(Psycopg2Driver(real), name="bench-hooks", max_size=POOL_SIZE)

    def loop(n: int) -> None:
        checkout, checkin = pool.checkout, pool.checkin
        for _ in range(n):
            checkin(checkout())

    return loop, pool.close


def _database_loop(dsn: str | None) -> tuple[Loop, Callable[[], None]]:
    """The whole ``with db.connection():`` block of a pooled Database, on a real connection."""
    import modpy_safe

    db = modpy_safe.Database(_need(dsn), name="bench-micro", mode="pooled")

    def loop(n: int) -> None:
        connection = db.connection
        for _ in range(n):
            with connection():
                pass

    def close() -> None:
        db.close()

    return loop, close


def _psycopg2_loop(dsn: str | None) -> tuple[Loop, Callable[[], None]]:
    import psycopg2.pool

    pool = psycopg2.pool.ThreadedConnectionPool(1, POOL_SIZE, _need(dsn))

    def loop(n: int) -> None:
        getconn, putconn = pool.getconn, pool.putconn
        for _ in range(n):
            putconn(getconn())

    return loop, pool.closeall


def _dbutils_loop(dsn: str | None) -> tuple[Loop, Callable[[], None]]:
    import psycopg2
    from dbutils.pooled_db import PooledDB

    pool = PooledDB(psycopg2, mincached=1, maxconnections=POOL_SIZE, blocking=True,
                    dsn=_need(dsn))

    def loop(n: int) -> None:
        connection = pool.connection
        for _ in range(n):
            connection().close()

    return loop, pool.close


def _psycopg_pool_loop(dsn: str | None) -> tuple[Loop, Callable[[], None]]:
    from psycopg_pool import ConnectionPool

    pool = ConnectionPool(_need(dsn), min_size=1, max_size=POOL_SIZE, open=True)
    pool.wait(timeout=30)

    def loop(n: int) -> None:
        getconn, putconn = pool.getconn, pool.putconn
        for _ in range(n):
            putconn(getconn())

    return loop, pool.close


def _need(dsn: str | None) -> str:
    if not dsn:
        raise RuntimeError("PostgreSQL is not running, and this pool needs real connections")
    return dsn


STAND_IN = "modpy_safe Pool (stand-in driver)"
HOOKED = "modpy_safe Pool + Database's psycopg2 hooks (real connection)"
DATABASE = "with Database(mode='pooled').connection() (real connection)"
BASELINES = ("psycopg2 ThreadedConnectionPool", "DBUtils PooledDB", "psycopg_pool ConnectionPool")

SIDES: dict[str, Callable[[str | None], tuple[Loop, Callable[[], None]]]] = {
    STAND_IN: _modpy_safe_loop,
    HOOKED: _hooked_pool_loop,
    DATABASE: _database_loop,
    "psycopg2 ThreadedConnectionPool": _psycopg2_loop,
    "DBUtils PooledDB": _dbutils_loop,
    "psycopg_pool ConnectionPool": _psycopg_pool_loop,
}


def measure(dsn: str | None, *, iterations: int, rounds: int) -> dict[str, PoolTiming]:
    """Time every side of :data:`SIDES` ``rounds`` times, rotating the order."""
    timings = [PoolTiming(label) for label in SIDES]
    loops: list[Loop | None] = []
    closers: list[Callable[[], None]] = []
    for timing, make in zip(timings, SIDES.values(), strict=False):
        try:
            loop, close = make(dsn)
            loop(min(iterations, 1000))  # warm-up: open the connection, fill caches
        except Exception as exc:  # one missing library must not stop the others
            timing.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
            loops.append(None)
            continue
        loops.append(loop)
        closers.append(close)
    gc_was_enabled = gc.isenabled()
    # A collection landing inside one side's loop would be charged to that side only.
    gc.disable()
    try:
        for r in range(rounds):
            order = list(range(len(timings)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                timed = loops[i]
                if timed is None:
                    continue
                start = time.perf_counter_ns()
                timed(iterations)
                elapsed = time.perf_counter_ns() - start
                timings[i].rounds_us.append(elapsed / iterations / 1000.0)
    finally:
        if gc_was_enabled:
            gc.enable()
        for close in closers:
            try:
                close()
            except Exception:  # closing a benchmark pool must not hide the numbers
                pass
    return {t.label: t for t in timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="libpq DSN of a PostgreSQL for the real-connection pools")
    parser.add_argument("--iterations", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for t in measure(args.dsn, iterations=args.iterations, rounds=args.rounds).values():
        if t.error:
            print(f"{t.label:40} not measured: {t.error}")
        else:
            rounds = ", ".join(f"{x:.2f}" for x in t.rounds_us)
            print(f"{t.label:40} {t.median_us:6.2f} µs  (rounds {rounds})")


if __name__ == "__main__":
    main()
