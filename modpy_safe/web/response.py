"""Call a handler and turn its result, or its exception, into the HTTP answer.

Return values (function handlers and Handler methods alike):

========================  =================================================
``None``                  OK: the handler wrote the response itself
``int``                   a status for mod_python, as with plain PythonHandler
``str``                   UTF-8 body; ``text/html`` when it looks like HTML
                          (starts with a tag, or ends with ``</html>``), else
                          ``text/plain`` -- unless the handler set a type
``bytes``                 the body as is (``application/octet-stream`` unless set)
``dict`` / ``list``       JSON, ``application/json`` unless set
any other iterable        each piece (``str`` or ``bytes``) written and flushed
========================  =================================================

Errors: :class:`~modpy_safe.HTTPError` (and :func:`redirect`) answer with their
status and message; a :class:`~modpy_safe.DatabaseError` answers 503 with the
reason, passwords masked; anything else answers 500 with a reference id, the
traceback going to the error log under that id (and into the page too when
``PythonDebug On``). ``mod_python.apache.SERVER_RETURN`` is answered the way
mod_python answers it, so code written for plain mod_python keeps working.
"""
from __future__ import annotations

import html
import json
import logging
import secrets
import traceback
from http import HTTPStatus
from typing import Any, NoReturn

from .. import _apache
from .._apache import Request
from .._errors import DatabaseError, HTTPError
from .._redact import scrub
from ..ops.logs import reference as request_reference
from .handler import Handler, run
from .routing import MissingHandlerFile

__all__ = ["call", "render", "handle_error", "refuse", "describe", "Failure", "send_error", "page",
           "redirect", "Redirect", "OK", "DECLINED", "DONE"]

log = logging.getLogger("modpy_safe.dispatch")

OK = 0
DECLINED = -1
_TEXT = "text/plain; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_BINARY = "application/octet-stream"
_REDIRECTS = (301, 302, 303, 307, 308)


class Redirect(HTTPError):
    """Send the client elsewhere: raised by :func:`redirect`."""

    __module__ = "modpy_safe"

    def __init__(self, url: str, status: int = 303) -> None:
        if status not in _REDIRECTS:
            raise ValueError(f"redirect status must be one of {_REDIRECTS}, not {status!r}")
        if not url or "\r" in url or "\n" in url:
            raise ValueError(f"redirect url must be non-empty and on one line, not {url!r}")
        super().__init__(status, "", headers={"Location": url})
        self.url = url


def redirect(url: str, status: int = 303) -> NoReturn:
    """Stop handling the request and send the client to ``url`` (303 See Other by default).

    ``status`` may be 301, 302, 303, 307 or 308. It raises, so both
    ``redirect(url)`` and ``return redirect(url)`` work.
    """
    raise Redirect(url, status)


def call(req: Request, target: Any) -> int:
    """Call ``target`` (a function of ``req`` or a Handler subclass) and render its result."""
    if isinstance(target, type) and issubclass(target, Handler):
        return render(req, run(target, req))
    return render(req, target(req))


def looks_like_html(text: str) -> bool:
    """Return True when ``text`` starts with a tag or ends with ``</html>``.

    A tag is ``<`` followed by a letter, ``!`` or ``/`` (leading spaces aside),
    so ``"<p>hi</p>"`` and ``"<!DOCTYPE html>..."`` are HTML and ``"<3"`` is not;
    the ``</html`` test is mod_python.publisher's own.
    """
    head = text[:64].lstrip()
    if head[:1] == "<":
        second = head[1:2]
        if second.isalpha() or second == "!" or second == "/":
            return True
    return "</html" in text[-100:].lower()


def render(req: Request, result: Any) -> int:
    """Write ``result`` as the response body and return the status for mod_python."""
    if result is None:
        return OK
    kind = type(result)
    if kind is str:
        if not _apache.content_type_set(req):
            req.content_type = _HTML if looks_like_html(result) else _TEXT
        # No flush: Apache's content-length filter can then set Content-Length.
        req.write(result.encode("utf-8"), 0)
        return OK
    if kind is int:
        return result  # type: ignore[no-any-return]
    if kind is dict or kind is list:
        return _write(req, json.dumps(result, ensure_ascii=False).encode("utf-8"), _JSON)
    if kind is bytes or kind is bytearray or kind is memoryview:
        return _write(req, bytes(result), _BINARY)
    # Subclasses take the slower path.
    if isinstance(result, bool):
        raise TypeError(f"the handler returned {result!r}; return an int status, "
                        "a body (str, bytes, dict, list, iterable) or None")
    if isinstance(result, int):
        return int(result)
    if isinstance(result, str):
        return render(req, str(result))
    if isinstance(result, (dict, list)):
        return _write(req, json.dumps(result, ensure_ascii=False).encode("utf-8"), _JSON)
    if hasattr(result, "__iter__"):
        return _stream(req, result)
    raise TypeError(f"the handler returned {type(result).__name__} {result!r:.80}; return an "
                    "int status, a body (str, bytes, dict, list, iterable) or None")


