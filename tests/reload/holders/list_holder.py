"""A connection kept in a module-level list."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0

CONNECTIONS = [psycopg2.connect(DSN)]


def handler(req):
    conn = CONNECTIONS[0]
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
