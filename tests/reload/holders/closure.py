"""A connection kept in a closure cell of a function made by a factory."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0


def make_backend():
    conn = psycopg2.connect(DSN)

    def backend():
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            found = cur.fetchone()[0]
        conn.rollback()
        return found

    return backend


backend = make_backend()


def handler(req):
    return f"version {VERSION} pid {os.getpid()} backend {backend()}"


index = handler
