"""Stream a ``multipart/form-data`` body through the ``multipart`` parser into fields.

The body is read from the request in chunks and fed to ``multipart``'s
:class:`~multipart.PushMultipartParser` (the parser Bottle uses), so the whole
body is never held in memory: a file part is written to a
:class:`tempfile.SpooledTemporaryFile`, which moves to disk once it is larger
than ``forms.spool_size``; a text field is kept, bounded by
``forms.max_field_size``. Every limit is checked while reading, so a hostile
body costs at most what the limits allow and is answered 400 (malformed) or
413 (too large), never 500.

Names and filenames are decoded the way browsers encode them (the HTML
standard escapes ``"``, CR and LF as ``%22``, ``%0D``, ``%0A`` and sends other
characters as raw UTF-8). A text field is decoded with its part's
``charset`` only when that is UTF-8, Latin-1 or ASCII: any other (a codec the
client picked, such as ``punycode``) is a 400.
"""
from __future__ import annotations

import errno
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from .. import _options as _o
from .._errors import ConfigError, HTTPError
from .._options import Options

try:
    import multipart as _mp
except ImportError as exc:  # pragma: no cover - a dependency, but say where to get it
    raise ImportError(
        "modpy_safe parses multipart/form-data bodies with the 'multipart' package, which "
        "this Python cannot import. Install it (pip install multipart, or pip install "
        "modpy_safe, which requires it) where httpd's Python finds it: its site-packages "
        "directory named in PythonPath. See docs/deploying.md."
    ) from exc

__all__ = ["Field", "FormValue", "Limits", "limits_from", "parse_stream", "boundary_of",
           "TEXT_CHARSETS"]

#: Bytes read from the request at a time.
CHUNK = 64 * 1024

#: Charsets a text field may declare, by their lower-cased names, and the codec used.
TEXT_CHARSETS = {
    "utf-8": "utf-8", "utf8": "utf-8",
    "iso-8859-1": "latin-1", "latin-1": "latin-1", "latin1": "latin-1",
    "us-ascii": "ascii", "ascii": "ascii",
}
# RFC 2046 section 5.1.1: the characters of a boundary, which must not end in a space.
# Its limit of 70 characters is relaxed: nothing depends on it.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,199}[0-9A-Za-z'()+_,\-./:=?]")


class Field:
    """An uploaded file, with the attributes of ``mod_python.util.Field``.

    ``file`` is a binary file object positioned at 0: an in-memory buffer for a
    small file, a temporary file (already unlinked) for a large one. It is
    closed when the request ends.
    """

    def __init__(
        self,
        name: str,
        data: bytes = b"",
        *,
        filename: str | None,
        type: str = "application/octet-stream",
        type_options: dict[str, str] | None = None,
        disposition: str = "form-data",
        disposition_options: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        file: IO[bytes] | None = None,
    ) -> None:
        self.name = name
        self.filename = filename
        self.file: IO[bytes] = file if file is not None else io.BytesIO(data)
        self.type = type
        self.type_options = type_options or {}
        self.disposition = disposition
        self.disposition_options = disposition_options or {}
        self.headers = headers or {}

    @property
    def value(self) -> bytes:
        """Return the whole content (the file's position is left unchanged)."""
        file = self.file
        if isinstance(file, io.BytesIO):
            return file.getvalue()
        position = file.tell()
        try:
            file.seek(0)
            return file.read()
        finally:
            file.seek(position)

    @property
    def size(self) -> int:
        """Return the content's length in bytes."""
        file = self.file
        position = file.tell()
        try:
            return file.seek(0, io.SEEK_END)
        finally:
            file.seek(position)

    def __repr__(self) -> str:
        return f"Field({self.name!r}, filename={self.filename!r}, {self.size} bytes)"


FormValue = str | Field


