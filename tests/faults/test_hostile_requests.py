"""Hostile and malformed requests against the publisher and dispatch, PythonDebug Off.

One httpd serves both: ``/pub/`` through ``modpy_safe.publisher`` and ``/disp/``
through ``modpy_safe.dispatch`` (each request's own file; ``app.py`` is a
``Handler`` class). Next to the document root, outside it, lie ``secret.txt``
and ``evil.py`` (whose every callable returns the secret): no request may ever
read or run them. Every answer must be a 4xx, never a 500, never a traceback,
never the secret, never the database password.

Already proven elsewhere and not repeated: the publisher's malformed object
paths (trailing dots, ``%ff``, very long segments) in test_publisher_better
``test_malformed_paths_are_client_errors``; the publisher's underscore and
module rules in test_publisher ``test_security``; dispatch's 405 for PUT/PATCH
in test_dispatch ``test_methods_head_options_405``; invalid UTF-8 in a
urlencoded body and query for dispatch in ``test_non_ascii_forms_and_upload``.
Those checks appear below only where they are part of a traversal or size
attack on both handlers.
"""
from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from modpy_safe.testing import Httpd, PostgresServer, make_tempdir, running

from .conftest import DISPATCH, PUBLISHER, STATUS, assert_no_secret

pytestmark = pytest.mark.httpd

SECRET = "TOPSECRET-" + secrets.token_hex(8)
LIMIT = 65536  # LimitRequestBody of both sections

PAGE = """\
import os

import psycopg2

import modpy_safe

db = modpy_safe.Database(name="hostile")
conn = psycopg2.connect(NAIVE_DSN)  # the mod_python habit: a module-level connection
_private = "never published"


class Thing:
    def method(self):
        return "method"


obj = Thing()


def index():
    return "index of page"


def hello(name="world"):
    return "hello %s" % name


def fields(req, **kwargs):
    return "fields " + ",".join(sorted(k for k in kwargs if k != "req"))


def database():
    with db.transaction() as cur:
        cur.execute("SELECT 1")
        return "db %d" % cur.fetchone()[0]
"""

APP = """\
import modpy_safe


class handler(modpy_safe.Handler):
    def get(self):
        if self.path_info:
            raise modpy_safe.HTTPError(404, "nothing here")
        return {"fields": sorted(self.args.keys())}

    def post(self):
        return self.get()
"""

EVIL = f"""\
def handler(req):
    return {SECRET!r}


def index():
    return {SECRET!r}
"""


@pytest.fixture(scope="module")
def site(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Httpd]:
    """The two handlers side by side, with the secret files next to the document root."""
    root = make_tempdir("modpy_safe-hostile-")
    page = PAGE.replace("NAIVE_DSN", repr(postgres.dsn_for("fault_hostile_naive")))
    server = Httpd(root, mpm="event", directory="", files={
        "pub/page.py": page, "pub/index.py": page, "disp/app.py": APP})
    for name, text in (("secret.txt", SECRET + "\n"), ("evil.py", EVIL)):
        (root / name).write_text(text)
        (root / name).chmod(0o644)
    docroot = server.docroot
    server.add_config(STATUS + (
        f'<Directory "{docroot}/pub">\n{PUBLISHER}\nLimitRequestBody {LIMIT}\n'
        f'PythonOption modpy_safe.db.hostile.dsn "{postgres.dsn_for("fault_hostile")}"\n'
        f"</Directory>\n"
        f'<Directory "{docroot}/disp">\n{DISPATCH}\nLimitRequestBody {LIMIT}\n</Directory>\n'))
    with running(server, request):
        yield server


def assert_refused(server: Httpd, postgres: PostgresServer, status: int, body: str,
                   what: str) -> None:
    """A 4xx with no traceback, no secret file, no password."""
    assert 400 <= status < 500, f"{what}: {status} {body[:300]}"
    assert "Traceback" not in body and SECRET not in body, f"{what}: {body[:300]}"
    assert_no_secret(postgres, None, body)


def test_the_site_works(site: Httpd) -> None:
    """The baseline the attacks are measured against: both handlers answer normally."""
    assert site.get("/pub/page.py/hello?name=x").text == "hello x"
    assert site.get("/pub/page.py/database").text == "db 1"
    assert site.get("/disp/app.py?a=1").json() == {"fields": ["a"]}
    assert SECRET in (site.root / "secret.txt").read_text()


