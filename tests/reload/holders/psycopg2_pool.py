"""A psycopg2 ThreadedConnectionPool of two connections at a top-level name (closeall())."""
import os

import psycopg2.pool

DSN = "__DSN__"
VERSION = 0

pool = psycopg2.pool.ThreadedConnectionPool(2, 2, DSN)


def handler(req):
    conn = pool.getconn()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            backend = cur.fetchone()[0]
        conn.rollback()
    finally:
        pool.putconn(conn)
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
