"""A connection kept as a function's default argument."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0


def backend(conn=psycopg2.connect(DSN)):  # noqa: B008 - the way of holding it under test
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        found = cur.fetchone()[0]
    conn.rollback()
    return found


def handler(req):
    return f"version {VERSION} pid {os.getpid()} backend {backend()}"


index = handler