@dataclass(frozen=True)
class Limits:
    """What one multipart body may hold; 0 means no limit for the sizes.

    The defaults are the options' (``modpy_safe.forms.*`` in ``_options.OPTIONS``).
    """

    max_body: int = _o.FORMS_MAX_BODY.default
    max_parts: int = _o.FORMS_MAX_PARTS.default
    max_field_size: int = _o.FORMS_MAX_FIELD_SIZE.default
    max_file_size: int = _o.FORMS_MAX_FILE_SIZE.default
    max_header_size: int = _o.FORMS_MAX_HEADER_SIZE.default
    max_headers: int = _o.FORMS_MAX_HEADERS.default
    spool_size: int = _o.FORMS_SPOOL_SIZE.default
    temp_dir: str | None = _o.FORMS_TEMP_DIR.default


DEFAULT_LIMITS = Limits()


def limits_from(options: Options | None) -> Limits:
    """Read the ``modpy_safe.forms.*`` limits (see docs/configuration.md)."""
    if options is None:
        return DEFAULT_LIMITS
    value = options.value
    return Limits(
        max_body=value(_o.FORMS_MAX_BODY), max_parts=value(_o.FORMS_MAX_PARTS),
        max_field_size=value(_o.FORMS_MAX_FIELD_SIZE),
        max_file_size=value(_o.FORMS_MAX_FILE_SIZE),
        max_header_size=value(_o.FORMS_MAX_HEADER_SIZE),
        max_headers=value(_o.FORMS_MAX_HEADERS), spool_size=value(_o.FORMS_SPOOL_SIZE),
        temp_dir=value(_o.FORMS_TEMP_DIR),
    )


def boundary_of(content_type: str) -> str:
    """Return the boundary of a ``multipart/form-data`` Content-Type; 400 when it has none."""
    _mime, params = _mp.parse_options_header(content_type)
    boundary = params.get("boundary", "")
    if not _BOUNDARY.fullmatch(boundary):
        raise HTTPError(400, "The multipart/form-data body has no valid boundary in its "
                             "Content-Type (1 to 200 of the characters RFC 2046 allows).")
    return str(boundary)


