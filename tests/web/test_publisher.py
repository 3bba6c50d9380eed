"""Drop-in compatibility: mod_python.publisher and modpy_safe.publisher agree.

One httpd per MPM serves the same pages from two directories, ``/mp/`` with
``PythonHandler mod_python.publisher`` and ``/ms/`` with
``PythonHandler modpy_safe.publisher``, and every test here runs against both.
The pages restate the publisher cases of mod_python's own test suite
(publisher, auth nested, auth method nested, digest header, security,
hierarchy, instance) plus the mapping, argument, auth and result rules of its
documentation, limited to what mod_python 3.5 still does right on Python 3.
Where it does not, the case is in ``test_publisher_better.py`` (ours) and
``test_publisher_baseline.py`` (mod_python's defect).
"""
from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import MPMS, Httpd, Response, make_tempdir, running

pytestmark = pytest.mark.httpd

HANDLERS = {"mp": "mod_python.publisher", "ms": "modpy_safe.publisher"}

# The mod_python test suite's main page, restated.
TESTS_PY = '''
import re
from mod_python import apache, util

_SECRET_PASSWORD = "never shown"
__ANSWER = 42
greeting = "hello, published string"
answer = 42
length = len

def index(req):
    return "test ok, interpreter=" + req.interpreter

def test_publisher(req):
    return "publisher ok"

def optional(req, word="default"):
    return "word=" + word

def html(req):
    return "<html><body>page</body></HTML >\\n"

def almost_html(req):
    return "<html> but no closing tag"

def typed(req):
    req.content_type = "application/x-custom"
    return "custom"

def nothing(req):
    return None

def writes(req):
    req.content_type = "text/plain"
    req.write("written ")
    req.write("directly")

def form_is_set(req):
    return "form=%s keys=%d" % (hasattr(req, "form"), len(list(req.form.keys())))

def forbidden(req):
    raise apache.SERVER_RETURN(apache.HTTP_FORBIDDEN)

def moved(req):
    util.redirect(req, "/elsewhere")

def returns_callable(req):
    return test_publisher

def fails(req):
    raise RuntimeError("page bug")

def auth_nested(req):
    def __auth__(req, user, password):
        return user == "spam" and password == "eggs"
    def __access__(req, user):
        return True
    return "auth nested ok"

def auth_constant(req):
    __auth__ = 0
    return "never"

class _MethodHolder:
    def method(self, req):
        def __auth__(req, user, password):
            return user == "spam" and password == "eggs"
        def __access__(req, user):
            return True
        return "auth method nested ok"

auth_method_nested = _MethodHolder()

class InstanceTest(object):
    def __call__(self, req):
        return "callable instance ok"
    def traverse(self, req):
        return "traversable instance ok"

instance = InstanceTest()

test_dict = {1: 1, 2: 2, 3: 3}
test_dict_keys = test_dict.keys

class Mapping(object):
    def __init__(self, name):
        self.name = name
    def __call__(self, req):
        return "Called " + self.name

hierarchy_root = Mapping("root")
hierarchy_root.page1 = Mapping("page1")
hierarchy_root.page1.subpage1 = Mapping("subpage1")
hierarchy_root.page2 = Mapping("page2")

class Mapping2:
    pass

hierarchy_root_2 = Mapping2()
hierarchy_root_2.__call__ = test_publisher
hierarchy_root_2.page1 = test_publisher

class Guarded:
    __auth__ = {"spam": "eggs"}
    __auth_realm__ = "Guarded area"
    def inside(self, req):
        return "inside"

guarded = Guarded()

class Members:
    __access__ = ["spam"]
    def list(self, req):
        return "members"

members = Members()

class Closed:
    __access__ = 0
    def door(self, req):
        return "closed"

closed = Closed()
'''

INDEX_PY = '''
def index(req):
    return "test 1 ok"

def foobar(req):
    return "test 2 ok"
'''

AUTHMOD_PY = '''
__auth__ = {"spam": "eggs"}
__auth_realm__ = "Module realm"

def index(req):
    return "module protected"
'''

NOINDEX_PY = '''
def index(req):
    return "no index here"
'''


def _pages() -> dict[str, str]:
    files = {}
    for sub in HANDLERS:
        files[f"{sub}/tests.py"] = TESTS_PY
        files[f"{sub}/index.py"] = INDEX_PY
        files[f"{sub}/authmod.py"] = AUTHMOD_PY
        files[f"{sub}/noindex/page.py"] = NOINDEX_PY
    return files


