"""A connection kept as a function's default argument."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0


def backend(conn=psycopg2.connect(DSN)):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        found = cur.fetchone()[0]
    conn.rollback()
    return found


def handler(req):
    return "version %d pid %d backend %d" % (VERSION, os.getpid(), backend())


index = handler
