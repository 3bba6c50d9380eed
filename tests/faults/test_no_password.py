"""No password from any DSN in the error log, an error page or the status page.

Every other test of the fault suite also checks its responses and error log with
``assert_no_secret``. Proven elsewhere: a wrong password in a Database's DSN is
not shown (test_connections_httpd ``test_wrong_password_is_not_shown``); the
status page masks a Database's DSN (test_status).

This file covers the leak that needs no Database at all: a handler or a page
that connects at import with a DSN written into its source, while the database
is down. Python's traceback quotes the failing source line -- the DSN with its
password -- and that traceback goes to the error log, to the page with
``PythonDebug On``, and to the status page.
"""
from __future__ import annotations

from typing import Any

import pytest

from modpy_safe.testing import Httpd, PostgresServer

from .conftest import DISPATCH, PUBLISHER, STATUS, assert_no_secret

pytestmark = pytest.mark.httpd

PAGE = """\
import psycopg2

conn = psycopg2.connect({dsn!r})


def handler(req):
    return "connected"


def index():
    return "connected"
"""


def uri_dsn(postgres: PostgresServer) -> str:
    return (f"postgresql://{postgres.role}:{postgres.password}@127.0.0.1:{postgres.port}/"
            f"{postgres.dbname}?application_name=fault_uri")


def test_import_failure_with_a_dsn_in_the_source(httpd: Any, database_restored: PostgresServer
                                                 ) -> None:
    """The database is down while pages with literal DSNs load: 500s, and no password anywhere."""
    postgres = database_restored
    kv, uri = postgres.dsn_for("fault_kv"), uri_dsn(postgres)
    files = {}
    for folder in ("", "pub/", "debug/", "debugpub/"):
        files[f"{folder}kv.py"] = PAGE.format(dsn=kv)
        files[f"{folder}uri.py"] = PAGE.format(dsn=uri)
    root: Httpd = httpd("event", directory=DISPATCH, files=files, start=False)
    docroot = root.docroot
    root.add_config(STATUS + (
        f'<Directory "{docroot}/pub">\n{PUBLISHER}\n</Directory>\n'
        f'<Directory "{docroot}/debug">\nPythonDebug On\n</Directory>\n'
        f'<Directory "{docroot}/debugpub">\n{PUBLISHER}\nPythonDebug On\n</Directory>\n'))
    postgres.stop()
    server = root.start()

    pages = []
    for folder in ("", "pub/", "debug/", "debugpub/"):
        for name in ("kv", "uri"):
            for _ in range(2):  # the failure is logged once; both answers are checked
                answer = server.get(f"/{folder}{name}.py")
                assert answer.status == 500, (folder, name, answer.status, answer.text[:300])
                pages.append(answer.text)
    # With PythonDebug On the page shows the traceback -- the source line included.
    assert any("psycopg2.connect(" in page for page in pages)
    report_json = server.get("/status?format=json")
    report_html = server.get("/status")
    assert report_json.status == report_html.status == 200
    assert "OperationalError" in report_json.text  # the load errors are on it
    log = server.error_log()
    assert "psycopg2.connect(" in log  # the failing line is quoted in the log
    assert_no_secret(postgres, server, *pages, report_json.text, report_html.text)
