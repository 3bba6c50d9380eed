"""PythonHandler modpy_safe.status through a real httpd, under each MPM.

One server (one child process, so the page's top-level fields describe the
process that ran the handlers) serves the handlers whose traces the page must
show, the page itself, and the page under three access rules.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from modpy_safe.testing import MPMS, Httpd, PostgresServer, make_tempdir, running

pytestmark = pytest.mark.httpd

APP = '''\
import os
import modpy_safe

db = modpy_safe.Database({dsn!r}, name="main")

def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT 1")
        return "%d %d" % (cur.fetchone()[0], os.getpid())
'''

# The naive idiom: a module-level connection, opened again by every version.
NAIVE = '''\
import psycopg2

conn = psycopg2.connect({dsn!r})

def handler(req):
    return "naive {version}"
'''

# A Database the server cannot reach, its password in URI form.
UNREACHABLE = '''\
import modpy_safe

db = modpy_safe.Database("postgresql://app:{secret}@127.0.0.1:1/app?connect_timeout=2",
                         name="unreachable")

def handler(req):
    with db.connection() as conn:
        return "never"
'''

BROKEN = "x = 1\ndef handler(req)\n    pass\n"
URI_SECRET = "uri-secret-7f3a"


def _location(path: str, allow: str | None = None) -> str:
    # The section docs/handlers.md shows: <If> rather than <Location>, so httpd maps
    # the URL to a file name and logs nothing per request.
    option = f'    PythonOption modpy_safe.status.allow "{allow}"\n' if allow else ""
    return (f"<If \"%{{REQUEST_URI}} == '{path}'\">\n    SetHandler mod_python\n"
            f"    PythonHandler modpy_safe.status\n{option}</If>\n")


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Httpd]:
    root = make_tempdir(f"modpy_safe-status-{request.param}-")
    dsn = postgres.dsn_for(f"status_{request.param}")
    srv = Httpd(root, mpm=request.param, processes=1,
                directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                files={"app.py": APP.format(dsn=dsn), "naive.py": NAIVE.format(dsn=dsn, version=1),
                       "unreachable.py": UNREACHABLE.format(secret=URI_SECRET),
                       "broken.py": BROKEN},
                # Check for edits on every request, so the edit below is seen at once.
                options={"modpy_safe.reload.interval": "0"})
    srv.add_config(_location("/status") + _location("/status-denied", "10.0.0.0/8")
                             + _location("/status-listed", "192.0.2.7, 127.0.0.1")
                             + _location("/status-bad", "localhost"))
    srv.dsn = dsn  # type: ignore[attr-defined]
    with running(srv, request):
        yield srv


def _status(server: Httpd, **kw: object) -> dict:
    r = server.get("/status?format=json", **kw)
    assert r.status == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    return json.loads(r.body)


def _module(report: dict, name: str) -> dict:
    found = [m for m in report["modules"] if m["path"].endswith("/" + name)]
    assert len(found) == 1, report["modules"]
    return found[0]


def test_report_in_both_formats_without_passwords(server: Httpd, postgres: PostgresServer) -> None:
    mpm = server.mpm
    pid = int(server.get("/app.py").text.split()[1])
    assert server.get("/naive.py").text == "naive 1"
    assert server.get("/broken.py").status == 500
    down = server.get("/unreachable.py")
    assert down.status == 503 and URI_SECRET not in down.text

    before = _status(server)
    assert before["pid"] == pid
    assert before["server"]["mpm"] == mpm
    threaded = mpm != "prefork"
    assert before["server"]["threads_per_child"] == (8 if threaded else 1)
    assert before["server"]["connection_mode"] == ("pooled" if threaded else "persistent")
    assert _module(before, "naive.py")["generation"] == 1
    app = _module(before, "app.py")
    assert app["generation"] == 1 and app["reloads"] == 0 and app["loaded_at"]
    error = _module(before, "broken.py")["last_error"]
    assert error["file"].endswith("broken.py") and error["line"] == 2
    assert "SyntaxError" in error["message"]

    dbs = {db["name"]: db for db in before["databases"]}
    assert dbs["main"]["mode"] == ("pooled" if threaded else "persistent")
    assert dbs["main"]["stats"]["requests"] >= 1
    assert "***" in dbs["main"]["settings"]["dsn"]
    assert dbs["unreachable"]["stats"]["connect_failures"] >= 1

    # A new version of the naive module: the page, reloaded, shows it and the
    # connection closed on behalf of the old version.
    server.write("naive.py", NAIVE.format(dsn=server.dsn, version=2))  # type: ignore[attr-defined]
    assert server.get("/naive.py").text == "naive 2"
    after = server.wait_for(
        "/status?format=json",
        lambda r: json.loads(r.body)["connections_closed_for_old_versions"] >= 1)
    naive = _module(json.loads(after.body), "naive.py")
    assert naive["generation"] == 2 and naive["reloads"] == 1
    assert naive["closed_for_old_versions"] == 1

    by_accept = server.get("/status", headers={"Accept": "application/json"})
    assert json.loads(by_accept.body)["pid"] == pid
    page = server.get("/status")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert f"Process {pid}" in page.text and "naive.py" in page.text and "SyntaxError" in page.text

    for text in (after.text, by_accept.text, page.text):
        assert postgres.password not in text
        assert URI_SECRET not in text


def test_access_rule(server: Httpd) -> None:
    denied = server.get("/status-denied?format=json")
    assert denied.status == 403 and "modpy_safe.status.allow" in denied.text
    assert "pid" not in denied.text
    assert server.get("/status-listed?format=json").status == 200
    bad = server.get("/status-bad")
    assert bad.status == 500
    assert "modpy_safe.status.allow has value 'localhost'" in server.error_log()
