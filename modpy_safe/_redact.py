"""Keep passwords out of logs, error messages and status pages."""
from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["redact_dsn", "scrub"]

# key=value DSN: password=secret, password='se cret' (libpq quoting, \' and \\
# inside), password=se\ cret (libpq escapes outside quotes too). The same text
# turns up quoted once more: in a Python source line a traceback shows
# ("... password='s3\\' cret'"), in a repr (password=\'s3 cret\'), as a keyword
# argument (password="s3 cret"). A quote may be preceded by the backslashes of
# that outer quoting; the value ends at the same backslashes and quote. An
# opening quote that never closes hides the rest of the line.
_KV_PASSWORD = re.compile(
    r"""(password\s*==?\s*)("""
    r"""(?P<esc>\\*)(?P<q>['"])(?:\\+.|[^\\\n])*?(?P=esc)(?P=q)"""
    r"""|\\*['"].*"""
    r"""|(?:\\+.|[^\s\\])+)""",
    re.IGNORECASE,
)
# URI DSN: postgresql://user:secret@host/db
_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)
# ?password=secret in a URI query string
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&\s]*)", re.IGNORECASE)
_ESCAPED = re.compile(r"\\(.)")

MASK = "***"


def redact_dsn(dsn: str | None) -> str | None:
    """Return ``dsn`` with every password replaced by ``***``."""
    if dsn is None:
        return None
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)
    text = _URI_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def _passwords_of(dsn: str) -> set[str]:
    """Return the password of ``dsn`` in each form it may take in a message.

    As written, and as the server sees it: unquoted and unescaped (key=value),
    percent-decoded (URI); also as ``repr()`` would show that.
    """
    found: set[str] = set()
    for match in _KV_PASSWORD.finditer(dsn):
        written = match.group(2)
        value = written
        if match.group("q"):
            quote = len(match.group("esc")) + 1
            value = value[quote:-quote]
        found.update((written, value, _ESCAPED.sub(r"\1", value)))
    for pattern in (_URI_PASSWORD, _QUERY_PASSWORD):
        for match in pattern.finditer(dsn):
            found.update((match.group(2), unquote(match.group(2))))
    found.update([repr(secret)[1:-1] for secret in found])
    return {secret for secret in found if len(secret) >= 3}


def scrub(text: str, *dsns: str | None) -> str:
    """Return ``text`` with DSN passwords masked, including bare occurrences.

    psycopg2 error messages can quote a DSN back; a password can also appear
    outside a DSN (in a traceback's local variables). Every password found in
    ``dsns`` is removed wherever it stands in ``text``, longest form first.
    """
    text = redact_dsn(text) or ""
    secrets: set[str] = set()
    for dsn in dsns:
        if dsn:
            secrets |= _passwords_of(dsn)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
