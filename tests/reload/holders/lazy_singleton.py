"""A lazy singleton: the object is made at import, its connection on first use."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0


class LazyStore:
    def __init__(self):
        self._conn = None

    def connection(self):
        if self._conn is None:
            self._conn = psycopg2.connect(DSN)
        return self._conn


store = LazyStore()


def handler(req):
    conn = store.connection()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
