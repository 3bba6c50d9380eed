"""More than one machine: everything through PgBouncer in transaction mode.

The harness's ``pgbouncer`` fixture runs PgBouncer (Debian's package) in
transaction pooling mode in front of the private cluster with
``default_pool_size`` server connections. In that mode consecutive
transactions of one client connection may run on different server
connections, so nothing here relies on session state; psycopg2 sends no
server-side prepared statements, and modpy_safe itself issues none.

Under prefork and event (persistent and pooled connections on the Apache side):
the example notes board end to end, and the connection behaviour of
test_connections_httpd -- mode, an open transaction rolled back, committed
data, a killed server connection, ``reset=discard``, the pool timeout --
while PgBouncer never opens more than its pool size of server connections.
A database *restart* behind PgBouncer is left out on purpose: PgBouncer then
holds queries for up to ``query_wait_timeout`` and retries the server after
``server_login_retry`` (both documented in docs/deploying.md), which is
PgBouncer's behaviour, not modpy_safe's.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from fix_notes import copy_handlers, expect, load_serve

from modpy_safe.testing import Httpd, PgBouncer, PostgresServer, make_tempdir

from .conftest import Clients, assert_no_secret, logged_for, report
from .db_app import ask, committed_rows, serve

pytestmark = pytest.mark.httpd


def server_connections(postgres: PostgresServer) -> int:
    """Count the server connections of the test role: PgBouncer's pool for modpy/modpy.

    In these tests nothing else connects as that role directly (the few direct
    checks close their connection first). The application_name of a server
    connection cannot be used: PgBouncer sets the current client's, and a
    DISCARD ALL resets it.
    """
    rows = postgres.admin_execute(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
        "AND backend_type = 'client backend'", (postgres.role,))
    return int(rows[0][0])


def kill_server_connections(postgres: PostgresServer) -> int:
    """Terminate every server connection of the test role (PgBouncer's); return how many."""
    rows = postgres.admin_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s "
        "AND backend_type = 'client backend'", (postgres.role,))
    return len(rows)


@pytest.fixture
def notes_table(postgres: PostgresServer) -> Iterator[None]:
    """PgBouncer serves the ``modpy`` database only: give the board an empty table there."""

    def drop() -> None:
        conn = psycopg2.connect(postgres.dsn)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("DROP TABLE IF EXISTS notes")
        finally:
            conn.close()

    drop()
    yield
    drop()