def _write(req: Request, body: bytes, content_type: str) -> int:
    if not _apache.content_type_set(req):
        req.content_type = content_type
    req.write(body, 0)
    return OK


def _stream(req: Request, pieces: Any) -> int:
    iterator = iter(pieces)
    try:
        first = True
        for piece in iterator:
            if isinstance(piece, str):
                if first and not _apache.content_type_set(req):
                    req.content_type = _HTML if looks_like_html(piece) else _TEXT
                data = piece.encode("utf-8")
            elif isinstance(piece, (bytes, bytearray, memoryview)):
                if first and not _apache.content_type_set(req):
                    req.content_type = _BINARY
                data = bytes(piece)
            else:
                raise TypeError(f"the handler's iterable yielded {type(piece).__name__} "
                                f"{piece!r:.80}; yield str or bytes")
            first = False
            if data:
                req.write(data)  # flushed: the client sees each piece as it comes
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    return OK


# ------------------------------------------------------------------- errors


def new_reference() -> str:
    """Return a short random id that ties an error page to its log entry."""
    return secrets.token_hex(5)


def _wants_json(req: Request) -> bool:
    accept = req.headers_in.get("accept") or ""
    return "application/json" in accept and "text/html" not in accept


def send_error(
    req: Request,
    status: int,
    message: str,
    *,
    headers: dict[str, str] | None = None,
    reference: str | None = None,
    detail: str | None = None,
    sticky: bool = False,
) -> int:
    """Answer with ``status`` and a short page (JSON for a client that asks for it).

    ``detail`` (a traceback, shown only with PythonDebug On) goes into the
    page as preformatted text; ``reference`` ties the page to the error log.
    ``sticky`` puts the headers (all but ``Location``) in ``err_headers_out``,
    which Apache keeps whatever answers the request in the end.
    """
    req.status = status
    for name, value in (headers or {}).items():
        if sticky and name.lower() != "location":
            req.err_headers_out[name] = value
        else:
            req.headers_out[name] = value
    if status < 200 or status in (204, 304):
        return OK
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    if _wants_json(req):
        doc: dict[str, Any] = {"status": status, "error": phrase, "message": message}
        if reference:
            doc["reference"] = reference
        if detail:
            doc["traceback"] = detail
        req.content_type = _JSON
        req.write(json.dumps(doc, ensure_ascii=False).encode("utf-8"), 0)
        return OK
    req.content_type = _HTML
    text = page(status, message, location=(headers or {}).get("Location"),
                reference=reference, detail=detail)
    req.write(text.encode("utf-8"), 0)
    return OK


