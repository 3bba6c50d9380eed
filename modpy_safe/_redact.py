"""Keep passwords out of logs, error messages and status pages."""
from __future__ import annotations

import re

__all__ = ["redact_dsn", "scrub"]

# key=value DSN: password=secret or password='se cret'
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# URI DSN: postgresql://user:secret@host/db
_URI_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)", re.IGNORECASE)
# ?password=secret in a URI query string
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&\s]*)", re.IGNORECASE)

MASK = "***"


def redact_dsn(dsn: str | None) -> str | None:
    """Return ``dsn`` with every password replaced by ``***``."""
    if dsn is None:
        return None
    text = _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)
    text = _URI_PASSWORD.sub(lambda m: m.group(1) + MASK + m.group(3), text)
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def _password_of(dsn: str) -> str | None:
    for pattern, group in ((_KV_PASSWORD, 2), (_URI_PASSWORD, 2), (_QUERY_PASSWORD, 2)):
        match = pattern.search(dsn)
        if match:
            value = match.group(group)
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            return value or None
    return None


def scrub(text: str, *dsns: str | None) -> str:
    """Return ``text`` with DSN passwords masked, including bare occurrences.

    psycopg2 error messages can quote a DSN back; a password can also appear
    outside a DSN (in a traceback's local variables). Every password found in
    ``dsns`` is removed wherever it stands in ``text``.
    """
    text = redact_dsn(text) or ""
    for dsn in dsns:
        if not dsn:
            continue
        secret = _password_of(dsn)
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text
