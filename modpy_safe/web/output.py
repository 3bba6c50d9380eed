"""Send what a published object returned: text, bytes, or an iterable piece by piece.

As mod_python.publisher does: a str is sent as UTF-8 with a content type
guessed from its start (HTML or plain text) unless the page set one, bytes go
out as they are, and an iterable is streamed piece by piece.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .. import _apache
from .._apache import Request

__all__ = ["write"]

_HTML_END = re.compile(r"</html\s*>\s*$", re.I)
_HTML_END_BYTES = re.compile(rb"</html\s*>\s*$", re.I)
_HTML_START = re.compile(r"\s*(<!doctype\s+html|<html)", re.I)
_HTML_START_BYTES = re.compile(rb"\s*(<!doctype\s+html|<html)", re.I)
_BYTES_LIKE = (bytes, bytearray, memoryview)
_WHOLE = (str, bytes, bytearray, memoryview, Mapping)  # sent in one piece


def _guess_type(req: Request, chunk: str | bytes, *, whole: bool) -> None:
    """Set Content-Type from the body unless the page set one (mod_python's rule).

    A whole body is HTML when it ends with ``</html>`` (mod_python looks at the
    last 100 characters); for a body sent piece by piece the end is not known
    yet, so the first piece decides: HTML when it starts like a document.
    """
    if _apache.content_type_set(req):
        return
    text = isinstance(chunk, str)
    if whole:
        tail = chunk[-100:].rstrip()
        # Cheap rejection first: most text does not end with '>'.
        html = tail.endswith(">" if text else b">") and bool(  # type: ignore[arg-type]
            (_HTML_END if text else _HTML_END_BYTES).search(tail))  # type: ignore[arg-type]
    else:
        html = bool((_HTML_START if text else _HTML_START_BYTES).match(chunk))  # type: ignore[arg-type]
    ctype = "text/html" if html else "text/plain"
    req.content_type = ctype + "; charset=utf-8" if text else ctype


def _as_piece(item: Any) -> str | bytes | None:
    if item is None or isinstance(item, (str, bytes)):
        return item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    return str(item)


def write(req: Request, result: Any) -> None:
    """Send ``result`` as the response body.

    ``None`` sends nothing; ``str`` is sent as UTF-8 and ``bytes`` as they are;
    a mapping or any other non-iterable object as ``str(result)``; any other
    iterable (list, generator, dict view) piece by piece with the same rules.
    A HEAD request gets the headers only: for text and bytes with the
    Content-Length a GET would have, for an iterable after its first piece.
    """
    if result is None:
        return
    head = req.method == "HEAD"
    if type(result) is str and not head:
        # The common case, kept short (_guess_type's rule in line): it runs on
        # nearly every request.
        if not _apache.content_type_set(req):
            tail = result[-100:].rstrip()
            html = tail.endswith(">") and _HTML_END.search(tail) is not None
            req.content_type = "text/html; charset=utf-8" if html else "text/plain; charset=utf-8"
        req.write(result.encode("utf-8"), 0)  # no flush: Apache adds Content-Length
        return
    if isinstance(result, _WHOLE) or not isinstance(result, Iterable):
        piece = _as_piece(result)
        assert piece is not None
        _guess_type(req, piece, whole=True)
        data = piece.encode("utf-8") if isinstance(piece, str) else piece
        if head:
            if not _apache.bytes_queued(req):
                req.set_content_length(len(data))
        else:
            # No flush: Apache then adds Content-Length itself (MODPYTHON-107).
            req.write(data, 0)
        return
    _write_pieces(req, iter(result), head)


def _write_pieces(req: Request, pieces: Any, head: bool) -> None:
    typed = False
    try:
        for item in pieces:
            piece = _as_piece(item)
            if not piece:
                continue
            if not typed:
                _guess_type(req, piece, whole=False)
                typed = True
                if head:
                    break
            req.write(piece.encode("utf-8") if isinstance(piece, str) else piece, 0)
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    if not typed and not _apache.content_type_set(req):
        req.content_type = "text/plain"
