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
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