def _sections(docroot: Path) -> str:
    return "".join(
        f'<Directory "{docroot}/{sub}">\n'
        "    SetHandler mod_python\n"
        f"    PythonHandler {handler}\n"
        "    AddHandler mod_python .pyp\n"
        "</Directory>\n"
        for sub, handler in HANDLERS.items()
    )


@pytest.fixture(scope="module", params=MPMS)
def site(request: Any) -> Iterator[Httpd]:
    """One httpd per MPM serving the same pages through both publishers."""
    root = make_tempdir(f"modpy_safe-pub-{request.param}-")
    docroot = root / "htdocs"
    server = Httpd(root, mpm=request.param, docroot=docroot, files=_pages(),
                   extra=_sections(docroot))
    with running(server, request):
        yield server


@pytest.fixture(params=sorted(HANDLERS))
def pub(request: Any) -> str:
    """The directory of one publisher: 'mp' (mod_python's) or 'ms' (ours)."""
    return str(request.param)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def media_type(resp: Response) -> str:
    return (resp.header("content-type") or "").split(";")[0].strip()


def ok(resp: Response, text: str) -> None:
    assert (resp.status, resp.text) == (200, text), resp.text[:300]


def test_url_mapping(site: Httpd, pub: str) -> None:
    """Module from the file name, index.py fallback, dotted object path, 404."""
    get = lambda path: site.get(f"/{pub}{path}")  # noqa: E731
    ok(get("/tests.py/test_publisher"), "publisher ok")
    assert get("/tests.py").text.startswith("test ok, interpreter=")
    assert get("/tests.py/index").text == get("/tests.py").text
    ok(get("/tests.py/test_publisher/"), "publisher ok")  # one trailing slash is dropped
    # Apache merges doubled slashes in path_info (even with MergeSlashes Off).
    ok(get("/tests.py//test_publisher"), "publisher ok")
    ok(get("/tests.py/test_publisher//"), "publisher ok")
    ok(get("/tests/test_publisher"), "publisher ok")  # extension left out
    ok(get("/tests.pyp/test_publisher"), "publisher ok")  # the AddHandler extension
    ok(get("/"), "test 1 ok")  # a directory: index.py, index()
    ok(get("/foobar"), "test 2 ok")  # no foobar.py: index.py, foobar()
    ok(get("/tests.py/instance.traverse"), "traversable instance ok")  # dots like slashes
    assert get("/tests.py/no_such_function").status == 404
    assert get("/no_such_page/at_all").status == 404  # index.py has no no_such_page
    assert get("/foobar/no_such_thing").status == 403  # a function is not traversed
    assert get("/noindex/").status == 404  # neither page.py nor index.py matches
    assert get("/noindex/missing").status == 404
    ok(get("/noindex/page.py"), "no index here")


def test_arguments_without_form_fields(site: Httpd, pub: str) -> None:
    """req is passed by name, defaults apply, req.form is set, non-callables are published."""
    ok(site.get(f"/{pub}/tests.py/optional"), "word=default")
    ok(site.get(f"/{pub}/tests.py/form_is_set"), "form=True keys=0")
    ok(site.get(f"/{pub}/tests.py/greeting"), "hello, published string")
    ok(site.get(f"/{pub}/tests.py/answer"), "42")
    ok(site.get(f"/{pub}/tests.py/returns_callable"), "publisher ok")  # called in turn


def test_instances_methods_and_hierarchy(site: Httpd, pub: str) -> None:
    """Callable instances, their methods, and objects nested as a hierarchy."""
    get = lambda path: site.get(f"/{pub}/tests.py{path}")  # noqa: E731
    ok(get("/instance"), "callable instance ok")
    ok(get("/instance/traverse"), "traversable instance ok")
    ok(get("/hierarchy_root"), "Called root")
    ok(get("/hierarchy_root/page1"), "Called page1")
    ok(get("/hierarchy_root/page1/subpage1"), "Called subpage1")
    ok(get("/hierarchy_root/page2"), "Called page2")
    ok(get("/hierarchy_root_2"), "publisher ok")  # an instance's own __call__ attribute
    ok(get("/hierarchy_root_2/page1"), "publisher ok")


