"""The test harness itself: httpd under each MPM, the private PostgreSQL."""
from __future__ import annotations

import psycopg2
import pytest

HELLO = """\
from mod_python import apache

def handler(req):
    req.content_type = "text/plain"
    req.write("hello from %s" % req.uri)
    return apache.OK
"""


@pytest.mark.httpd
def test_httpd_serves_a_handler_under_each_mpm(httpd, mpm):
    server = httpd(mpm, directory="PythonHandler hello", files={"hello.py": HELLO})
    answer = server.get("/hello.py")
    assert answer.status == 200
    assert answer.text == "hello from /hello.py"
    assert f"mpm_{mpm}:notice" in server.error_log()


@pytest.mark.httpd
def test_httpd_stop_leaves_no_process(httpd):
    server = httpd("event", directory="PythonHandler hello", files={"hello.py": HELLO})
    pids = server.child_pids()
    assert pids
    server.stop()
    import os

    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_postgres_counts_connections_and_restarts(postgres):
    conn = psycopg2.connect(postgres.dsn_for("harness_count"))
    try:
        assert postgres.count_connections("harness_count") == 1
    finally:
        conn.close()
    assert postgres.count_connections("harness_count") == 0
    postgres.restart()
    conn = psycopg2.connect(postgres.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone() == ("modpy",)
    conn.close()


def test_postgres_requires_the_password(postgres):
    bad = postgres.dsn.replace(postgres.password, "wrong")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(bad)


def test_pgbouncer_pools_in_transaction_mode(pgbouncer):
    """Two client connections, one after the other, share one server backend."""
    first = psycopg2.connect(pgbouncer.dsn_for("harness_bouncer"))
    second = psycopg2.connect(pgbouncer.dsn_for("harness_bouncer"))
    try:
        backends = []
        for conn in (first, second, first):
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                backends.append(cur.fetchone()[0])
            conn.commit()  # ends the transaction: PgBouncer takes the server back
        assert len(set(backends)) == 1
    finally:
        first.close()
        second.close()
