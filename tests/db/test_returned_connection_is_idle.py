"""A connection given back with its transaction open is rolled back at once, through httpd.

A handler that takes locks in ``with db.connection()`` and neither commits nor
rolls back (or raises) leaves a transaction open. When the block ends the
connection goes back to the process (persistent under prefork, the pool under
worker and event); it must be ``idle`` in pg_stat_activity right away, its
locks released, not ``idle in transaction`` holding them until some later
request checks it out. Both resets are covered: rollback (the default) and
``DISCARD ALL``.
"""
from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.httpd

LOCK = 4242  # a transaction-scoped advisory lock: held until the transaction ends

APP = '''
import modpy_safe

databases = {{
    "rollback": modpy_safe.Database({rollback!r}, name="rollback"),
    "discard": modpy_safe.Database({discard!r}, name="discard", reset="discard"),
}}


def handler(req):
    db = databases[req.args.split("&")[0]]
    with db.connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid(), pg_advisory_xact_lock({lock})")
        backend = cur.fetchone()[0]
        req.headers_out["X-Backend"] = str(backend)
        if "fail" in req.args:
            raise RuntimeError("failed with the transaction open")
    # No commit, no rollback: the transaction is still open when the block ends.
    return "%s backend %d mode %s" % (db.name, backend, db.mode)
'''


def session(postgres: Any, backend: int) -> tuple[str, int]:
    """Return the backend's state in pg_stat_activity and how many advisory locks it holds."""
    rows = postgres.admin_execute(
        "SELECT a.state, (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid "
        "AND l.locktype = 'advisory' AND l.granted) FROM pg_stat_activity a WHERE a.pid = %s",
        (backend,))
    assert rows, f"backend {backend} is gone: the connection was closed, not kept"
    return rows[0][0], int(rows[0][1])


@pytest.mark.parametrize("reset", ["rollback", "discard"])
def test_returned_connection_is_idle_without_locks(httpd: Any, mpm: str, postgres: Any,
                                                   reset: str) -> None:
    """After each request the kept connection is idle, holds no lock, and is reused."""
    dsn = {name: postgres.dsn_for(f"idle_{name}_{mpm}") for name in ("rollback", "discard")}
    server = httpd(mpm, processes=1,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                   options={"modpy_safe.handler": "app.py"},
                   files={"app.py": APP.format(lock=LOCK, **dsn)})
    expected_mode = "persistent" if mpm == "prefork" else "pooled"
    backends = set()
    for query in (reset, f"{reset}&fail", reset):
        answer = server.get(f"/?{query}")
        backend = int(answer.header("x-backend") or 0)
        if "fail" in query:
            assert answer.status == 500, answer.text[:300]
        else:
            assert (answer.status, answer.text) == (
                200, f"{reset} backend {backend} mode {expected_mode}"), answer.text[:300]
        assert session(postgres, backend) == ("idle", 0), query
        # Another session can take the lock the request took: it was released.
        free = postgres.admin_execute("SELECT pg_try_advisory_lock(%s)", (LOCK,))
        assert free == [(True,)], query
        backends.add(backend)
    assert len(backends) == 1, "the connection was not kept between requests"
