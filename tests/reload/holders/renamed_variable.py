"""The variable holding the connection is renamed after the first version.

Lines marked 'first version only' are kept in version 0, lines marked 'later
versions only' in every version after it: the new code never names 'conn'.
"""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0

conn = psycopg2.connect(DSN)  # first version only
current = conn  # first version only
database = psycopg2.connect(DSN)  # later versions only
current = database  # later versions only


def handler(req):
    with current.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    current.rollback()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
