"""A psycopg 3 connection at a top-level name, opened again by every version."""
import os

import psycopg

DSN = "__DSN__"
VERSION = 0

conn = psycopg.connect(DSN)


def handler(req):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
