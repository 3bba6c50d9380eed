"""What the libpq drivers share: connecting with a timeout, closing, forking, errors, budget.

psycopg2 and psycopg 3 both wrap libpq, so a connection of either has a
socket, a DSN with libpq's syntax and a server to ask for its limits. Each
driver module subclasses :class:`LibpqDriver` and supplies what differs: how
to parse and build a DSN, how to run one statement outside a transaction, and
its checks and resets.
"""
from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Callable
from typing import Any

from .._redact import scrub
from .driver import BaseDriver, forsake

__all__ = ["LibpqDriver", "CONNECT_TIMEOUT", "socket_quiet"]

# libpq waits forever for an unreachable host unless told otherwise.
CONNECT_TIMEOUT = 5

# One poll object per descriptor number: it holds only the number, and a
# checked-out connection's descriptor is used by one thread at a time.
_pollers: dict[int, Any] = {}


def socket_quiet(fd: int) -> bool:
    """Return True when an idle connection's socket has nothing to read.

    A readable idle socket means the server closed it (restart,
    pg_terminate_backend) or sent a notice: the caller pings to know.
    """
    poller = _pollers.get(fd)
    if poller is None:
        poller = _pollers[fd] = select.poll()
        poller.register(fd, select.POLLIN)
    return not poller.poll(0)


class LibpqDriver(BaseDriver[Any]):
    """Connections to ``dsn``; ``discard`` runs DISCARD ALL when one is returned.

    ``connect`` replaces the driver's own connect function (called with the DSN).
    """

    OperationalError: type[Exception]
    InterfaceError: type[Exception]
    #: What the driver's DSN parser raises for a string libpq cannot parse.
    DsnError: type[Exception]
    default_connect: Callable[..., Any]

    def __init__(self, dsn: str, *, discard: bool = False,
                 connect: Callable[[str], Any] | None = None) -> None:
        self.dsn = dsn
        self.discard = discard
        self._connect_fn = connect or type(self).default_connect
        if discard:
            self.reset = self.reset_discard  # type: ignore[method-assign]

    # -- what each driver supplies -------------------------------------------
    @staticmethod
    def parse_dsn(dsn: str) -> dict[str, Any]:
        """Return the DSN's keywords (libpq's parser, through the driver)."""
        raise NotImplementedError

    @staticmethod
    def make_dsn(dsn: str, **extra: Any) -> str:
        """Return ``dsn`` with ``extra`` keywords added."""
        raise NotImplementedError

    def run_autocommit(self, conn: Any, sql: str) -> Any:
        """Run one statement outside a transaction; return the first row (or None)."""
        raise NotImplementedError

    def reset_discard(self, conn: Any) -> bool:
        """Like ``reset``, then DISCARD ALL (which cannot run in a transaction)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------
    @classmethod
    def validate_dsn(cls, raw: str) -> str:
        """Accept a libpq DSN or URI that libpq can parse."""
        if not raw.strip():
            raise ValueError("allowed: a libpq string such as 'host=... dbname=...' or a URI")
        try:
            cls.parse_dsn(raw)
        except cls.DsnError as exc:
            # libpq quotes the part it choked on, which may be the password.
            reason = scrub(" ".join(str(exc).split()), raw)
            raise ValueError(f"allowed: a libpq connection string or URI ({reason})") from None
        return raw

    def connect(self) -> Any:
        """Open a connection; add connect_timeout unless the DSN or PGCONNECT_TIMEOUT sets it."""
        dsn = self.dsn
        if "connect_timeout" not in self.parse_dsn(dsn) and "PGCONNECT_TIMEOUT" not in os.environ:
            dsn = self.make_dsn(dsn, connect_timeout=CONNECT_TIMEOUT)
        return self._connect_fn(dsn)

    def close(self, conn: Any) -> None:
        """Close ``conn``; a connection that is already broken needs nothing more."""
        with contextlib.suppress(Exception):
            conn.close()

    def abandon(self, conn: Any) -> None:
        """In a forked child: detach ``conn`` from the parent's socket without telling the server.

        The child's copy of the socket is replaced by /dev/null, so nothing the
        child does with the object (a ``close()`` sends libpq's Terminate
        message) can reach the server and end the parent's session. The object
        is kept, never closed nor freed, in case a thread that no longer exists
        held its lock at the fork.
        """
        with contextlib.suppress(Exception):
            fd = conn.fileno()
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        forsake(conn)

    def describe_error(self, exc: BaseException) -> str:
        """One line for ``exc`` with the DSN's password masked, even percent-decoded."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        text = scrub(text, self.dsn)
        with contextlib.suppress(Exception):
            # A URI's password is percent-encoded; libpq sees (and may quote) it decoded.
            password = self.parse_dsn(self.dsn or "").get("password") or ""
            if len(password) >= 3:
                text = text.replace(password, "***")
        return text

    def is_lost(self, conn: Any, exc: BaseException) -> bool:
        """Return True when ``exc`` came from a connection the server closed.

        An OperationalError is the statement that found it; an InterfaceError
        ("connection already closed") is the next use of one the driver already
        knows is closed, such as ``cursor()`` on a connection trusted without a
        check because it was given back a moment ago.
        """
        return isinstance(exc, (self.OperationalError, self.InterfaceError)) and bool(conn.closed)

    def budget_limit(self, conn: Any) -> tuple[int, int, int]:
        """Return (usable, max_connections, superuser_reserved_connections) of the server."""
        max_conn, reserved = self.run_autocommit(
            conn, "SELECT current_setting('max_connections')::int, "
                  "current_setting('superuser_reserved_connections')::int")
        return int(max_conn) - int(reserved), int(max_conn), int(reserved)
