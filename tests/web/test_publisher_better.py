"""Where modpy_safe.publisher does better than mod_python.publisher 3.5 on Python 3.

Each case here has its mod_python counterpart in ``test_publisher_baseline.py``
(the same request answered wrongly), except the reload leak, whose baseline is
``test_baseline.py::test_publisher_leaks_one_connection_per_edit``.
"""
from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from typing import Any

import pytest

from modpy_safe.testing import MPMS, Httpd, PostgresServer, Response, make_tempdir, running

pytestmark = pytest.mark.httpd

FORMS_PY = '''
def one(a):
    return "a=%r" % (a,)

def two(req, a, b):
    return "a=%r b=%r method=%s" % (a, b, req.method)

def rep(x):
    return "x=%r" % (x,)

def kw(req, **kw):
    return "kw=%r req=%s" % (sorted(kw.items()), req is not None)

def only_kw(**kw):
    return "keys=%s req=%s" % (",".join(sorted(kw)), type(kw.get("req")).__name__)

def upload(note, doc):
    return "note=%r name=%r type=%r size=%d head=%r" % (
        note, doc.filename, doc.type, len(doc.value), doc.file.read(5))

def uses_form(req):
    return "a=%s n=%d" % (req.form.getfirst("a"), len(req.form))

def reads_body(req):
    return "body=" + req.read().decode()

class Form:
    def method(self, req, a, b="b-default"):
        return "method a=%r b=%r" % (a, b)
    def __call__(self, a):
        return "called a=%r" % (a,)

form = Form()
'''

RESULTS_PY = '''
STATE = {state!r}

def raw(req):
    return b"\\x00\\xffraw bytes"

def html_bytes(req):
    return b"<html><body>bytes</body></html>"

def gen(req):
    c = 0
    while c < 10:
        yield c
        c += 1

test_dict = {{1: 1, 2: 2, 3: 3}}

def dict_keys(req):
    return test_dict.keys()

def mixed(req):
    return ["text ", b"bytes ", None, 7]

def html_stream(req):
    yield "<!DOCTYPE html>\\n<html><body>"
    yield "streamed</body></html>"

def queued(req):
    yield "x" * 10
    # Written piece by piece: the first piece is queued before this one is made.
    yield " queued before=%d" % req._bytes_queued

def text(req):
    return "caf\\u00e9 " * 3

def stream(req):
    def pieces():
        for i in range(5):
            with open(STATE + "/pulled", "a") as f:
                f.write("x")
            yield "piece %d\\n" % i
    return pieces()
'''

AUTH_PY = '''
__auth_realm__ = "Site"

class Guarded:
    __auth__ = {{"spam": "eggs"}}
    __auth_realm__ = "Guarded area"
    def inside(self, req):
        return "inside as " + req.user if req.user else "inside"

guarded = Guarded()

class Members:
    __auth__ = {{"spam": "eggs", "ham": "jam"}}
    __access__ = ["spam"]
    def list(self, req):
        return "members"

members = Members()

def nested(req):
    def __auth__(req, user, password):
        req.notes["auth_called"] = "1"
        return user == "spam" and password == "eggs"
    def __access__(req, user):
        req.notes["access_called"] = "1"
        return user == "spam"
    __auth_realm__ = "Nested realm"
    return "nested ok auth=%s access=%s" % (req.notes.get("auth_called"),
                                            req.notes.get("access_called"))

class Holder:
    def method(self, req):
        def __auth__(req, user, password):
            return (user, password) == ("spam", "eggs")
        return "method nested ok"

holder = Holder()

def attribute_protected(req):
    return "attribute ok"

attribute_protected.__auth__ = {{"spam": "eggs"}}
'''

DB_PY = '''
import psycopg2
import modpy_safe

db = modpy_safe.Database({dsn!r})
conn = psycopg2.connect({dsn!r})
down = modpy_safe.Database("host=127.0.0.1 port=1 dbname=none user=none connect_timeout=2")

def answer(req):
    with db.transaction() as cur:
        cur.execute("SELECT 40 + 2")
        return "db says %d" % cur.fetchone()[0]

def unreachable(req):
    with down.transaction() as cur:
        cur.execute("SELECT 1")
    return "never"
'''

INDEX_PY = '''
def index(req):
    return "index"
'''


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def ok(resp: Response, text: str) -> None:
    assert (resp.status, resp.text) == (200, text), resp.text[:300]


