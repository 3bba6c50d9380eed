"""A modpy_safe.Database at module level: the same object, connections included, per version."""
import os

import modpy_safe

DSN = "__DSN__"
VERSION = 0

db = modpy_safe.Database(DSN, name="holders")


def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
