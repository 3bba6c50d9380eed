"""A singleton wrapper made at import: the connection is an attribute of an object."""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0


class Store:
    def __init__(self):
        self.conn = psycopg2.connect(DSN)

    def backend(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            found = cur.fetchone()[0]
        self.conn.rollback()
        return found


store = Store()


def handler(req):
    return f"version {VERSION} pid {os.getpid()} backend {store.backend()}"


index = handler
