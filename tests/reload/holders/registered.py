"""An object of the application's own given to modpy_safe.register() with its close function."""
import os

import psycopg2

import modpy_safe

DSN = "__DSN__"
VERSION = 0


class Client:
    def __init__(self):
        self._conn = psycopg2.connect(DSN)

    def backend(self):
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            found = cur.fetchone()[0]
        self._conn.rollback()
        return found

    def shutdown(self):
        self._conn.close()


client = Client()
modpy_safe.register(client, close=client.shutdown)


def handler(req):
    return f"version {VERSION} pid {os.getpid()} backend {client.backend()}"


index = handler