@pytest.fixture(scope="module", params=MPMS)
def site(request: Any, postgres: PostgresServer) -> Iterator[tuple[Httpd, str]]:
    """One httpd per MPM serving the pages with modpy_safe.publisher; also the state dir."""
    root = make_tempdir(f"modpy_safe-pubplus-{request.param}-")
    state = root / "state"
    state.mkdir(mode=0o777)
    os.chmod(state, 0o777)  # httpd's User writes here
    files = {
        "forms.py": FORMS_PY,
        "results.py": RESULTS_PY.format(state=str(state)),
        "auth.py": AUTH_PY.format(),
        "db.py": DB_PY.format(dsn=postgres.dsn_for(f"pubplus_{request.param}")),
        "index.py": INDEX_PY,
    }
    server = Httpd(root, mpm=request.param, files=files,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.publisher")
    with running(server, request):
        yield server, str(state)


def test_form_fields_reach_parameters(site: tuple[Httpd, str]) -> None:
    """Query and POSTed fields fill named parameters as str; repeats as lists; **kwargs."""
    server, _ = site
    ok(server.get("/forms.py/one?a=1"), "a='1'")
    ok(server.get("/forms.py/two?a=1&b=caf%C3%A9"), "a='1' b='café' method=GET")
    ok(server.post("/forms.py/two", {"a": "x y", "b": "2"}), "a='x y' b='2' method=POST")
    ok(server.post("/forms.py/two?a=q", {"b": "p"}), "a='q' b='p' method=POST")
    ok(server.get("/forms.py/rep?x=1&x=2&x=3"), "x=['1', '2', '3']")
    ok(server.get("/forms.py/kw?a=1&b=2&b=3"), "kw=[('a', '1'), ('b', ['2', '3'])] req=True")
    ok(server.get("/forms.py/only_kw?z=1"), "keys=req,z req=mp_request")
    ok(server.get("/forms.py/form/method?a=1"), "method a='1' b='b-default'")
    ok(server.get("/forms.py/form?a=2&ignored=3"), "called a='2'")
    # A function without field parameters still sees req.form, parsed when used...
    ok(server.post("/forms.py/uses_form", {"a": "posted", "b": "2"}), "a=posted n=2")
    # ...and a body that is not a form stays for the page (mod_python: 501).
    ok(server.request("POST", "/forms.py/reads_body", body='{"k": 1}',
                      headers={"Content-Type": "application/json"}), 'body={"k": 1}')
    missing = server.get("/forms.py/two?a=1")
    assert missing.status == 400 and "b&#x27; is required" in missing.text, missing.text[:300]


def test_upload_reaches_parameter_as_field(site: tuple[Httpd, str]) -> None:
    """A multipart upload arrives as a Field with filename, type, value and file."""
    server, _ = site
    boundary = "----pubtest"
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.bin\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + b"\x00\x01binary\xff" + f"\r\n--{boundary}--\r\n".encode()
    resp = server.request("POST", "/forms.py/upload", body=body, headers={
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    ok(resp, "note='hello' name='a.bin' type='application/octet-stream' size=9 "
             "head=b'\\x00\\x01bin'")


def test_bytes_and_iterables(site: tuple[Httpd, str]) -> None:
    """bytes are sent as bytes; generators, views and lists piece by piece."""
    server, _ = site
    raw = server.get("/results.py/raw")
    assert (raw.status, raw.body) == (200, b"\x00\xffraw bytes")
    assert raw.header("content-type") == "text/plain"
    assert server.get("/results.py/html_bytes").header("content-type") == "text/html"
    ok(server.get("/results.py/gen"), "0123456789")
    ok(server.get("/results.py/dict_keys"), "123")
    ok(server.get("/results.py/mixed"), "text bytes 7")
    streamed = server.get("/results.py/html_stream")
    assert streamed.header("content-type") == "text/html; charset=utf-8"
    ok(server.get("/results.py/queued"), "x" * 10 + " queued before=10")
    text = server.get("/results.py/text")
    assert text.body == ("café " * 3).encode("utf-8")
    assert text.header("content-type") == "text/plain; charset=utf-8"


def test_head_sends_headers_only(site: tuple[Httpd, str]) -> None:
    """HEAD: a GET's headers without the body, and no more of a generator than needed."""
    server, state = site
    get = server.get("/results.py/text")
    head = server.request("HEAD", "/results.py/text")
    assert (head.status, head.body) == (200, b"")
    assert head.header("content-length") == get.header("content-length") == str(len(get.body))
    assert head.header("content-type") == get.header("content-type")
    pulled = os.path.join(state, "pulled")
    head = server.request("HEAD", "/results.py/stream")
    assert (head.status, head.body) == (200, b"")
    with open(pulled) as f:
        assert f.read() == "x"  # only the first piece, to choose the Content-Type
    os.unlink(pulled)
    ok(server.get("/results.py/stream"), "".join(f"piece {i}\n" for i in range(5)))
    with open(pulled) as f:
        assert f.read() == "xxxxx"


@pytest.mark.parametrize("path", [
    "/index.py/index.",  # a trailing dot
    "/index.py/.index",
    "/index.py/a..b",
    "/index.py/%ff%fe",  # percent-encoding that is not UTF-8
    "/%ff.py",
    "/index.py/%C3%A9t%C3%A9",
    "/index.py/%zz",  # bad percent-encoding (Apache answers itself)
    "/index.py/" + "a" * 250 + "/" + "b" * 250,
    "/index.py/" + "a" * 5000,  # very long segment
    "/" + "x" * 300,  # a very long page name
])
def test_malformed_paths_are_client_errors(site: tuple[Httpd, str], path: str) -> None:
    """A malformed path is a 4xx, never a 500 (mod_python: IndexError for several)."""
    server, _ = site
    resp = server.get(path)
    assert 400 <= resp.status < 500, (path[:80], resp.status, resp.text[:200])


def test_basic_auth_works(site: tuple[Httpd, str]) -> None:
    """Right credentials pass (mod_python 3.5: 400 for every Basic header)."""
    server, _ = site
    spam = basic("spam", "eggs")
    ok(server.get("/auth.py/guarded/inside", headers=spam), "inside as spam")
    ok(server.get("/auth.py/nested", headers=spam), "nested ok auth=1 access=1")
    ok(server.get("/auth.py/holder/method", headers=spam), "method nested ok")
    ok(server.get("/auth.py/members/list", headers=spam), "members")
    latin1 = {"Authorization": "Basic " + base64.b64encode("spam:eggs".encode("latin-1")).decode()}
    ok(server.get("/auth.py/members/list", headers=latin1), "members")


def test_basic_auth_refusals(site: tuple[Httpd, str]) -> None:
    """Wrong password: 401 with the realm; a known user not allowed: 403."""
    server, _ = site
    wrong = server.get("/auth.py/nested", headers=basic("spam", "bacon"))
    assert wrong.status == 401
    assert wrong.header("www-authenticate") == 'Basic realm="Nested realm"'
    assert server.get("/auth.py/members/list", headers=basic("ham", "jam")).status == 403
    # An inner realm wins over the module's; without one the module's applies.
    assert (server.get("/auth.py/guarded/inside").header("www-authenticate")
            == 'Basic realm="Guarded area"')
    attr = server.get("/auth.py/attribute_protected")
    assert (attr.status, attr.header("www-authenticate")) == (401, 'Basic realm="Site"')
    ok(server.get("/auth.py/attribute_protected", headers=basic("spam", "eggs")), "attribute ok")
    # A Digest answer to a protected page is not Basic credentials: challenge again.
    digest = server.get("/auth.py/nested", headers={"Authorization": 'Digest username="spam"'})
    assert digest.status == 401


def test_pages_can_use_database(site: tuple[Httpd, str]) -> None:
    """modpy_safe.Database works in a page; an unreachable database is a 503."""
    server, _ = site
    ok(server.get("/db.py/answer"), "db says 42")
    assert server.get("/db.py/unreachable").status == 503
    # What holds a connection is never published nor traversed (mod_python gave
    # away conn.info.password): the Database, its methods, a naive connection.
    for path in ("/db.py/db", "/db.py/db/describe", "/db.py/db/close", "/db.py/conn",
                 "/db.py/conn/info/password", "/db.py/conn/dsn"):
        assert server.get(path).status == 403, path
    ok(server.get("/db.py/answer"), "db says 42")  # and nothing was closed


# ------------------------------------------------------------------- reload

LEAKY = """\
import os
import psycopg2

conn = psycopg2.connect({dsn!r})

def index(req):
    cur = conn.cursor()
    cur.execute("SELECT 1")
    return "edit %d pid %d" % ({edit}, os.getpid())
"""



def test_reload_keeps_connection_count_flat(httpd: Any, mpm: str,
                                            postgres: PostgresServer) -> None:
    """30 edits of a page with a module-level connect: still one connection, every time."""
    app = f"pub_reload_{mpm}"
    dsn = postgres.dsn_for(app)
    server = httpd(mpm, processes=1, options={"modpy_safe.reload.interval": "0"},
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.publisher",
                   files={"page.py": LEAKY.format(dsn=dsn, edit=0)})
    first = server.get("/page.py")
    assert first.status == 200, first.text
    pid = int(first.text.split()[-1])
    assert postgres.settled_count(app, expected=1) == 1
    for edit in range(1, 31):
        if edit == 15:
            # A broken version: the working one keeps answering, nothing leaks.
            server.write("page.py", LEAKY.format(dsn=dsn, edit=edit) + "\nthis is not python\n")
            ok(server.get("/page.py"), f"edit {edit - 1} pid {pid}")
            assert postgres.settled_count(app, expected=1) == 1
        server.write("page.py", LEAKY.format(dsn=dsn, edit=edit))
        ok(server.get("/page.py"), f"edit {edit} pid {pid}")
        assert postgres.settled_count(app, expected=1) == 1, f"after edit {edit}"
