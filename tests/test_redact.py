"""Passwords never leave the process: DSNs and messages are scrubbed."""
from __future__ import annotations

import pytest

from modpy_safe._redact import redact_dsn, scrub


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password = 's3 cret' dbname=d", "host=h password = *** dbname=d"),
        ("postgresql://u:s3cret@h:5432/d", "postgresql://u:***@h:5432/d"),
        ("postgres://h/d?user=u&password=s3cret", "postgres://h/d?user=u&password=***"),
        ("host=h dbname=d", "host=h dbname=d"),
    ],
)
def test_redact_dsn(dsn, expected):
    assert redact_dsn(dsn) == expected


# A quoted password, the way each kind of text quotes it: libpq's own quoting and
# backslash escapes, a Python source line (the traceback of a failing import
# quotes it), a repr, a keyword argument, a URI.
QUOTED = [
    ("dbname=x password='s3 cret'", "dbname=x password=***"),
    ("password='s3 cret' dbname=x", "password=*** dbname=x"),
    (r"dbname=x password='s3\' cret' host=h", "dbname=x password=*** host=h"),
    (r"dbname=x password=s3\ cret host=h", "dbname=x password=*** host=h"),
    # The source line of psycopg2.connect("dbname=x password='s3\\' cret'"):
    (r"""conn = psycopg2.connect("dbname=x password='s3\\' cret'")""",
     'conn = psycopg2.connect("dbname=x password=***")'),
    # repr() of a DSN that holds both kinds of quote escapes the single ones:
    (repr("""a="b" password='s3 cret'"""), """'a="b" password=***'"""),
    ('conn = psycopg2.connect(dbname="x", password="s3 cret")',
     'conn = psycopg2.connect(dbname="x", password=***)'),
    ("PASSWORD = 's3 cret'", "PASSWORD = ***"),
    ("if password == 's3 cret':", "if password == ***:"),
    ("dbname=x password='s3 cret", "dbname=x password=***"),  # no closing quote
    ("postgresql://u:s3%20cret@h/d", "postgresql://u:***@h/d"),
]


@pytest.mark.parametrize(("text", "expected"), QUOTED)
def test_a_quoted_password_is_masked_whole(text, expected):
    """No part of a quoted or escaped password survives, whichever way it is quoted."""
    assert redact_dsn(text) == expected
    assert "cret" not in scrub(text)


@pytest.mark.parametrize("dsn", [
    "dbname=x password='s3 cret'",
    r"dbname=x password='s3\ cret'",
    r"dbname=x password=s3\ cret",
    "postgresql://u:s3%20cret@h/d",
    "postgresql://h/d?password=s3%20cret",
])
def test_a_quoted_password_is_removed_wherever_it_stands(dsn):
    """The password as the server sees it (unquoted, unescaped, decoded) is removed too."""
    text = "login as u with s3 cret failed; the local was 's3 cret'"
    cleaned = scrub(text, dsn)
    assert "s3 cret" not in cleaned and "cret" not in cleaned
    assert cleaned.startswith("login as u with ***")


def test_scrub_removes_a_bare_password_anywhere():
    dsn = "host=h user=u password=s3cret"
    text = "connect failed for 's3cret' (dsn was host=h user=u password=s3cret)"
    cleaned = scrub(text, dsn)
    assert "s3cret" not in cleaned
    assert "host=h user=u password=***" in cleaned
