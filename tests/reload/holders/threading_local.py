"""A threading.local holding one connection per thread, opened on first use in each thread."""
import os
import threading

import psycopg2

DSN = "__DSN__"
VERSION = 0

LOCAL = threading.local()


def handler(req):
    conn = getattr(LOCAL, "conn", None)
    if conn is None:
        conn = LOCAL.conn = psycopg2.connect(DSN)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
