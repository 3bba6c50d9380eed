"""The one small interface between the pool and a database driver, and the driver registry.

A driver module (``db/psycopg2.py``, one per driver, as SQLAlchemy has one
dialect per driver) defines a class that satisfies :class:`Driver`. An
instance is bound to one database's settings (its DSN, how to reset a returned
connection) and is all a :class:`~modpy_safe.db.pool.Pool` needs: the pool
calls ``connect()`` to open a connection and the hooks to check, ping, reset,
close and abandon one.

Drivers are found by name in :data:`DRIVERS` and imported on first use, so
importing modpy_safe imports no driver's C extension.
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Driver", "BaseDriver", "DRIVERS", "driver_class", "forsake"]

Conn = TypeVar("Conn")

#: Driver name -> the module that defines it (its ``DRIVER`` attribute is the class).
DRIVERS: dict[str, str] = {
    "psycopg2": "modpy_safe.db.psycopg2",
    "psycopg": "modpy_safe.db.psycopg",
}

# Connections of a parent process that a forked child must never touch nor
# free (freeing a psycopg2 connection sends the server a Terminate message).
_forsaken: list[object] = []


def forsake(conn: object) -> None:
    """Keep ``conn`` referenced until the process ends, so it is never freed (or closed)."""
    _forsaken.append(conn)


class Driver(Protocol[Conn]):
    """What a pool needs of a driver, bound to one database's settings."""

    name: str

    def connect(self) -> Conn:
        """Open a new connection; raise the driver's error when that fails."""
        ...

    def check(self, conn: Conn) -> bool | None:
        """Cheap local test at reuse: True fine, False broken, None doubtful (ping it)."""
        ...

    def ping(self, conn: Conn) -> bool:
        """Make one round trip; return False when the connection is dead."""
        ...

    def reset(self, conn: Conn) -> bool:
        """Clean a returned connection; True when it had to roll back; raise when unusable."""
        ...

    def close(self, conn: Conn) -> None:
        """Close one connection; never raise."""
        ...

    def abandon(self, conn: Conn) -> None:
        """In a forked child: dispose of a parent's connection without telling the server."""
        ...

    def describe_error(self, exc: BaseException) -> str:
        """Turn a connect failure into one line with no secret in it."""
        ...


class BaseDriver(Generic[Conn]):
    """Defaults for every hook but ``connect``: nothing to check, reset or close.

    Stand-in drivers in tests, and real drivers for what they do not override.
    """

    name = "base"

    def connect(self) -> Conn:
        raise NotImplementedError(f"{type(self).__name__} must define connect()")

    def check(self, conn: Conn) -> bool | None:
        return True

    def ping(self, conn: Conn) -> bool:
        return True

    def reset(self, conn: Conn) -> bool:
        return False

    def close(self, conn: Conn) -> None:
        return None

    def abandon(self, conn: Conn) -> None:
        forsake(conn)

    def describe_error(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}"


class CallableDriver(BaseDriver[Conn]):
    """A driver made of a ``connect()`` callable alone (tests, benchmarks)."""

    name = "callable"

    def __init__(self, connect: Callable[[], Conn]) -> None:
        self.connect = connect  # type: ignore[method-assign]


_classes: dict[str, Any] = {}
_classes_lock = threading.Lock()


def driver_class(name: str) -> Any:
    """Return the driver class registered as ``name``, importing its module once.

    The lock keeps two threads of this interpreter from importing it twice.
    The cold-start race between interpreters (psycopg2's C module set up twice
    in one process) is cured by ``reload/coldstart.py``, which serializes that
    first import across the whole process.
    """
    found = _classes.get(name)
    if found is not None:
        return found
    if name not in DRIVERS:
        raise ValueError("allowed: " + ", ".join(sorted(DRIVERS)))
    with _classes_lock:
        found = _classes.get(name)
        if found is None:
            found = _classes[name] = importlib.import_module(DRIVERS[name]).DRIVER
        return found
