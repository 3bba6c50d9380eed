"""Baselines: mod_python.publisher's Python-3 defects, measured through httpd.

These tests pass by asserting what Debian 12's mod_python 3.5 really does. Each
has its fixed counterpart in ``test_publisher_better.py``; the connection leak
on reload is pinned in ``test_baseline.py``. If a future mod_python fixes one,
its test here fails and ``docs/migrating-from-publisher.md`` must change.
"""
from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from modpy_safe.testing import MPMS, Httpd, PostgresServer, make_tempdir, running

pytestmark = pytest.mark.httpd

PAGE_PY = '''
def one(a):
    return "a=%r" % (a,)

def two(req, a, b):
    return "a=%r b=%r" % (a, b)

def rep(x):
    return "x=%r" % (x,)

def kw(req, **kw):
    return repr(sorted(kw.items()))

def protected(req):
    def __auth__(req, user, password):
        return user == "spam" and password == "eggs"
    return "protected ok"

def realm(req):
    def __auth__(req, user, password):
        return True
    __auth_realm__ = "Nested realm"
    return "realm ok"

def raw(req):
    return b"raw bytes"

def gen(req):
    for i in range(10):
        yield i

test_dict = {1: 1, 2: 2, 3: 3}

def dict_keys(req):
    return test_dict.keys()

def reads_body(req):
    return "body=" + req.read().decode()

def form_names(req):
    return repr(list(req.form.keys()))

def index(req):
    return "index"
'''


@pytest.fixture(scope="module", params=MPMS)
def mp(request: Any) -> Iterator[Httpd]:
    """One httpd per MPM serving the page with mod_python.publisher."""
    root = make_tempdir(f"modpy_safe-pubbase-{request.param}-")
    server = Httpd(root, mpm=request.param, files={"page.py": PAGE_PY},
                   directory="SetHandler mod_python\nPythonHandler mod_python.publisher")
    with running(server, request):
        yield server


def _fails_with(server: Httpd, path: str, error: str, **kw: Any) -> None:
    """Assert a 500 whose traceback in the error log ends with ``error``."""
    before = len(server.error_log())
    resp = server.request(kw.pop("method", "GET"), path, **kw)
    assert resp.status == 500, (path, resp.status, resp.text[:200])
    assert error in server.error_log()[before:], server.log_tail()


def test_form_fields_never_reach_parameters(mp: Httpd) -> None:
    """Named parameters are never filled from the form: one, two, repeated, POSTed."""
    _fails_with(mp, "/page.py/one?a=1", "one() missing 1 required positional argument: 'a'")
    _fails_with(mp, "/page.py/two?a=1&b=2",
                "two() missing 2 required positional arguments: 'a' and 'b'")
    _fails_with(mp, "/page.py/rep?x=1&x=2", "rep() missing 1 required positional argument: 'x'")
    _fails_with(mp, "/page.py/two", "two() missing 2 required positional arguments",
                method="POST", body="a=1&b=2",
                headers={"Content-Type": "application/x-www-form-urlencoded"})


def test_field_names_come_out_as_their_values(mp: Httpd) -> None:
    """The cause of the above: util.FieldStorage names each field after its value,
    so **kwargs gets {'1': '1', '2': '2'} for ?a=1&b=2 and req.form agrees."""
    assert mp.get("/page.py/kw?a=1&b=2").text == "[('1', '1'), ('2', '2')]"
    assert mp.get("/page.py/form_names?a=1&b=2").text == "['1', '2']"


def test_basic_credentials_are_always_400(mp: Httpd) -> None:
    """Every Basic header on a protected page is a 400 (base64.decodestring is gone)."""
    token = base64.b64encode(b"spam:eggs").decode()
    resp = mp.get("/page.py/protected", headers={"Authorization": f"Basic {token}"})
    assert resp.status == 400
    assert not hasattr(base64, "decodestring")


def test_nested_realm_is_read_from_the_wrong_constant(mp: Httpd) -> None:
    """A nested __auth_realm__ is looked up in co_consts by an index that no longer
    matches Python 3.11 bytecode: the challenge names another constant of the function."""
    resp = mp.get("/page.py/realm")
    assert resp.status == 401
    assert resp.header("www-authenticate") == 'Basic realm="realm ok"'  # the return value


def test_results_are_written_as_reprs(mp: Httpd) -> None:
    """bytes, generators and dict views are written as their str(), not their content."""
    assert mp.get("/page.py/raw").text == "b'raw bytes'"
    assert mp.get("/page.py/gen").text.startswith("<generator object gen at 0x")
    assert mp.get("/page.py/dict_keys").text == "dict_keys([1, 2, 3])"


def test_malformed_paths_are_500(mp: Httpd) -> None:
    """A trailing or doubled dot, or a non-UTF-8 path, is a server error."""
    _fails_with(mp, "/page.py/index.", "IndexError: string index out of range")
    _fails_with(mp, "/page.py/index..x", "IndexError: string index out of range")
    _fails_with(mp, "/page.py/%ff", "UnicodeDecodeError")


def test_a_body_that_is_not_a_form_is_501(mp: Httpd) -> None:
    """FieldStorage runs before every call and refuses other types: a JSON POST is 501."""
    resp = mp.request("POST", "/page.py/reads_body", body='{"k": 1}',
                      headers={"Content-Type": "application/json"})
    assert resp.status == 501


def test_a_broken_edit_answers_500_before_the_old_version_returns(mp: Httpd) -> None:
    """The request that first meets a page whose new version raises gets a 500."""
    mp.write("edited.py", "def index(req):\n    return 'v1'\n")
    assert mp.get("/edited.py").text == "v1"
    mp.write("edited.py", "def index(req):\n    return 'v2'\nthis is not python\n")
    _fails_with(mp, "/edited.py", "NameError: name 'this' is not defined")


LEAKY_PAGE = """
import psycopg2

conn = psycopg2.connect({dsn!r})

def index(req):
    return "index"
"""


def test_a_module_level_connection_gives_its_password_away(
    mp: Httpd, postgres: PostgresServer
) -> None:
    """A DB-API connection is published like any object: its password is a URL away."""
    mp.write("conn_page.py", LEAKY_PAGE.format(dsn=postgres.dsn_for("pubbase_leak")))
    resp = mp.get("/conn_page.py/conn/info/password")
    assert (resp.status, resp.text) == (200, postgres.password)
    assert "host=127.0.0.1" in mp.get("/conn_page.py/conn/dsn").text
