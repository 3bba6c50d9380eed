"""A psycopg 3 psycopg_pool.ConnectionPool of two connections, with its own threads (close())."""
import os

import psycopg_pool

DSN = "__DSN__"
VERSION = 0

pool = psycopg_pool.ConnectionPool(DSN, min_size=2, max_size=2)
pool.wait()


def handler(req):
    with pool.connection() as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
