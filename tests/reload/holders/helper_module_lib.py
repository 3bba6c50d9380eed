"""The helper of helper_module.py: a top-level connection, edited instead of the handler."""
import psycopg2

DSN = "__DSN__"
VERSION = 0

conn = psycopg2.connect(DSN)


def backend():
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        found = cur.fetchone()[0]
    conn.rollback()
    return found
