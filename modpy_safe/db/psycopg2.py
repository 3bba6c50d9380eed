"""The psycopg2 driver: connect, check, ping, reset, close and abandon psycopg2 connections.

:class:`Psycopg2Driver` is bound to one database's DSN and reset policy; the
pool calls its hooks. Nothing here knows about httpd or the pool's state.
"""
from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions as _ext

from .libpq import CONNECT_TIMEOUT, LibpqDriver, socket_quiet

__all__ = ["Psycopg2Driver", "DRIVER", "validate_dsn", "CONNECT_TIMEOUT"]

_IDLE = _ext.TRANSACTION_STATUS_IDLE
_DIRTY = (_ext.TRANSACTION_STATUS_INTRANS, _ext.TRANSACTION_STATUS_INERROR)


def _run_autocommit(conn: Any, sql: str) -> Any:
    """Run one statement outside a transaction; return the first row (or None)."""
    autocommit = conn.autocommit
    conn.autocommit = True  # one round trip, no BEGIN/ROLLBACK around it
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone() if cur.description else None
    finally:
        conn.autocommit = autocommit


class Psycopg2Driver(LibpqDriver):
    """psycopg2 connections to ``dsn``; ``discard`` runs DISCARD ALL when one is returned.

    ``connect`` replaces ``psycopg2.connect`` (called with the DSN).
    """

    name = "psycopg2"
    OperationalError = psycopg2.OperationalError
    InterfaceError = psycopg2.InterfaceError
    DsnError = psycopg2.ProgrammingError
    default_connect = staticmethod(psycopg2.connect)
    parse_dsn = staticmethod(_ext.parse_dsn)
    make_dsn = staticmethod(_ext.make_dsn)

    def run_autocommit(self, conn: Any, sql: str) -> Any:
        return _run_autocommit(conn, sql)


    def check(self, conn: Any) -> bool | None:
        """Cheap local check: False when closed, None when doubtful (data on an idle socket)."""
        if conn.closed:
            return False
        if conn.get_transaction_status() != _IDLE:
            return None
        return True if socket_quiet(conn.fileno()) else None  # readable: ping to know

    def ping(self, conn: Any) -> bool:
        """Make one round trip (SELECT 1); return False when the connection is dead."""
        try:
            if conn.closed:
                return False
            if conn.get_transaction_status() != _IDLE:
                conn.rollback()
            _run_autocommit(conn, "SELECT 1")
            return True
        except Exception:
            return False

    def reset(self, conn: Any) -> bool:
        """Roll back what a request left open; restore psycopg2's session defaults.

        Return True when a transaction had to be rolled back; raise when the
        connection's state is unknown (the pool then closes it).
        """
        if conn.closed:
            raise psycopg2.InterfaceError("connection already closed")
        status = conn.get_transaction_status()
        dirty = status in _DIRTY
        if dirty:
            conn.rollback()
        elif status != _IDLE:  # ACTIVE (a query still running) or UNKNOWN (broken)
            raise psycopg2.InterfaceError(f"connection in state {status} cannot be reused")
        if conn.autocommit or conn.readonly is not None or conn.deferrable is not None or (
            conn.isolation_level is not None
        ):
            conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT",
                             deferrable="DEFAULT", autocommit=False)
        return dirty

    def reset_discard(self, conn: Any) -> bool:
        """Like :meth:`reset`, then DISCARD ALL (which cannot run in a transaction)."""
        dirty = Psycopg2Driver.reset(self, conn)
        _run_autocommit(conn, "DISCARD ALL")
        return dirty


DRIVER = Psycopg2Driver

validate_dsn = DRIVER.validate_dsn