class _Collector:
    """Turn the parser's events into ``(name, value)`` pairs, within the limits."""

    def __init__(self, limits: Limits, files: list[IO[bytes]]) -> None:
        self.limits = limits
        self.files = files
        self.pairs: list[tuple[str, FormValue]] = []
        self.segment: Any = None
        self.field: Field | None = None
        self.text: list[bytes] = []
        self.size = 0
        self.cap = 0
        self.cap_option = ""

    def start(self, segment: Any) -> None:
        limits = self.limits
        if len(self.pairs) >= limits.max_parts:
            raise HTTPError(413, f"The multipart/form-data body has more than "
                                 f"{limits.max_parts} parts, the limit set by "
                                 f"modpy_safe.forms.max_parts.")
        self.segment, self.size = segment, 0
        if segment.filename is None:
            self.field = None
            self.text = []
            self.cap, self.cap_option = limits.max_field_size, "max_field_size"
            return
        file = _temporary_file(limits)
        self.files.append(file)
        headers = {name.lower(): value for name, value in segment.headerlist}
        ctype, type_options = _mp.parse_options_header(headers.get("content-type", ""))
        disposition, options = _mp.parse_options_header(
            headers.get("content-disposition", ""), unquote=_mp.content_disposition_unquote)
        options["name"], options["filename"] = segment.name, segment.filename
        self.field = Field(segment.name, filename=segment.filename, file=file,
                           type=ctype or "application/octet-stream", type_options=type_options,
                           disposition=disposition, disposition_options=options,
                           headers=headers)
        self.cap, self.cap_option = limits.max_file_size, "max_file_size"

    def data(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.cap and self.size > self.cap:
            what = "file" if self.field is not None else "field"
            raise HTTPError(413, f"The form {what} {self.segment.name!r} is larger than the "
                                 f"{self.cap} bytes allowed by "
                                 f"modpy_safe.forms.{self.cap_option}.")
        if self.field is not None:
            self.field.file.write(chunk)
        else:
            self.text.append(chunk)

    def end(self) -> None:
        segment, field = self.segment, self.field
        if field is not None:
            field.file.seek(0)
            self.pairs.append((segment.name, field))
            return
        charset = (segment.charset or "utf-8").strip().lower()
        codec = TEXT_CHARSETS.get(charset)
        if codec is None:
            raise HTTPError(400, f"The form field {segment.name!r} declares charset "
                                 f"{charset[:40]!r}; allowed: utf-8, iso-8859-1, us-ascii.")
        try:
            value = b"".join(self.text).decode(codec)
        except UnicodeDecodeError:
            raise HTTPError(400, f"The form field {segment.name!r} is not valid "
                                 f"{charset}.") from None
        self.text = []
        self.pairs.append((segment.name, value))


def parse_stream(
    read: Callable[[int], Any],
    boundary: str,
    *,
    content_length: int | None,
    limits: Limits = DEFAULT_LIMITS,
    files: list[IO[bytes]] | None = None,
) -> list[tuple[str, FormValue]]:
    """Read a multipart body with ``read(n)`` and return its ``(name, value)`` pairs.

    ``content_length`` is the declared body length (None when unknown); reading
    stops there. The file objects of the file parts are appended to ``files``
    as they are made, so the caller can close them when the request ends; on an
    error they are closed here.
    """
    files = files if files is not None else []
    made = len(files)
    collector = _Collector(limits, files)
    parser = _mp.PushMultipartParser(
        boundary, content_length=-1 if content_length is None else content_length,
        max_header_size=limits.max_header_size, max_header_count=limits.max_headers,
        header_charset="utf-8")
    remaining = content_length
    total = 0
    try:
        while True:
            want = CHUNK if remaining is None else min(CHUNK, remaining)
            chunk = _read(read, want) if want else b""
            total += len(chunk)
            if limits.max_body and total > limits.max_body:
                raise HTTPError(413, f"The form body is larger than the {limits.max_body} "
                                     "bytes allowed by modpy_safe.forms.max_body.")
            if remaining is not None:
                remaining -= len(chunk)
            for event in parser.parse(chunk):
                if event is None:
                    collector.end()
                elif isinstance(event, (bytes, bytearray)):
                    collector.data(bytes(event))
                else:
                    collector.start(event)
            if not chunk:
                return collector.pairs
    except _mp.ParserLimitReached as exc:
        _close(files, made)
        raise HTTPError(413, _limit_message(exc, limits)) from None
    except _mp.MultipartError as exc:
        _close(files, made)
        raise HTTPError(400, f"The multipart/form-data body is malformed: {exc}.") from None
    except BaseException:
        _close(files, made)
        raise


def _read(read: Callable[[int], Any], size: int) -> bytes:
    try:
        chunk = read(size)
    except OSError as exc:  # mod_python raises IOError when the client stops sending
        raise HTTPError(400, f"The request body could not be read: {exc}") from None
    if isinstance(chunk, str):  # defensive: some stand-ins hand back text
        chunk = chunk.encode("utf-8")
    return bytes(chunk)


def _temporary_file(limits: Limits) -> IO[bytes]:
    """Make the file a file part goes to; spool_size 0 puts it on disk at once.

    It is closed when the request ends, or by parse_stream on an error.
    """
    where = limits.temp_dir
    try:
        # A spooled file reaches the directory only when it grows: check it now.
        if where is not None and not os.access(where, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "not a directory this process can write")
        if limits.spool_size:
            return tempfile.SpooledTemporaryFile(max_size=limits.spool_size, dir=where)
        return tempfile.TemporaryFile(dir=where)
    except OSError as exc:
        raise ConfigError(
            f"PythonOption modpy_safe.forms.temp_dir has value "
            f"{where or tempfile.gettempdir()!r}: no temporary file can be made there "
            f"({exc.strerror}); allowed: a directory httpd's User can write.") from None


def _limit_message(exc: Exception, limits: Limits) -> str:
    text = str(exc).lower()
    if "header length" in text:
        return (f"A multipart/form-data part has a header line longer than the "
                f"{limits.max_header_size} bytes allowed by modpy_safe.forms.max_header_size.")
    if "header count" in text:
        return (f"A multipart/form-data part has more than {limits.max_headers} headers, the "
                f"limit set by modpy_safe.forms.max_headers.")
    return f"The multipart/form-data body exceeds a limit: {exc}."


def _close(files: list[IO[bytes]], start: int) -> None:
    for file in files[start:]:
        file.close()
    del files[start:]