class Attack(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MULTIPART = {"Content-Type": "multipart/form-data; boundary=XyZ"}
BAD_MULTIPART: dict[str, tuple[dict[str, str], bytes]] = {
    "no-boundary": ({"Content-Type": "multipart/form-data"}, b"--XyZ\r\n\r\nx\r\n--XyZ--\r\n"),
    "boundary-absent": (MULTIPART, b"just some bytes"),
    "truncated": (MULTIPART,
                  b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue'),
    "no-blank-line": (MULTIPART,
                      b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n--XyZ--\r\n'),
    "no-disposition": (MULTIPART, b"--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--\r\n"),
    "bad-utf8-field": (MULTIPART,
                       b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n\xff\xfe'
                       b"\r\n--XyZ--\r\n"),
    "huge-boundary": ({"Content-Type": "multipart/form-data; boundary=" + "b" * 300},
                      b"--" + b"b" * 300 + b"--\r\n"),
    # A client-chosen codec (punycode costs time growing with the square of the size).
    "client-codec": (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n'
                                b"Content-Type: text/plain; charset=punycode\r\n\r\n"
                                + b"\xe4a" * 30_000 + b"\r\n--XyZ--\r\n"),
    "nul-charset": (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n'
                               b'Content-Type: text/plain; charset="utf\x00-8"\r\n\r\nv'
                               b"\r\n--XyZ--\r\n"),
    "long-part-header": (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="a"; x="'
                                    + b"x" * 50_000 + b'"\r\n\r\nv\r\n--XyZ--\r\n'),
    "many-part-headers": (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n'
                                     + b"X-Pad: 1\r\n" * 200 + b"\r\nv\r\n--XyZ--\r\n"),
    "many-parts": (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n'
                              * 1001 + b"--XyZ--\r\n"),
    "boundary-star-non-ascii": (
        {"Content-Type": "multipart/form-data; boundary*=utf-8''%C3%A4"},
        "--ä\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--ä--\r\n".encode()),
    "boundary-non-ascii": ({"Content-Type": 'multipart/form-data; boundary="\xe4"'},
                           b"--\xe4\r\n\r\n--\xe4--\r\n"),
    "header-not-utf8": (MULTIPART, b'--XyZ\r\nContent-Disposition: form-data; name="\xff"'
                                   b"\r\n\r\nv\r\n--XyZ--\r\n"),
}

TRAVERSALS = [
    "/../secret.txt", "/pub/../../secret.txt", "/pub/%2e%2e/%2e%2e/secret.txt",
    "/pub/%2E%2E/%2e%2E/evil.py", "/pub/..%2f..%2fsecret.txt", "/pub/.%2e/.%2e/evil.py",
    "/pub/%252e%252e/%252e%252e/secret.txt", "/pub/..\\..\\secret.txt",
    "//secret.txt", "/pub//..//..//secret.txt", "/pub/page.py/../../../secret.txt",
    "/pub/page.py/..%2f..%2fevil", "/pub/page.py/%2e%2e/%2e%2e/evil",
    "/disp/../../evil.py", "/disp/%2e%2e/%2e%2e/evil.py", "/disp/app.py/../../../evil.py",
    "/disp/..%2f..%2fevil.py", "/%2e%2e/evil.py", "/pub/....//....//secret.txt",
    "/pub/page.py%00.txt", "/disp/app.py%00", "/pub/../secret.txt%00.py",
]

UNDERSCORES = [
    "/pub/page.py/_private", "/pub/page.py/__dict__", "/pub/page.py/__builtins__",
    "/pub/page.py/index/__globals__", "/pub/page.py/hello/__code__",
    "/pub/page.py/obj/__class__", "/pub/page.py/obj/method/__func__/__globals__",
    "/pub/page.py/__file__", "/pub/page.py/os", "/pub/page.py/os/system",
    "/pub/page.py/db", "/pub/page.py/modpy_safe/Database", "/pub/__init__.py",
    "/pub/page.py/__mp_clone__", "/pub/page.py/__mp_purge__",
    "/disp/__init__.py", "/disp/app.py/__dict__", "/disp/app.py/_private",
    "/disp/__pycache__/app.cpython-311.pyc", "/disp/.app.py", "/disp/%ff.py", "/disp/%ff",
    # The framework's own objects: a page's Database must not be published, nor its
    # methods called from a URL (GET /page.py/db/close would close the site's database).
    "/pub/page.py/db/close", "/pub/page.py/db/describe", "/pub/page.py/db/stats",
    "/pub/page.py/db/connection", "/pub/page.py/db/transaction", "/pub/page.py/db/name",
    "/pub/page.py/conn", "/pub/page.py/conn/dsn", "/pub/page.py/conn/close",
    "/pub/page.py/conn/info/password",
]


def attacks() -> Iterator[Any]:
    for path in TRAVERSALS:
        yield pytest.param(Attack("GET", path, {}, b""), id=f"traversal {path}")
    for path in UNDERSCORES:
        yield pytest.param(Attack("GET", path, {}, b""), id=f"underscore {path}")
    for prefix in ("/pub/page.py/fields", "/disp/app.py"):
        yield pytest.param(Attack("GET", prefix + "/" + "a" * 9000, {}, b""),
                           id=f"long path {prefix}")
        yield pytest.param(Attack("GET", prefix + "?q=" + "a" * 9000, {}, b""),
                           id=f"long query {prefix}")
        yield pytest.param(Attack("GET", prefix + "/%zz", {}, b""),
                           id=f"bad percent path {prefix}")
        yield pytest.param(Attack("GET", prefix + "?a=%ff%fe", {}, b""),
                           id=f"bad utf8 query {prefix}")
        yield pytest.param(Attack("POST", prefix, FORM, b"a=%ff%fe"),
                           id=f"bad utf8 form {prefix}")
        yield pytest.param(Attack("POST", prefix, FORM, b"a=1&" * 10_001),
                           id=f"too many fields {prefix}")
        yield pytest.param(Attack("POST", prefix, FORM, b"a=" + b"x" * (LIMIT + 10)),
                           id=f"body over limit {prefix}")
        for name, (headers, body) in BAD_MULTIPART.items():
            yield pytest.param(Attack("POST", prefix, headers, body),
                               id=f"multipart {name} {prefix}")
        for method in ("FOO", "PROPFIND", "DELETE"):
            yield pytest.param(Attack(method, prefix, {}, b""), id=f"method {method} {prefix}")
    yield pytest.param(Attack("GET", "/disp/app.py/%ff", {}, b""), id="bad utf8 path_info disp")


@pytest.mark.parametrize("attack", list(attacks()))
def test_attack_is_refused(site: Httpd, postgres: PostgresServer, attack: Attack) -> None:
    answer = site.request(attack.method, attack.path, headers=attack.headers,
                          body=attack.body or None)
    assert_refused(site, postgres, answer.status, answer.text,
                   f"{attack.method} {attack.path[:80]}")


def test_invalid_percent_encoding_in_the_query_is_kept_as_sent(site: Httpd) -> None:
    """``?a=%zz`` is not an error: like browsers and the WHATWG URL standard, the
    parser keeps an invalid escape as the characters sent (in the path, Apache
    answers 400: see the attacks above). Only bytes that are not UTF-8 are refused."""
    assert site.get("/pub/page.py/hello?name=%zz%4").text == "hello %zz%4"
    answer = site.get("/disp/app.py?%zz=1")
    assert answer.status == 200 and answer.json() == {"fields": ["%zz"]}


def raw(site: Httpd, data: bytes, *, half_close: bool = False) -> list[tuple[int, str]]:
    """Send ``data`` as is; return the status and text of every response (bounded read)."""
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while len(received) < 1_000_000:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            received += chunk
    answers = []
    for part in received.split(b"HTTP/1.1 ")[1:]:
        status = int(part[:3])
        answers.append((status, part.decode("utf-8", "replace")))
    return answers


def head(method: str, path: str, *lines: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{line}\r\n" for line in lines) + "\r\n").encode()


FORM_LINE = "Content-Type: application/x-www-form-urlencoded"


@pytest.mark.parametrize("prefix", ["/pub/page.py/fields", "/disp/app.py"])
def test_wrong_content_length(site: Httpd, postgres: PostgresServer, prefix: str) -> None:
    """Content-Length that lies, in every direction: 4xx for what is malformed, never 5xx."""
    cases = {
        "not a number": raw(site, head("POST", prefix, FORM_LINE, "Content-Length: abc",
                                       "Connection: close") + b"a=1"),
        "negative": raw(site, head("POST", prefix, FORM_LINE, "Content-Length: -5",
                                   "Connection: close") + b"a=1"),
        "with chunked": raw(site, head("POST", prefix, FORM_LINE, "Content-Length: 3",
                                       "Transfer-Encoding: chunked", "Connection: close")
                            + b"3\r\na=1\r\n0\r\n\r\n"),
        # Longer than what comes: the client stops sending and half-closes.
        "longer than the body": raw(site, head("POST", prefix, FORM_LINE,
                                               "Content-Length: 100", "Connection: close")
                                    + b"a=1", half_close=True),
        "chunked over the limit": raw(site, head(
            "POST", prefix, FORM_LINE, "Transfer-Encoding: chunked", "Connection: close")
            + b"%x\r\n" % (LIMIT + 10) + b"a=" + b"x" * (LIMIT + 8) + b"\r\n0\r\n\r\n"),
    }
    for what, answers in cases.items():
        assert answers, f"{what}: no answer at all"
        for status, text in answers:
            assert_refused(site, postgres, status, text, what)
    # Shorter than the body: the rest is read as the next request, which is garbage.
    answers = raw(site, head("POST", prefix, FORM_LINE, "Content-Length: 3")
                  + b"a=1GARBAGE / NOT-HTTP\r\n\r\n")
    assert [status for status, _ in answers][:1] == [200], answers
    for status, text in answers[1:]:
        assert_refused(site, postgres, status, text, "shorter than the body")


def test_nothing_was_logged_as_a_server_error(site: Httpd, postgres: PostgresServer) -> None:
    """After every attack: the site still works, no traceback in the log, no password."""
    assert site.get("/pub/page.py/database").text == "db 1"
    status_page = site.get("/status?format=json")
    assert status_page.status == 200
    assert SECRET not in status_page.text
    log = site.error_log()
    assert "Traceback" not in log, site.log_tail(60)
    assert SECRET not in log
    assert_no_secret(postgres, site, status_page.text)
