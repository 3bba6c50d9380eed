"""A dict of connections, one per thread id, filled on first use in each thread."""
import os
import threading

import psycopg2

DSN = "__DSN__"
VERSION = 0

CONNECTIONS = {}


def handler(req):
    conn = CONNECTIONS.get(threading.get_ident())
    if conn is None:
        conn = CONNECTIONS[threading.get_ident()] = psycopg2.connect(DSN)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
