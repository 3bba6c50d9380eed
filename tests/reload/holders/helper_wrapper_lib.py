"""The helper of helper_wrapper.py: a singleton wrapper holding the connection as an attribute."""
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
