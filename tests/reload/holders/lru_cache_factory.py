"""A connection made by a functools.lru_cache factory on first use (kept only in its cache)."""
import functools
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0


@functools.lru_cache(maxsize=8)
def connection():
    return psycopg2.connect(DSN)


def handler(req):
    conn = connection()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
