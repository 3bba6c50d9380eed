"""Soak: event, 8 clients, 200 reloads, 20 000 requests.

The handler holds both kinds of connection a real site has: a
``modpy_safe.Database`` (pooled under event, handed over at each reload) and
the naive module-level ``psycopg2.connect`` (a new one at each reload; the
old one must be closed once the last request on the old version ends). Each
has its own application_name, so each is counted on its own.

The run stops by itself: after 20 000 requests, with a deadline as a safety
net. "Flat" is stated as bounds: the pool never holds more than
processes x ThreadsPerChild connections, the naive connections never more than
old + new per process while reloading and one per process at the end, and each
child's resident memory grows by at most RSS_GROWTH_KB after the warm-up.
"""
from __future__ import annotations

from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer

from .conftest import DISPATCH, Clients, assert_no_secret, child_rss_kb, report

# Its load runs up to 170 s by design: above the suite's default time limit.
pytestmark = [pytest.mark.httpd, pytest.mark.slow, pytest.mark.timeout(300)]

REQUESTS = 20_000
RELOADS = 200
CLIENTS = 8
PROCESSES = 2
THREADS = 8
WARM_UP = 2_000  # requests before the memory baseline is taken
#: Growth of a child's VmRSS after the warm-up that still counts as flat.
RSS_GROWTH_KB = 2048

SOURCE = """\
import os

import psycopg2

import modpy_safe

db = modpy_safe.Database(name="soak")
conn = psycopg2.connect({naive_dsn!r})
conn.autocommit = True  # shared by the process's threads: no transaction to share
VERSION = {version}
PAD = {pad!r}  # every version a different size, as real edits are


def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT %s", (VERSION,))
        assert cur.fetchone()[0] == VERSION
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    return "version %d pid %d" % (VERSION, os.getpid())
"""


def test_soak_reloads_under_load(httpd: Any, postgres: PostgresServer,
                                 record_property: Any) -> None:
    pool_app, naive_app = "fault_soak_pool", "fault_soak_naive"
    naive_dsn = postgres.dsn_for(naive_app)

    def source(version: int) -> str:
        return SOURCE.format(naive_dsn=naive_dsn, version=version, pad="x" * (version % 7))

    # psycopg2's first import is not safe when two threads race to it, which eight
    # clients on a fresh threaded server make them do: import it at child start,
    # as docs/deploying.md recommends.
    server: Httpd = httpd("event", directory=DISPATCH + "\nPythonInterpreter soak",
                          extra="PythonImport modpy_safe.dispatch soak",
                          processes=PROCESSES, threads=THREADS,
                          files={"app.py": source(0)}, loglevel="notice",
                          options={"modpy_safe.handler": "app.py",
                                   "modpy_safe.reload.interval": "0",
                                   "modpy_safe.db.soak.dsn": postgres.dsn_for(pool_app)})
    pool_bound, naive_bound = PROCESSES * THREADS, PROCESSES * 2
    worst_pool = worst_naive = 0
    rss_start: dict[int, int] = {}

    with Clients(server, CLIENTS, "/", max_requests=REQUESTS, max_seconds=170) as load:
        for version in range(1, RELOADS + 1):
            # Spread the rewrites over the run: one per ~95 requests.
            load.wait(lambda v=version: len(load.outcomes) >= v * 95,  # type: ignore[misc]
                      what=f"{version * 95} requests", tries=3000, delay=0.005)
            server.write("app.py", source(version))
            if len(load.outcomes) >= WARM_UP and not rss_start:
                rss_start = child_rss_kb(server)
            if version % 20 == 0:
                worst_pool = max(worst_pool, postgres.count_connections(pool_app))
                worst_naive = max(worst_naive, postgres.count_connections(naive_app))
        load.wait(lambda: load.finished, what=f"{REQUESTS} requests", tries=6000)
    rss_end = child_rss_kb(server)

    failures = [o for o in load.outcomes if o.status != 200]
    assert len(load.outcomes) == REQUESTS, "the run ended on its deadline, not its count"
    assert failures == [], failures[:3]
    # The last version was served: the reloads kept up.
    assert any(o.text.startswith(f"version {RELOADS} ") for o in load.outcomes[-200:])
    assert worst_pool <= pool_bound, f"{worst_pool} pooled connections"
    assert worst_naive <= naive_bound, f"{worst_naive} naive connections while reloading"
    final_pool = postgres.settled_count(pool_app, at_most=pool_bound)
    final_naive = postgres.settled_count(naive_app, at_most=PROCESSES)
    assert final_pool <= pool_bound and final_naive <= PROCESSES, (final_pool, final_naive)
    assert set(rss_start) == set(rss_end), "a child was replaced during the soak"
    growth = {pid: rss_end[pid] - rss_start[pid] for pid in rss_start}
    assert max(growth.values()) <= RSS_GROWTH_KB, f"RSS grew (kB): {growth}"
    log = server.error_log()
    assert "Traceback" not in log and ":error]" not in log, server.log_tail()
    report(record_property, requests=len(load.outcomes), reloads=RELOADS,
           failures=len(failures), pool_connections_max=worst_pool,
           pool_connections_after=final_pool, naive_connections_max=worst_naive,
           naive_connections_after=final_naive,
           rss_after_warmup_kb=sorted(rss_start.values()), rss_end_kb=sorted(rss_end.values()),
           rss_growth_kb=sorted(growth.values()))
    assert_no_secret(postgres, server)
