"""Call a handler and turn its result, or its exception, into the HTTP answer."""
from __future__ import annotations

import logging
from typing import Any, Callable

from ._errors import DatabaseError, HTTPError

__all__ = ["call", "handle_error"]

log = logging.getLogger("modpy_safe.dispatch")

OK = 0


def call(req: Any, target: Callable[[Any], Any]) -> int:
    """Call ``target(req)`` and return the status for mod_python."""
    result = target(req)
    if result is None:
        return OK
    return int(result)


def handle_error(req: Any, exc: BaseException, *, debug: bool) -> int:
    """Answer a request whose handling raised ``exc``."""
    if isinstance(exc, HTTPError):
        req.status = exc.status
        return exc.status
    if isinstance(exc, DatabaseError):
        log.error("%s: %s", req.uri, exc)
        return 503
    log.exception("%s: unhandled error", req.uri)
    return 500
