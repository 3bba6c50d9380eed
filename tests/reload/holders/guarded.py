"""The guarded idiom: 'if "conn" not in globals()' keeps one connection across versions."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0

if "conn" not in globals():
    conn = psycopg2.connect(DSN)


def handler(req):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return "version %d pid %d backend %d" % (VERSION, os.getpid(), backend)


index = handler
