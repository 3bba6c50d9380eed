"""A handler file that fails at import with a quoted DSN in its source never shows the password.

Python's traceback quotes the failing source line. When that line is
``psycopg2.connect("... password='...'")`` the password stands inside two
layers of quoting (libpq's and Python's), possibly with backslash escapes; it
goes to the error log, to the page with ``PythonDebug On`` and to the status
page. Each file here spells the DSN another way; the password is wrong, so the
import fails with the server up.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer, make_tempdir, running

pytestmark = pytest.mark.httpd

NAMES = ("quoted.py", "quote_escaped.py", "escaped.py", "keywords.py", "uri.py")


def fragments(name: str) -> tuple[str, str]:
    """The two words of ``name``'s password, found nowhere else: neither may be shown."""
    tag = NAMES.index(name)
    return (f"wq{tag}x7", f"zv{tag}k9")


STATUS = """\
<Location "/status">
    SetHandler mod_python
    PythonHandler modpy_safe.status
</Location>
"""

PAGE = """\
import psycopg2

conn = psycopg2.connect({args})


def handler(req):
    return "connected"
"""


def spellings(postgres: PostgresServer) -> dict[str, str]:
    """The connect() arguments, as a handler file would write them, by file name."""
    where = f"host=127.0.0.1 port={postgres.port} dbname={postgres.dbname} user={postgres.role}"
    quoted, quote, escape, keyword, uri = (fragments(name) for name in NAMES)
    backslash = "\\\\"  # one backslash in the DSN, written as a Python literal
    return {
        "quoted.py": f'"{where} password=\'{quoted[0]} {quoted[1]}\' application_name=q"',
        # password='a\' b': a quote inside the password, escaped for libpq
        "quote_escaped.py": (f'"{where} password=\'{quote[0]}{backslash}\' {quote[1]}\' '
                             'application_name=q"'),
        # password=a\ b: libpq's escape outside quotes
        "escaped.py": f'"{where} password={escape[0]}{backslash} {escape[1]} application_name=q"',
        "keywords.py": (f'host="127.0.0.1", port={postgres.port}, dbname="{postgres.dbname}", '
                        f'user="{postgres.role}", password="{keyword[0]} {keyword[1]}"'),
        "uri.py": repr(f"postgresql://{postgres.role}:{uri[0]}%20{uri[1]}@127.0.0.1:"
                       f"{postgres.port}/{postgres.dbname}"),
    }


@pytest.fixture(scope="module")
def site(request: Any, postgres: PostgresServer) -> Iterator[Httpd]:
    """One httpd whose pages fail at import: in / with PythonDebug Off, in /debug/ with On."""
    files = {}
    for name, args in spellings(postgres).items():
        for folder in ("", "debug/"):
            files[folder + name] = PAGE.format(args=args)
    root = make_tempdir("modpy_safe-quoted-dsn-")
    server = Httpd(root, mpm="event", files=files,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                   extra=STATUS + f'<Directory "{root}/htdocs/debug">\nPythonDebug On\n'
                                  "</Directory>\n")
    with running(server, request):
        yield server


@pytest.mark.parametrize("name", NAMES)
def test_failed_import_shows_no_part_of_a_quoted_password(site: Httpd, name: str) -> None:
    """500 with and without PythonDebug; the log, the pages and the status page mask it."""

    def shown(text: str) -> list[str]:
        """The lines of ``text`` that show a part of the password."""
        return [line for line in text.splitlines()
                if any(word in line for word in fragments(name))]

    pages = []
    for folder in ("", "debug/"):
        for _ in range(2):  # the failure is logged once; both answers are checked
            answer = site.get(f"/{folder}{name}")
            assert answer.status == 500, (folder, answer.status, answer.text[:300])
            pages.append(answer.text)
    # PythonDebug On shows the traceback, the failing line quoted: the case that leaks.
    assert "psycopg2.connect(" in pages[-1]
    assert "password authentication failed" in pages[-1]
    for report in (site.get("/status"), site.get("/status?format=json")):
        assert report.status == 200
        assert name in report.text and "OperationalError" in report.text
        assert shown(report.text) == []
    for page in pages:
        assert shown(page) == []
    log = site.error_log()
    assert f"/{name}" in log and "psycopg2.connect(" in log
    assert shown(log) == []
