"""The psycopg 3 driver: connect, check, ping, reset, close and abandon psycopg connections.

``Database(dsn, driver="psycopg")`` (or ``PythonOption modpy_safe.db.<name>.driver
psycopg``) hands out :class:`psycopg.Connection` objects from modpy_safe's own
pool, with the guarantees the psycopg2 driver gives. :class:`PsycopgDriver`
is bound to one database's DSN and reset policy; the pool calls its hooks.
Nothing here knows about httpd or the pool's state.
"""
from __future__ import annotations

from typing import Any

import psycopg
from psycopg import conninfo as _conninfo
from psycopg.pq import TransactionStatus

from .libpq import CONNECT_TIMEOUT, LibpqDriver, socket_quiet

__all__ = ["PsycopgDriver", "DRIVER", "validate_dsn", "CONNECT_TIMEOUT"]

_IDLE = TransactionStatus.IDLE
_DIRTY = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


def _run_autocommit(conn: Any, sql: str) -> Any:
    """Run one statement outside a transaction; return the first row (or None)."""
    autocommit = conn.autocommit
    conn.autocommit = True  # one round trip, no BEGIN/ROLLBACK around it
    try:
        cur = conn.execute(sql)
        return cur.fetchone() if cur.description else None
    finally:
        conn.autocommit = autocommit


class PsycopgDriver(LibpqDriver):
    """psycopg 3 connections to ``dsn``; ``discard`` runs DISCARD ALL when one is returned.

    ``connect`` replaces ``psycopg.connect`` (called with the DSN), for example
    ``lambda dsn: psycopg.connect(dsn, prepare_threshold=None)`` behind
    PgBouncer in transaction mode.
    """

    name = "psycopg"
    OperationalError = psycopg.OperationalError
    InterfaceError = psycopg.InterfaceError
    DsnError = psycopg.ProgrammingError
    default_connect = staticmethod(psycopg.connect)

    @staticmethod
    def parse_dsn(dsn: str) -> dict[str, Any]:
        return _conninfo.conninfo_to_dict(dsn)

    @staticmethod
    def make_dsn(dsn: str, **extra: Any) -> str:
        return _conninfo.make_conninfo(dsn, **extra)

    def run_autocommit(self, conn: Any, sql: str) -> Any:
        return _run_autocommit(conn, sql)


    def check(self, conn: Any) -> bool | None:
        """Cheap local check: False when closed, None when doubtful (data on an idle socket)."""
        if conn.closed:
            return False
        if conn.info.transaction_status != _IDLE:
            return None
        return True if socket_quiet(conn.fileno()) else None  # readable: ping to know

    def ping(self, conn: Any) -> bool:
        """Make one round trip (SELECT 1); return False when the connection is dead."""
        try:
            if conn.closed:
                return False
            if conn.info.transaction_status != _IDLE:
                conn.rollback()
            _run_autocommit(conn, "SELECT 1")
            return True
        except Exception:
            return False

    def reset(self, conn: Any) -> bool:
        """Roll back what a request left open; restore psycopg's session defaults.

        Return True when a transaction had to be rolled back; raise when the
        connection's state is unknown (the pool then closes it).
        """
        if conn.closed:
            raise psycopg.InterfaceError("connection already closed")
        status = conn.info.transaction_status
        dirty = status in _DIRTY
        if dirty:
            conn.rollback()
        elif status != _IDLE:  # ACTIVE (a query still running) or UNKNOWN (broken)
            raise psycopg.InterfaceError(f"connection in state {status.name} cannot be reused")
        # psycopg 3 sends these with the next BEGIN: setting them is local, no round trip.
        if conn.autocommit:
            conn.autocommit = False
        if conn.isolation_level is not None:
            conn.isolation_level = None
        if conn.read_only is not None:
            conn.read_only = None
        if conn.deferrable is not None:
            conn.deferrable = None
        if conn.read_only is not None or conn.deferrable is not None:
            # psycopg 3.1.7 (Debian 12) stores None as False (BEGIN READ WRITE, NOT
            # DEFERRABLE), which overrides the server's defaults: do what its setter
            # means to do, on a connection known to be idle.
            conn._read_only = conn._deferrable = None
            conn._begin_statement = b""
        return dirty

    def reset_discard(self, conn: Any) -> bool:
        """Like :meth:`reset`, then DISCARD ALL (which cannot run in a transaction)."""
        dirty = PsycopgDriver.reset(self, conn)
        _run_autocommit(conn, "DISCARD ALL")
        # DISCARD ALL drops the server's prepared statements, but psycopg 3.1 keeps
        # its own list of them and would run one the server no longer has.
        prepared = getattr(conn, "_prepared", None)
        if prepared is not None:
            prepared.clear()
        return dirty


DRIVER = PsycopgDriver

validate_dsn = DRIVER.validate_dsn
