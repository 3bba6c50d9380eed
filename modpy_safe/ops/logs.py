"""Application logging into Apache's error log, at Apache's level, tagged with the request.

``logging.getLogger("myapp").warning("disk almost full")`` in a handler file
reaches the error log as::

    [...] [:warn] [pid 4242:tid 4242] [client 127.0.0.1:50312] myapp: disk almost full \
        [ref 3f9c2a1b7e]

(one line in the log).

Apache writes the time, the level, the pid and the client; the line adds the
logger's name and the request's reference: the id its error page shows if it
fails, so ``grep 3f9c2a1b7e error.log`` finds everything that request logged.
Inside a request the line goes through the request (``req.log_error``), so a
``LogLevel`` set in its ``<Directory>`` or ``<Location>`` applies; outside one
(module import, a background thread) it goes through the main server.

The root logger's level follows the main server's ``LogLevel`` (``info`` lets
``logger.info()`` through, ``debug`` and ``trace*`` let ``debug()`` through),
unless the application set one itself; Apache then filters each line by the
level that applies where it was logged. An application that configures
logging itself (``basicConfig``, its own handlers) keeps that configuration.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from .._context import current_scope

__all__ = ["ApplicationLogHandler", "install", "reference", "python_level", "apache_level"]

# logging's own last resort, for uninstall() (tests).
_STDERR_LAST_RESORT = logging.lastResort

# APLOG_* numbers (httpd's http_log.h): EMERG 0 ... ERR 3, WARNING 4, NOTICE 5, INFO 6, DEBUG 7.
_APLOG_CRIT, _APLOG_ERR, _APLOG_WARNING, _APLOG_INFO, _APLOG_DEBUG = 2, 3, 4, 6, 7
_REFERENCE = "modpy_safe.reference"


def apache_level(levelno: int) -> int:
    """Return the APLOG_* level for a :mod:`logging` level number."""
    if levelno >= logging.CRITICAL:
        return _APLOG_CRIT
    if levelno >= logging.ERROR:
        return _APLOG_ERR
    if levelno >= logging.WARNING:
        return _APLOG_WARNING
    if levelno >= logging.INFO:
        return _APLOG_INFO
    return _APLOG_DEBUG


def python_level(aplog: int) -> int:
    """Return the lowest :mod:`logging` level that Apache's ``LogLevel`` ``aplog`` shows."""
    if aplog >= _APLOG_DEBUG:
        return logging.DEBUG
    if aplog >= _APLOG_INFO:
        return logging.INFO
    if aplog >= _APLOG_WARNING:  # notice too: Python has no level between INFO and WARNING
        return logging.WARNING
    if aplog >= _APLOG_ERR:
        return logging.ERROR
    return logging.CRITICAL


def reference(new: Any = None) -> str | None:
    """Return the reference of the request this thread serves (made on first use), else None.

    It is mod_unique_id's ``UNIQUE_ID`` when that module is loaded, so the
    error log and an access log with ``%{UNIQUE_ID}e`` share it; otherwise a
    short random id from ``new()``. The error page of a failed request shows
    the same id.
    """
    scope = current_scope()
    if scope is None:
        return None
    found = scope.data.get(_REFERENCE)
    if found is None:
        req: Any = scope.req  # mod_python's request: more than the Request protocol names
        try:
            found = req.subprocess_env.get("UNIQUE_ID")
        except Exception:  # a test's stand-in request, or no table yet
            found = None
        if not found:
            if new is None:
                import secrets

                found = secrets.token_hex(5)
            else:
                found = new()
        scope.data[_REFERENCE] = found
    return str(found)


class ApplicationLogHandler(logging.Handler):
    """Send records of the application's loggers to Apache's error log."""

    def __init__(self, apache: Any) -> None:
        super().__init__()
        self._ap = apache
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            ref = reference()
            level = apache_level(record.levelno)
            scope = current_scope()
            req: Any = scope.req if scope is not None else None
            lines = text.splitlines() or [""]
            suffix = f" [ref {ref}]" if ref else ""
            for line in lines:
                # One call per line: the error log is line oriented, and every line of
                # a traceback keeps the reference for grep.
                if req is not None:
                    req.log_error(line + suffix, level)
                else:
                    self._ap.log_error(line + suffix, level, self._ap.main_server)
        except Exception:  # never let logging break a request
            self.handleError(record)


_installed = False
_lock = threading.Lock()


def install(apache: Any, loglevel: int) -> None:
    """Send what the application logs to Apache's error log (once per interpreter).

    The handler is :mod:`logging`'s last resort, the one used when no logger on
    the way has a handler: an application that configures logging itself
    (``logging.basicConfig(filename=...)``, its own handlers) keeps its
    configuration, and one that does not gets the error log instead of the
    bare stderr lines it got before. ``loglevel`` is the main server's
    ``LogLevel`` (APLOG_* number).
    """
    global _installed
    with _lock:
        if _installed:
            return
        if not isinstance(logging.lastResort, ApplicationLogHandler):
            logging.lastResort = ApplicationLogHandler(apache)
        root = logging.getLogger()
        wanted = python_level(loglevel)
        # The default root level is WARNING; a level the application chose stays.
        if root.level == logging.WARNING:
            root.setLevel(wanted)
        _installed = True


def uninstall() -> None:
    """Undo :func:`install` (plain-Python tests)."""
    global _installed
    with _lock:
        logging.lastResort = _STDERR_LAST_RESORT
        _installed = False
