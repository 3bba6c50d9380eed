"""Query-string and form parsing that works on Python 3 (mod_python's does not).

mod_python's ``util.FieldStorage`` hands POSTed urlencoded fields over as
``bytes`` on Python 3, and the ``cgi`` module is deprecated. This module reads
a request's form once and gives every caller (the dispatcher's ``Handler``, the
publisher, user code) the same answer.

API
---
``parse(req) -> FormData``
    The query string (``req.args``) and, for ``application/x-www-form-urlencoded``
    and ``multipart/form-data`` bodies, the body, merged: query-string fields
    first, then body fields, each in the order sent. Names and text values are
    ``str``. A malformed body is a :class:`~modpy_safe.HTTPError` 400, a body
    over a limit 413 (``PythonOption modpy_safe.forms.*``: the whole body, the
    number of parts, each part's headers and size; see docs/configuration.md).
    A multipart body is streamed through :mod:`modpy_safe.web.uploads`; its
    files are spooled to disk above ``forms.spool_size`` and closed (so
    removed) when the request ends. The body is read at most once per request:
    the result is cached on the request's
    :class:`~modpy_safe._context.RequestScope` (or on ``req`` when no scope is
    open), so calling ``parse(req)`` again is free. A body of any other content
    type (JSON, say) is left unread for the handler.

``FormData``
    Shaped like ``mod_python.util.FieldStorage``: ``form[name]`` is the value,
    or a list of values in order for a repeated name (``KeyError`` if absent);
    ``get(name, default)``, ``getfirst(name, default=None)``, ``getlist(name)``
    (always a list), ``keys()`` (distinct names in first-seen order),
    ``has_key``/``in``, ``len()`` (distinct names), ``items()`` (every
    ``(name, value)`` pair in order, repeats included, as FieldStorage does),
    ``to_dict()`` (name → value or list) and ``list`` (every pair as a list).

``Field``
    An uploaded file (a multipart part with a ``filename``), shaped like
    ``mod_python.util.Field``: ``.name``, ``.filename``, ``.file`` (binary file
    object positioned at 0), ``.value`` (the bytes), ``.type``,
    ``.type_options``, ``.disposition``, ``.disposition_options``, ``.headers``;
    also ``.size``.

``parse_query(text) -> list[tuple[str, str]]``
    The query-string parser alone (``None`` or ``""`` gives ``[]``).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import parse_qsl

from .._apache import Request
from .._context import current_scope
from .._errors import HTTPError
from .._options import FORMS_MAX_BODY, Options
from . import uploads
from .uploads import Field, FormValue

__all__ = ["parse", "parse_query", "FormData", "Field", "FormValue", "MAX_FIELDS"]

#: More fields than this in one request is a 400 (a cheap denial-of-service guard).
MAX_FIELDS = 10_000
DEFAULT_MAX_BODY = FORMS_MAX_BODY.default
_CACHE_KEY = "modpy_safe.forms"
_REQ_ATTR = "_modpy_safe_form"
_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


class FormData:
    """The fields of one request, in the order sent (see the module docstring)."""

    __slots__ = ("list", "_table")

    def __init__(self, pairs: list[tuple[str, FormValue]] | None = None) -> None:
        self.list: list[tuple[str, FormValue]] = pairs if pairs is not None else []
        self._table: dict[str, list[FormValue]] | None = None

    def _names(self) -> dict[str, list[FormValue]]:
        table = self._table
        if table is None:
            table = {}
            for name, value in self.list:
                table.setdefault(name, []).append(value)
            self._table = table
        return table

    def __getitem__(self, name: str) -> FormValue | list[FormValue]:
        values = self._names()[name]
        return values[0] if len(values) == 1 else list(values)

    def get(self, name: str, default: Any = None) -> Any:
        """Return the value (or list of values) of ``name``, or ``default``."""
        values = self._names().get(name)
        if values is None:
            return default
        return values[0] if len(values) == 1 else list(values)

    def getfirst(self, name: str, default: Any = None) -> Any:
        """Return the first value of ``name``, or ``default``."""
        values = self._names().get(name)
        return values[0] if values else default

    def getlist(self, name: str) -> list[FormValue]:
        """Return every value of ``name`` in order (an empty list when absent)."""
        return list(self._names().get(name, ()))

    def keys(self) -> list[str]:
        """Return the distinct names, in the order first sent."""
        return list(self._names())

    def items(self) -> list[tuple[str, FormValue]]:
        """Return every ``(name, value)`` pair in order, repeated names included."""
        return list(self.list)

    def to_dict(self) -> dict[str, FormValue | list[FormValue]]:
        """Return name → value, or name → list of values for a repeated name."""
        return {k: (v[0] if len(v) == 1 else list(v)) for k, v in self._names().items()}

    def has_key(self, name: str) -> bool:
        """Return True when ``name`` was sent (mod_python compatibility)."""
        return name in self._names()

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __bool__(self) -> bool:
        return bool(self.list)

    def __repr__(self) -> str:
        return f"FormData({self.list!r})"


# ---------------------------------------------------------------- parsing


def parse_query(text: str | None, *, what: str = "query string") -> list[tuple[str, str]]:
    """Parse urlencoded ``text`` into ``(name, value)`` pairs; 400 when it is not UTF-8.

    ``a&b=`` gives ``[("a", ""), ("b", "")]``: blank values are kept, as
    mod_python's publisher does.
    """
    if not text:
        return []
    try:
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                         max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise HTTPError(400, f"The {what} is not valid UTF-8 once percent-decoded.") from None
    except ValueError:
        raise HTTPError(400, f"The {what} has more than {MAX_FIELDS} fields.") from None


def parse(req: Request) -> FormData:
    """Return the request's fields; the body is read and parsed only on the first call."""
    scope = current_scope()
    if scope is not None and scope.req is req:
        cached = scope.data.get(_CACHE_KEY)
        if cached is None:
            cached = scope.data[_CACHE_KEY] = _parse(req, scope.options)
        return cached
    cached = getattr(req, _REQ_ATTR, None)
    if cached is None:
        cached = _parse(req, None)
        setattr(req, _REQ_ATTR, cached)
    return cached


