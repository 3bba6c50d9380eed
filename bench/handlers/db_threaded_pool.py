"""Row 5, B: the hand-written pool, psycopg2.pool.ThreadedConnectionPool, one per process.

minconn equals maxconn on purpose: psycopg2's pool closes every connection
above minconn when it is given back, so the common ``ThreadedConnectionPool(1,
N, dsn)`` reconnects on most requests under concurrency. The baseline is the
pool configured well, not that mistake.
"""
import os

import psycopg2.pool
from mod_python import apache

DSN = "__BENCH_DSN__"
VERSION = "__BENCH_VERSION__"
THREADS = int("__BENCH_THREADS__")

pool = psycopg2.pool.ThreadedConnectionPool(THREADS, THREADS, DSN)


def handler(req):
    conn = pool.getconn()
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchone()
        cur.close()
        conn.commit()
    finally:
        pool.putconn(conn)
    req.content_type = "text/plain"
    req.write(f"version {VERSION} pid {os.getpid()}\n")
    return apache.OK
