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
    ``str`` decoded as UTF-8. Invalid UTF-8, a malformed body, too many fields or
    a body larger than ``PythonOption modpy_safe.forms.max_body`` (bytes, default
    16 MiB, ``0`` for no limit) raise :class:`~modpy_safe.HTTPError` 400 (413 for
    size). The body is read at most once per request: the result is cached on
    the request's :class:`~modpy_safe._context.RequestScope` (or on ``req`` when
    no scope is open), so calling ``parse(req)`` again is free. A body of any
    other content type (JSON, say) is left unread for the handler.

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
    ``.type_options``, ``.disposition``, ``.disposition_options``, ``.headers``.

``parse_query(text) -> list[tuple[str, str]]``
    The query-string parser alone (``None`` or ``""`` gives ``[]``).
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote

from .._apache import Request
from .._context import current_scope
from .._errors import HTTPError
from .._options import FORMS_MAX_BODY

__all__ = ["parse", "parse_query", "FormData", "Field", "FormValue", "MAX_FIELDS"]

#: More fields than this in one request is a 400 (a cheap denial-of-service guard).
MAX_FIELDS = 10_000
DEFAULT_MAX_BODY = FORMS_MAX_BODY.default
_CACHE_KEY = "modpy_safe.forms"
_REQ_ATTR = "_modpy_safe_form"
_URLENCODED = "application/x-www-form-urlencoded"
_MULTIPART = "multipart/form-data"


class Field:
    """An uploaded file, with the attributes of ``mod_python.util.Field``."""

    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        filename: str | None,
        type: str = "application/octet-stream",
        type_options: dict[str, str] | None = None,
        disposition: str = "form-data",
        disposition_options: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.filename = filename
        self.file: io.BytesIO = io.BytesIO(data)
        self.type = type
        self.type_options = type_options or {}
        self.disposition = disposition
        self.disposition_options = disposition_options or {}
        self.headers = headers or {}

    @property
    def value(self) -> bytes:
        """Return the whole content (the file's position is left unchanged)."""
        return self.file.getvalue()

    def __repr__(self) -> str:
        return f"Field({self.name!r}, filename={self.filename!r}, {len(self.value)} bytes)"


FormValue = str | Field


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
            cached = scope.data[_CACHE_KEY] = _parse(req, scope.options.value(FORMS_MAX_BODY))
        return cached
    cached = getattr(req, _REQ_ATTR, None)
    if cached is None:
        cached = _parse(req, DEFAULT_MAX_BODY)
        setattr(req, _REQ_ATTR, cached)
    return cached


def _parse(req: Request, max_body: int) -> FormData:
    pairs: list[tuple[str, FormValue]] = list(parse_query(req.args))
    ctype = req.headers_in.get("content-type")
    if not ctype:
        return FormData(pairs)
    mime, params = parse_header(ctype)
    if mime == _URLENCODED:
        body = _read_body(req, max_body)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HTTPError(400, "The form body is not valid UTF-8.") from None
        pairs.extend(parse_query(text, what="form body"))
    elif mime == _MULTIPART:
        boundary = params.get("boundary")
        if not boundary or len(boundary) > 200:
            raise HTTPError(400, "The multipart/form-data body has no valid boundary "
                                 "in its Content-Type.")
        pairs.extend(parse_multipart(_read_body(req, max_body), boundary.encode("latin-1")))
    if len(pairs) > MAX_FIELDS:
        raise HTTPError(400, f"The request has more than {MAX_FIELDS} form fields.")
    return FormData(pairs)


def _read_body(req: Request, max_body: int) -> bytes:
    length = req.headers_in.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPError(400, f"Content-Length {length!r} is not a number.") from None
        if max_body and declared > max_body:
            raise HTTPError(413, f"The form body ({declared} bytes) is larger than the "
                                 f"{max_body} bytes allowed by modpy_safe.forms.max_body.")
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


def parse_header(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type/sub; a=1; b="x y"`` into the lower-cased value and its parameters.

    Quoted strings may contain ``;`` and backslash escapes; ``name*=UTF-8''...``
    (RFC 2231/5987) is decoded and wins over the plain parameter.
    """
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t;":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            i += 1  # the closing quote
            val = "".join(chars)
        else:
            end = rest.find(";", i)
            end = n if end < 0 else end
            val = rest[i:end].strip()
            i = end
        if key.endswith("*"):
            charset, _, encoded = val.partition("''")
            try:
                extended[key[:-1]] = unquote(encoded, encoding=charset or "utf-8",
                                             errors="strict")
            except (LookupError, UnicodeDecodeError):
                raise HTTPError(400, f"The header parameter {key!r} is not valid "
                                     f"{charset or 'utf-8'}.") from None
        elif key:
            params[key] = val
    params.update(extended)
    return head.strip().lower(), params


def parse_multipart(body: bytes, boundary: bytes) -> list[tuple[str, FormValue]]:
    """Parse a ``multipart/form-data`` body into ``(name, value)`` pairs (RFC 7578)."""
    delimiter = b"--" + boundary
    # The first delimiter may be preceded by a preamble; later ones follow a CRLF.
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise HTTPError(400, "The multipart/form-data body does not contain its boundary.")
        pos = found + 2 + len(delimiter)
    separator = b"\r\n" + delimiter
    pairs: list[tuple[str, FormValue]] = []
    while True:
        if body.startswith(b"--", pos):
            return pairs  # the close delimiter; what follows is the epilogue
        line_end = body.find(b"\r\n", pos)
        # Only transport padding (spaces, tabs) may follow a delimiter on its line.
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise HTTPError(400, "The multipart/form-data body is malformed after a boundary.")
        start = line_end + 2
        end = body.find(separator, start)
        if end < 0:
            raise HTTPError(400, "The multipart/form-data body is truncated: its closing "
                                 "boundary is missing.")
        pairs.append(_part(body[start:end]))
        if len(pairs) > MAX_FIELDS:
            raise HTTPError(400, f"The request has more than {MAX_FIELDS} form fields.")
        pos = end + len(separator)


def _part(raw: bytes) -> tuple[str, FormValue]:
    if raw.startswith(b"\r\n"):
        head, data = b"", raw[2:]
    else:
        head, sep, data = raw.partition(b"\r\n\r\n")
        if not sep:
            raise HTTPError(400, "A multipart/form-data part has no blank line after its headers.")
    try:
        # Browsers send non-ASCII file names as raw UTF-8 inside the quotes.
        head_text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "A multipart/form-data part's headers are not valid UTF-8.") from None
    headers: dict[str, str] = {}
    for line in head_text.split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            raise HTTPError(400, f"A multipart/form-data part has a bad header line {line!r}.")
        headers[name.strip().lower()] = value.strip()
    disposition, disp_options = parse_header(headers.get("content-disposition", ""))
    field_name = disp_options.get("name")
    if disposition != "form-data" or field_name is None:
        raise HTTPError(400, "A multipart/form-data part lacks 'Content-Disposition: "
                             "form-data; name=...'.")
    ctype, type_options = parse_header(headers.get("content-type", "text/plain"))
    if "filename" in disp_options:
        return field_name, Field(
            field_name, data, filename=disp_options["filename"],
            type=ctype or "application/octet-stream", type_options=type_options,
            disposition=disposition, disposition_options=disp_options, headers=headers,
        )
    charset = type_options.get("charset", "utf-8")
    try:
        return field_name, data.decode(charset)
    except (LookupError, UnicodeDecodeError):
        raise HTTPError(400, f"The form field {field_name!r} is not valid {charset}.") from None
