"""Rows 4, 5, 6 and 8/9, A: SELECT 1 through ``modpy_safe.Database``.

The statements are exactly those of the hand-written baselines (cursor,
SELECT 1, fetch, commit); only how the connection is obtained differs.
"""
import os

from mod_python import apache

import modpy_safe

DSN = "__BENCH_DSN__"
MODE = "__BENCH_MODE__"
VERSION = "__BENCH_VERSION__"

db = modpy_safe.Database(DSN, mode=MODE)


def handler(req):
    with db.connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchone()
        cur.close()
        conn.commit()
    req.content_type = "text/plain"
    req.write(f"version {VERSION} pid {os.getpid()} mode {db.mode}\n")
    return apache.OK
