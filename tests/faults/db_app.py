"""The handler the database fault tests (and the PgBouncer tests) run, and how to serve it.

``APP`` declares ``db = modpy_safe.Database(name="f")`` and takes its DSN and
settings from ``PythonOption modpy_safe.db.f.*``; ``?do=...`` picks what a
request does with it.
"""
from __future__ import annotations

from typing import Any

import psycopg2

from modpy_safe.testing import Httpd, PostgresServer

from .conftest import DISPATCH, STATUS

APP = """\
import os
from urllib.parse import parse_qs

import modpy_safe

db = modpy_safe.Database(name="f")


def handler(req):
    args = {k: v[0] for k, v in parse_qs(req.args or "").items()}
    do = args.get("do", "pid")
    if do == "ping":  # no database: proves the module loaded
        return "pong %d" % os.getpid()
    if do == "stats":
        return dict(db.stats(), mode=db.mode, pid=os.getpid())
    if do == "insert":  # db.transaction() commits once the block ends
        with db.transaction() as cur:
            cur.execute("INSERT INTO fault_rows (token) VALUES (%s)", (args["token"],))
            cur.execute("SELECT txid_current()")
            return {"txid": cur.fetchone()[0]}
    if do == "insert_raise":  # raises in the middle of db.transaction()
        with db.transaction() as cur:
            cur.execute("INSERT INTO fault_rows (token) VALUES (%s)", (args["token"],))
            cur.execute("SELECT pg_sleep(%s) /* fault_hold */", (float(args.get("hold", 0)),))
            raise RuntimeError("the handler failed in the middle of its transaction")
    if do == "insert_forget":  # raises with a plain connection, never commits
        with db.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO fault_rows (token) VALUES (%s)", (args["token"],))
            raise RuntimeError("the handler failed before it committed")
    if do == "count":
        with db.transaction() as cur:
            cur.execute("SELECT count(*) FROM fault_rows WHERE token = %s", (args["token"],))
            return {"rows": cur.fetchone()[0]}
    if do == "slow":
        with db.transaction() as cur:
            cur.execute("SELECT pg_sleep(%s) /* fault_slow */", (float(args["for"]),))
        return {"slept": True}
    if do == "dirty":  # session state that outlives any transaction
        with db.connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE fault_tmp (x int)")
                cur.execute("PREPARE fault_stmt AS SELECT 1")
                cur.execute("SELECT pg_advisory_lock(4242)")
                cur.execute("LISTEN fault_channel")
                cur.execute("SET statement_timeout = 4321")
                cur.execute("SELECT pg_backend_pid()")
                return {"backend": cur.fetchone()[0]}
    if do == "look":
        with db.transaction() as cur:
            cur.execute(
                "SELECT pg_backend_pid(), to_regclass('pg_temp.fault_tmp') IS NOT NULL, "
                "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'fault_stmt'), "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "   AND pid = pg_backend_pid()), "
                "(SELECT count(*) FROM pg_listening_channels()), "
                "current_setting('statement_timeout')")
            backend, temp, prepared, locks, listening, timeout = cur.fetchone()
            return {"backend": backend, "temp_table": temp, "prepared": prepared,
                    "advisory_locks": locks, "listening": listening,
                    "statement_timeout": timeout}
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return {"backend": cur.fetchone()[0], "pid": os.getpid()}
"""


def serve(httpd: Any, dsn: str, mpm: str, *, processes: int = 1, threads: int = 8,
          start: bool = True, extra: str = "", **settings: Any) -> Httpd:
    """An httpd serving APP at /x, the Database's DSN and settings given as PythonOptions.

    ``extra`` is added to the server configuration (after the MPM's section, so
    its directives win).
    """
    options = {"modpy_safe.handler": "app.py", "modpy_safe.db.f.dsn": dsn}
    options.update({f"modpy_safe.db.f.{k}": str(v) for k, v in settings.items()})
    server: Httpd = httpd(mpm, directory=DISPATCH, options=options, files={"app.py": APP},
                          processes=processes, threads=threads, extra=STATUS + extra,
                          start=start)
    return server


def ask(server: Httpd, query: str) -> Any:
    answer = server.get(f"/x?{query}")
    assert answer.status == 200, f"{answer.status}: {answer.text[:500]}\n{server.log_tail()}"
    return answer.json()


def committed_rows(postgres: PostgresServer, token: str) -> int:
    conn = psycopg2.connect(postgres.dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM fault_rows WHERE token = %s", (token,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()
