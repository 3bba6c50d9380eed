"""A mod_python 3.3-style site moved to modpy_safe.dispatch by changing only its directives.

Through a real httpd (prefork, event) and a real PostgreSQL: an authen handler
holding the classic module-level ``psycopg2.connect()``, a fixup handler and a
content handler that imports its helper with ``apache.import_module``. Their
code is what ran under mod_python 3.3. The connections are counted in
``pg_stat_activity`` before and after the authen handler is edited: one per
process, never more.
"""
from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from modpy_safe.testing import Httpd, PostgresServer, make_tempdir, running

pytestmark = pytest.mark.httpd

AUTH = '''\
import psycopg2
from mod_python import apache

conn = psycopg2.connect(%(dsn)r)
conn.autocommit = True
MARK = "1"


def authenhandler(req):
    password = req.get_basic_auth_pw()
    cur = conn.cursor()
    try:
        cur.execute("SELECT 1 FROM site_users WHERE name = %%s AND password = %%s",
                    (req.user, password))
        found = cur.fetchone() is not None
    finally:
        cur.close()
    if not found:
        return apache.HTTP_UNAUTHORIZED
    req.notes["auth_mark"] = MARK
    return apache.OK
'''

FIXUP = '''\
from mod_python import apache


def fixuphandler(req):
    req.headers_out["X-Fixup"] = "ran for " + req.user
    return apache.OK
'''

APP = '''\
from mod_python import apache

util = apache.import_module("util")


def handler(req):
    req.content_type = "text/plain"
    req.write(util.greet(req.user) + " auth=" + req.notes.get("auth_mark", "-"))
    return apache.OK
'''

UTIL = '''\
def greet(user):
    return "hello " + user
'''

# Under mod_python 3.3 the section said 'PythonAuthenHandler auth', 'PythonFixupHandler
# fixup' and 'PythonHandler app'; this is all that changes.
DIRECTIVES = """\
PythonAuthenHandler auth
PythonFixupHandler fixup
PythonHandler app
"""

DIRECTIVES = """\
PythonAuthenHandler modpy_safe.dispatch
PythonFixupHandler modpy_safe.dispatch
PythonHandler modpy_safe.dispatch
PythonOption modpy_safe.authenhandler auth
PythonOption modpy_safe.fixuphandler fixup
PythonOption modpy_safe.handler app
"""

MODULES = "/usr/lib/apache2/modules"


@pytest.fixture(scope="module")
def users(postgres: PostgresServer) -> Iterator[None]:
    """The site's user table."""
    conn = psycopg2.connect(postgres.dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS site_users (name text, password text)")
        cur.execute("DELETE FROM site_users")
        cur.execute("INSERT INTO site_users VALUES ('alice', 'wonder')")
    try:
        yield
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE site_users")
        conn.close()


@pytest.fixture(scope="module", params=["prefork", "event"])
def site(request: pytest.FixtureRequest, postgres: PostgresServer,
         users: None) -> Iterator[Any]:
    """The 3.3-style site under one MPM, with the application name its connections use."""
    app = f"mp33_{request.param}_{uuid.uuid4().hex[:8]}"
    root = make_tempdir(f"modpy_safe-mp33-{request.param}-")
    # One process: its connection count is exactly one, before and after a reload.
    srv = Httpd(root, mpm=request.param, processes=1, files={
        "site/auth.py": AUTH % {"dsn": postgres.dsn_for(app)}, "site/fixup.py": FIXUP,
        "site/app.py": APP, "site/util.py": UTIL})
    body = "".join(f"    {line}\n" for line in DIRECTIVES.splitlines())
    srv.settings["extra"] = (
        f"LoadModule authn_core_module {MODULES}/mod_authn_core.so\n"
        f"LoadModule authz_user_module {MODULES}/mod_authz_user.so\n"
        f"LoadModule auth_basic_module {MODULES}/mod_auth_basic.so\n"
        f'<Directory "{srv.docroot}/site">\n'
        '    AuthType Basic\n    AuthName "site33"\n    Require valid-user\n'
        f"    SetHandler mod_python\n{body}</Directory>\n")
    with running(srv, request):
        yield srv, app


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_site_works_unchanged_but_for_its_directives(site: Any, postgres: PostgresServer) -> None:
    srv, app = site
    r = srv.get("/site/page")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="site33"'
    assert srv.get("/site/page", headers=_basic("alice", "nope")).status == 401
    for _ in range(6):
        r = srv.get("/site/page", headers=_basic("alice", "wonder"))
        assert (r.status, r.text) == (200, "hello alice auth=1"), r.text
        assert r.header("x-fixup") == "ran for alice"
    # The module-level connection: one for the one process.
    assert postgres.count_connections(app) == 1

    srv.write("site/auth.py", (srv.path("site/auth.py").read_text()
                               .replace('MARK = "1"', 'MARK = "2"')))
    _wait_marked(srv)
    for _ in range(6):
        assert srv.get("/site/page", headers=_basic("alice", "wonder")).text == \
            "hello alice auth=2"
    # The old version's connection was closed when the new one took over.
    assert postgres.settled_count(app, expected=1) == 1


def _wait_marked(srv: Httpd, tries: int = 100) -> None:
    import time

    for _ in range(tries):
        if srv.get("/site/page", headers=_basic("alice", "wonder")).text == "hello alice auth=2":
            return
        time.sleep(0.1)
    raise AssertionError(f"the edited authen handler never answered\n{srv.log_tail()}")
