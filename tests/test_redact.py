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


def test_scrub_removes_a_bare_password_anywhere():
    dsn = "host=h user=u password=s3cret"
    text = "connect failed for 's3cret' (dsn was host=h user=u password=s3cret)"
    cleaned = scrub(text, dsn)
    assert "s3cret" not in cleaned
    assert "host=h user=u password=***" in cleaned
