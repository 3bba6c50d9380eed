"""Only a cursor is kept at module level; the connection is reachable through it alone."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0

cur = psycopg2.connect(DSN).cursor()


def handler(req):
    cur.execute("SELECT pg_backend_pid()")
    backend = cur.fetchone()[0]
    cur.connection.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
