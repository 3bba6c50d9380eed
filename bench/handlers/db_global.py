"""Row 4, B: the hand-written idiom, one module-global psycopg2 connection."""
import os

import psycopg2
from mod_python import apache

DSN = "__BENCH_DSN__"
VERSION = "__BENCH_VERSION__"

conn = psycopg2.connect(DSN)


def handler(req):
    cur = conn.cursor()
    cur.execute("SELECT 1")
    cur.fetchone()
    cur.close()
    conn.commit()
    req.content_type = "text/plain"
    req.write(f"version {VERSION} pid {os.getpid()}\n")
    return apache.OK
