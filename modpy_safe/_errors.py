"""The modpy_safe exception hierarchy.

Every error the framework raises derives from :class:`ModpySafeError`. Errors
about connections also derive from :class:`psycopg2.OperationalError`, so an
existing ``except psycopg2.OperationalError`` clause keeps catching them.
"""
from __future__ import annotations

import psycopg2

__all__ = [
    "ModpySafeError",
    "ConfigError",
    "NotInHttpdError",
    "HTTPError",
    "DatabaseError",
    "DatabaseUnavailable",
    "PoolTimeout",
    "PoolClosed",
]


class ModpySafeError(Exception):
    """Base class of every error raised by modpy_safe."""

    __module__ = "modpy_safe"


class ConfigError(ModpySafeError, ValueError):
    """A configuration value (a PythonOption or an argument) is not valid."""

    __module__ = "modpy_safe"


class NotInHttpdError(ModpySafeError, RuntimeError):
    """Code that needs mod_python ran outside Apache httpd."""

    __module__ = "modpy_safe"


class HTTPError(ModpySafeError):
    """Stop handling the request and answer with an HTTP status and message.

    ``raise HTTPError(404, "no such note")`` sends status 404 with the message
    as a short page (or as JSON to a client that asked for JSON). ``headers``
    are added to the response, e.g. ``{"Allow": "GET, POST"}``.
    """

    __module__ = "modpy_safe"

    def __init__(
        self, status: int, message: str = "", *, headers: dict[str, str] | None = None
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"HTTPError status must be an int from 100 to 599, not {status!r}")
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.message}".rstrip()


class DatabaseError(ModpySafeError, psycopg2.OperationalError):  # type: ignore[misc]
    """Base class of the errors a :class:`Database` raises about connections."""

    __module__ = "modpy_safe"

    #: HTTP status the dispatcher answers with when this error is not caught.
    http_status = 503


class DatabaseUnavailable(DatabaseError):
    """The database server cannot be reached; the request gets HTTP 503."""

    __module__ = "modpy_safe"


class PoolTimeout(DatabaseError):
    """No connection became free within the pool's timeout; HTTP 503."""

    __module__ = "modpy_safe"


class PoolClosed(DatabaseError):
    """The Database was closed (the process is exiting or it was retired)."""

    __module__ = "modpy_safe"