def test_security(site: Httpd, pub: str) -> None:
    """403 for underscores, modules, classes, built-ins, and traversal into functions."""
    for path in (
        "/_SECRET_PASSWORD",
        "/__ANSWER",
        "/re",  # a module
        "/InstanceTest",  # a class is not called
        "/Mapping2",
        "/length",  # a built-in function
        "/test_dict/keys",  # a bound built-in method, reached by traversal
        "/test_dict_keys",  # the same, published directly
        "/index/__code__",
        "/index/func_code",  # a function's attributes, even without an underscore
        "/instance/traverse/__globals__",
        "/instance/traverse/im_func",  # a method's attributes
        "/hierarchy_root/__dict__",
    ):
        resp = site.get(f"/{pub}/tests.py{path}")
        assert resp.status == 403, (path, resp.status, resp.text[:200])


def test_methods(site: Httpd, pub: str) -> None:
    """GET, POST and HEAD are served; anything else is 405 with an Allow header."""
    ok(site.request("POST", f"/{pub}/tests.py/test_publisher", body=b""), "publisher ok")
    for method in ("PUT", "DELETE", "PATCH"):
        resp = site.request(method, f"/{pub}/tests.py/test_publisher")
        assert resp.status == 405, (method, resp.status)
        allowed = {m.strip() for m in (resp.header("allow") or "").split(",")}
        assert {"GET", "POST", "HEAD"} <= allowed, resp.header("allow")
    head = site.request("HEAD", f"/{pub}/tests.py/html")
    assert (head.status, head.body, media_type(head)) == (200, b"", "text/html")


def test_results(site: Httpd, pub: str) -> None:
    """None → empty; text → text/html iff it ends with </html>, else text/plain."""
    html = site.get(f"/{pub}/tests.py/html")
    assert (html.status, media_type(html)) == (200, "text/html")
    assert html.text == "<html><body>page</body></HTML >\n"
    plain = site.get(f"/{pub}/tests.py/almost_html")
    assert (plain.status, media_type(plain)) == (200, "text/plain")
    typed = site.get(f"/{pub}/tests.py/typed")
    assert (typed.text, media_type(typed)) == ("custom", "application/x-custom")
    nothing = site.get(f"/{pub}/tests.py/nothing")
    assert (nothing.status, nothing.body) == (200, b"")
    ok(site.get(f"/{pub}/tests.py/writes"), "written directly")


def test_mod_python_protocol_in_pages(site: Httpd, pub: str) -> None:
    """apache.SERVER_RETURN and util.redirect work inside pages; a page bug is a 500."""
    assert site.get(f"/{pub}/tests.py/forbidden").status == 403
    moved = site.get(f"/{pub}/tests.py/moved")
    assert moved.status == 302
    assert (moved.header("location") or "").endswith("/elsewhere")
    failed = site.get(f"/{pub}/tests.py/fails")
    assert failed.status == 500
    assert "page bug" not in failed.text  # PythonDebug Off: no traceback for the client


def _challenge(resp: Response) -> str:
    assert resp.status == 401, (resp.status, resp.text[:200])
    value = resp.header("www-authenticate") or ""
    assert value.startswith("Basic realm"), value
    return value


@pytest.mark.parametrize("path, realm", [
    ("/authmod.py", "Module realm"),  # module level
    ("/tests.py/guarded/inside", "Guarded area"),  # an object along the path
    ("/tests.py/auth_nested", "unknown"),  # nested in the published function
    ("/tests.py/auth_method_nested/method", "unknown"),  # nested in a method
    ("/tests.py/auth_constant", "unknown"),  # a constant __auth__
])
def test_auth_challenge(site: Httpd, pub: str, path: str, realm: str) -> None:
    """No credentials: 401 with a Basic challenge naming the realm; a bad header: 400."""
    assert f'"{realm}"' in _challenge(site.get(f"/{pub}{path}"))
    for broken in ("Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no colon").decode()):
        resp = site.get(f"/{pub}{path}", headers={"Authorization": broken})
        assert resp.status == 400, (broken, resp.status)


def test_access_refused_and_digest_ignored(site: Httpd, pub: str) -> None:
    """__access__ without a user: 403; a Digest header on an unprotected page: ignored."""
    assert site.get(f"/{pub}/tests.py/members/list").status == 403
    assert site.get(f"/{pub}/tests.py/closed/door").status == 403
    digest = ('Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd", '
              'uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", '
              'response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf"')
    ok(site.get(f"/{pub}/tests.py/test_publisher", headers={"Authorization": digest}),
       "publisher ok")
    # Credentials on an unprotected page are never even decoded.
    ok(site.get(f"/{pub}/tests.py/test_publisher", headers=basic("spam", "eggs")),
       "publisher ok")
