"""A connection bound to a top-level name, opened again by every version (the naive module)."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0

conn = psycopg2.connect(DSN)


def handler(req):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
