"""Row 6, B: what users do to be safe, a new connection for every request."""
import os

import psycopg2
from mod_python import apache

DSN = "__BENCH_DSN__"
VERSION = "__BENCH_VERSION__"


def handler(req):
    conn = psycopg2.connect(DSN)
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchone()
        cur.close()
        conn.commit()
    finally:
        conn.close()
    req.content_type = "text/plain"
    req.write(f"version {VERSION} pid {os.getpid()}\n")
    return apache.OK