@pytest.mark.parametrize("mpm", ["prefork", "event"])
@pytest.mark.timeout(240)  # its load may run 90 s, with two servers to start
def test_example_app_through_pgbouncer(postgres: PostgresServer, pgbouncer: PgBouncer,
                                       notes_table: None, mpm: str,
                                       record_property: Any) -> None:
    """The notes board, configured as make run configures it, with its DSN on PgBouncer."""
    app = f"notes-bouncer-{mpm}"
    root = make_tempdir(f"modpy_safe-bouncer-{mpm}-")
    docroot = root / "handlers"
    copy_handlers(docroot)
    directory, options, extra = load_serve().site_config(docroot, pgbouncer.dsn_for(app))
    # Apache may want more connections than PgBouncer gives the server: 2 x 8 pooled.
    site = Httpd(root / "httpd", mpm=mpm, docroot=docroot, directory=directory,
                 options=options, extra=extra, processes=4 if mpm == "prefork" else 2)
    try:
        site.start()
        # Eight first requests race to create the schema (advisory lock per transaction).
        results: list[int] = []
        barrier = threading.Barrier(8)

        def add(i: int) -> None:
            barrier.wait()
            results.append(site.request("POST", "/api/notes", body=json.dumps(
                {"text": f"bounced {i}"}), headers={"Content-Type": "application/json"}).status)

        threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sorted(results) == [201] * 8, site.log_tail()

        note = expect(site.request("POST", "/api/notes", body=json.dumps({"text": "ü 日本"}),
                                   headers={"Content-Type": "application/json"}), 201).json()
        assert expect(site.get(f"/api/notes/{note['id']}"), 200).json() == note
        assert "ü 日本" in expect(site.get("/"), 200).text
        expect(site.post("/index.py/add", {"text": "from the form"}), 303)
        expect(site.request("DELETE", f"/api/notes/{note['id']}"), 204)
        expect(site.get(f"/api/notes/{note['id']}"), 404)
        assert expect(site.get("/health"), 200).json()["notes"] == 9

        # Load from 8 clients while counting what PgBouncer holds on the server.
        worst = 0
        paths = ["/api/notes", "/health", "/"]
        with Clients(site, 8, lambda c, i: paths[i % 3], max_requests=600,
                     max_seconds=90) as load:
            for _ in range(2000):  # sample until the load's own budget is spent
                worst = max(worst, server_connections(postgres))
                if load.finished:
                    break
                time.sleep(0.05)
        failures = [o for o in load.outcomes if o.status != 200]
        assert failures == [], failures[:3]
        assert 1 <= worst <= pgbouncer.pool_size
        report(record_property, mpm=mpm, requests=len(load.outcomes) + 15,
               failures=len(failures), server_connections_max=worst,
               pgbouncer_pool_size=pgbouncer.pool_size,
               apache_side_max=(4 if mpm == "prefork" else 16))
        assert_no_secret(postgres, site, *(o.text for o in load.outcomes[:50]))
    finally:
        site.stop()


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_connection_behaviour_through_pgbouncer(driver: str, httpd: Any, postgres: PostgresServer,
                                                pgbouncer: PgBouncer, fault_rows: str,
                                                mpm: str, record_property: Any) -> None:
    """Modes, rollback, commits, a killed server connection and discard, through PgBouncer."""
    app = f"fault_bouncer_{mpm}_{driver}"
    server = serve(httpd, pgbouncer.dsn_for(app), mpm, processes=2 if mpm == "prefork" else 1,
                   reset="discard", driver=driver)
    token = fault_rows
    ask(server, "do=pid")

    # An uncommitted row never reaches the server; a committed one does, once.
    assert server.get(f"/x?do=insert_forget&token={token}").status == 500
    assert ask(server, f"do=count&token={token}")["rows"] == 0
    ask(server, f"do=insert&token={token}")
    assert committed_rows(postgres, token) == 1

    # reset=discard runs DISCARD ALL on whichever server connection PgBouncer gave.
    for _ in range(4):
        ask(server, "do=look")

    # PgBouncer's server connections killed. A request PgBouncer hands a server
    # connection it has not yet seen die loses its connection: 503, never 500
    # (PgBouncer's server_check_delay bounds this; see docs/deploying.md). Then
    # every request succeeds again.
    killed = kill_server_connections(postgres)
    assert killed >= 1
    statuses: list[int] = []
    lost: list[str] = []
    for _ in range(30):
        answer = server.get("/x?do=pid")
        statuses.append(answer.status)
        if answer.status != 200:
            lost.append(logged_for(server, answer.text))  # the reason is in the log
        if statuses[-4:] == [200] * 4:
            break
    assert statuses[-4:] == [200] * 4, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert all("the connection was lost" in text for text in lost), lost[:1]
    assert 1 <= server_connections(postgres) <= pgbouncer.pool_size
    report(record_property, mpm=mpm, requests=10 + len(statuses),
           failures=1 + len(lost), killed=killed,
           server_connections_after=server_connections(postgres))
    assert_no_secret(postgres, server, *lost)


def test_pool_timeout_through_pgbouncer(driver: str, httpd: Any, postgres: PostgresServer,
                                        pgbouncer: PgBouncer, record_property: Any) -> None:
    """The Apache-side pool still bounds and times out; PgBouncer is not in the way."""
    app = f"fault_bouncer_exhaust_{driver}"
    server = serve(httpd, pgbouncer.dsn_for(app), "event", threads=6, pool_max=2, timeout=1,
                   driver=driver)
    ask(server, "do=pid")
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(
        server.get("/x?do=slow&for=2").status)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [200, 200, 503, 503]
    assert ask(server, "do=stats")["timeouts"] == 2
    report(record_property, requests=5, timeouts=2)