def page(status: int, message: str, *, location: str | None = None,
         reference: str | None = None, detail: str | None = None) -> str:
    """Return the short HTML error page for ``status``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    parts = [f"<!DOCTYPE html>\n<html><head><title>{status} {html.escape(phrase)}</title>"
             f"</head>\n<body>\n<h1>{html.escape(phrase)}</h1>\n"]
    if message:
        parts.append(f"<p>{html.escape(message)}</p>\n")
    if location:
        parts.append(f'<p>See <a href="{html.escape(location)}">{html.escape(location)}</a>.</p>\n')
    if reference:
        parts.append(f"<p>Reference: <code>{reference}</code></p>\n")
    if detail:
        parts.append(f"<pre>{html.escape(detail)}</pre>\n")
    parts.append("</body></html>\n")
    return "".join(parts)


def _is_server_return(exc: BaseException) -> bool:
    cls = type(exc)
    # mod_python defines it in its C module '_apache' and re-exports it.
    return cls.__name__ == "SERVER_RETURN" and cls.__module__ in ("_apache", "mod_python.apache")


def server_return(req: Request, exc: BaseException) -> int:
    """Answer ``apache.SERVER_RETURN`` exactly as mod_python's HandlerDispatch does.

    Handled here rather than re-raised: mod_python raises it from C (``req.read()``
    answering 411 or 413) with a class kept in a process-wide static, which is the
    class of whichever interpreter initialized mod_python last. With two
    interpreters made at child start (``PythonImport``), its ``except
    SERVER_RETURN`` then misses it and the client gets 500.
    """
    args = exc.args
    if len(args) == 2:
        result, status = args
        if status:
            req.status = status
    else:
        result = args[0] if args else OK
    return int(result)


def known_dsns() -> list[str]:
    """Return the DSNs of the Databases this process knows, to mask their passwords."""
    try:
        from ..db.database import databases
    except ImportError:  # pragma: no cover - the module ships with the package
        return []
    found: list[str] = []
    try:
        for db in databases():
            # Both what the code gave and what the options settled on may hold one.
            for settings in (getattr(db, "_given", None), getattr(db, "_settings", None)):
                dsn = (settings or {}).get("dsn")
                if dsn:
                    found.append(str(dsn))
    except Exception:  # masking must never turn one error into two
        log.exception("could not list the Databases to mask their passwords")
    return found


class Failure:
    """What a client is told about an error, the detail having gone to the log."""

    __slots__ = ("status", "message", "headers", "reference", "detail")

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 reference: str | None = None, detail: str | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reference = reference
        self.detail = detail


def describe(req: Request, exc: BaseException, *, debug: bool, where: str = "") -> Failure:
    """Log ``exc`` (a traceback, under a new reference) and return what the client may see.

    An HTTPError is the handler's own answer and is not logged. For anything
    else the client gets the status, a short message and the reference; what
    an operator needs (the reason, hosts, ports, advice, the traceback) is in
    the page only with PythonDebug On.
    """
    if isinstance(exc, HTTPError):
        return Failure(exc.status, exc.message, exc.headers)
    reference = request_reference(new_reference) or new_reference()  # what its log lines carry
    dsns = known_dsns()
    trace = scrub("".join(traceback.format_exception(exc)), *dsns)
    where = where or f"{req.method} {req.unparsed_uri}"
    if isinstance(exc, MissingHandlerFile):
        # The configuration is wrong until someone fixes it: say what, where and
        # which path once, then refer to it instead of filling the log.
        if exc.first_report():
            log.error("[%s] %s: %s", reference, where, exc)
        else:
            log.error("[%s] %s: the handler file named by PythonOption %s is still "
                      "missing (reported above)", reference, where, exc.option)
        message = ("There is no page at this address." if exc.status == 404 else
                   "The server is not set up correctly: a handler file is missing.")
        return Failure(exc.status, f"{message} ({exc})" if debug else message, None, reference)
    if isinstance(exc, DatabaseError):
        reason = scrub(str(exc), *dsns) or type(exc).__name__
        log.error("[%s] %s: database unavailable (%s)\n%s", reference, where, reason,
                  _tagged(trace, reference))
        message = "The database is not available right now. Please try again in a moment."
        if debug:
            message += f" ({type(exc).__name__}: {reason})"
        return Failure(getattr(exc, "http_status", 503), message, None, reference,
                       trace if debug else None)
    log.error("[%s] %s failed:\n%s", reference, where, _tagged(trace, reference))
    return Failure(500, "The server could not complete the request.", None, reference,
                   trace if debug else None)


def handle_error(req: Request, exc: BaseException, *, debug: bool) -> int:
    """Answer a request whose handling raised ``exc`` (never a traceback unless ``debug``)."""
    if _is_server_return(exc):
        return server_return(req, exc)
    if _apache.body_sent(req) and isinstance(exc, HTTPError):
        log.warning("%s %s: %s raised after the response had started; the client got "
                    "a truncated body", req.method, req.unparsed_uri, exc)
        return OK
    failure = describe(req, exc, debug=debug)
    if _apache.body_sent(req):
        # The status line and part of the body are gone already: the log is all we can do.
        return OK
    return send_error(req, failure.status, failure.message, headers=failure.headers,
                      reference=failure.reference, detail=failure.detail)


DONE = -2


def refuse(req: Request, exc: BaseException, *, debug: bool, phase: str) -> int:
    """End a request whose ``phase`` before content raised ``exc``: the resource is never served.

    The main request gets the error page and DONE, which tells Apache the
    request is answered (no later phase, no content handler runs). A
    subrequest (mod_dir's index lookups, mod_negotiation, SSI) gets only the
    status, so the request that made it decides. ``WWW-Authenticate`` and the
    other headers go in ``err_headers_out`` and ``Location`` in ``headers_out``,
    where Apache keeps them.
    """
    if _is_server_return(exc):
        return server_return(req, exc)
    failure = describe(req, exc, debug=debug,
                       where=f"{phase} for {req.method} {req.unparsed_uri}")
    headers = dict(failure.headers)
    if failure.status == 401 and not any(k.lower() == "www-authenticate" for k in headers):
        challenge = _challenge_of(req)
        if challenge:
            headers["WWW-Authenticate"] = challenge
    if req.main is not None:
        for name, value in headers.items():
            target = req.headers_out if name.lower() == "location" else req.err_headers_out
            target[name] = value
        return failure.status
    send_error(req, failure.status, failure.message, headers=headers,
               reference=failure.reference, detail=failure.detail, sticky=True)
    return DONE


def _challenge_of(req: Request) -> str | None:
    """Return the Basic challenge of the section's ``AuthType Basic``/``AuthName``, if any."""
    try:
        kind, realm = req.auth_type(), req.auth_name()
    except Exception:  # a stand-in request, or no mod_authn_core
        return None
    if not kind or str(kind).lower() != "basic":
        return None
    quoted = str(realm or "").replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}"'


def _tagged(trace: str, reference: str) -> str:
    # Every line carries the id, so 'grep <id> error.log' shows the whole traceback.
    return "\n".join(f"[{reference}] {line}" for line in trace.rstrip().splitlines())