def _parse(req: Request, options: Options | None) -> FormData:
    pairs: list[tuple[str, FormValue]] = list(parse_query(req.args))
    try:
        ctype = req.headers_in.get("content-type")
    except UnicodeDecodeError:  # mod_python decodes header values as UTF-8
        raise HTTPError(400, "The Content-Type header is not valid UTF-8.") from None
    if not ctype:
        return FormData(pairs)
    mime = ctype.partition(";")[0].strip().lower()
    if mime == _URLENCODED:
        max_body = options.value(FORMS_MAX_BODY) if options is not None else DEFAULT_MAX_BODY
        body = _read_body(req, max_body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "The form body is not valid UTF-8.") from None
        pairs.extend(parse_query(text, what="form body"))
    elif mime == _MULTIPART:
        pairs.extend(_parse_multipart(req, ctype, options))
    if len(pairs) > MAX_FIELDS:
        raise HTTPError(400, f"The request has more than {MAX_FIELDS} form fields.")
    return FormData(pairs)


def _parse_multipart(req: Request, ctype: str, options: Options | None) -> list[
        tuple[str, FormValue]]:
    """Stream the body through the parser; its files are closed when the request ends."""
    limits = uploads.limits_from(options)
    boundary = uploads.boundary_of(ctype)
    length = _declared_length(req, limits.max_body)
    files: list[IO[bytes]] = []
    scope = current_scope()
    if scope is not None and scope.req is req:
        scope.add_cleanup(lambda: _close_files(files))
    else:
        register = getattr(req, "register_cleanup", None)  # mod_python's, outside a scope
        if register is not None:
            register(lambda: _close_files(files))
    return uploads.parse_stream(req.read, boundary, content_length=length, limits=limits,
                                files=files)


def _close_files(files: list[IO[bytes]]) -> None:
    while files:
        files.pop().close()


def _declared_length(req: Request, max_body: int) -> int | None:
    """Return the Content-Length (None when absent); 413 at once when it is over the limit."""
    length = req.headers_in.get("content-length")
    if length is None:
        return None
    try:
        declared = int(length)
    except ValueError:
        raise HTTPError(400, f"Content-Length {length[:40]!r} is not a number.") from None
    if declared < 0:
        raise HTTPError(400, f"Content-Length {length[:40]!r} is not a number.")
    if max_body and declared > max_body:
        raise HTTPError(413, f"The form body ({declared} bytes) is larger than the "
                             f"{max_body} bytes allowed by modpy_safe.forms.max_body.")
    return declared


def _read_body(req: Request, max_body: int) -> bytes:
    _declared_length(req, max_body)
    try:
        body: bytes | str = req.read()
    except OSError as exc:  # mod_python raises IOError when the client stops sending
        raise HTTPError(400, f"The request body could not be read: {exc}") from None
    if isinstance(body, str):  # defensive: some stand-ins hand back text
        body = body.encode("utf-8")
    if max_body and len(body) > max_body:
        raise HTTPError(413, f"The form body is larger than the {max_body} bytes "
                             "allowed by modpy_safe.forms.max_body.")
    return bytes(body)
