"""PythonHandler modpy_safe.dispatch through a real httpd, under each MPM.

One server per MPM serves every file below, so a single start covers routing
with and without ``modpy_safe.handler``, every return type, method dispatch,
forms, HTTPError, redirects and error pages with PythonDebug on and off.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest

from modpy_safe.testing import MPMS, Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

RETURNS = '''\
import modpy_safe
from mod_python import apache

def pieces():
    yield "one,"
    yield b"two,"
    yield "three"

def handler(req):
    kind = req.path_info.strip("/")
    if kind == "str":
        return "Grüße"
    if kind == "html":
        return "  <p>hi</p>\\n"
    if kind == "bytes":
        return b"\\x00\\xff"
    if kind == "dict":
        return {"note": "Grüße", "n": 1}
    if kind == "list":
        return [1, "two"]
    if kind == "generator":
        return pieces()
    if kind == "int":
        return apache.HTTP_NOT_FOUND
    if kind == "none":
        req.content_type = "text/plain"
        req.write("written by hand")
        return None
    if kind == "ctype":
        req.content_type = "text/csv"
        return "a,b"
    if kind == "status":
        req.status = 201
        return "created"
    if kind == "httperror":
        raise modpy_safe.HTTPError(404, "no such note")
    if kind == "redirect":
        modpy_safe.redirect("/elsewhere?x=1")
    if kind == "server-return":
        raise apache.SERVER_RETURN(apache.HTTP_FORBIDDEN)
    if kind == "db":
        raise modpy_safe.DatabaseUnavailable(
            "could not connect to postgresql://app:s3cretpw@db.example/app")
    if kind == "boom":
        secret_local = "f" + "oo"
        raise RuntimeError("kaboom " + secret_local)
    raise modpy_safe.HTTPError(400, "unknown kind %r" % kind)
'''

# A Handler subclass reached through its file: the file's 'handler' is the class.
NOTES = '''\
import modpy_safe

class Notes(modpy_safe.Handler):
    def get(self):
        return {"method": self.req.method, "path_info": self.path_info,
                "note": self.args.get("note")}

    def post(self):
        return "posted " + self.args.getfirst("note", "-")

    def delete(self):
        return 204

handler = Notes
'''

# Echo every field as JSON, files as name/type/size/digest.
ECHO = '''\
import hashlib
import modpy_safe

def describe(value):
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, str):
        return value
    return {"filename": value.filename, "type": value.type, "size": len(value.value),
            "sha256": hashlib.sha256(value.file.read()).hexdigest()}

class handler(modpy_safe.Handler):
    def get(self):
        return {k: describe(self.args[k]) for k in self.args.keys()}

    post = get
'''

FIXED = '''\
import modpy_safe

class Resource(modpy_safe.Handler):
    def get(self):
        return "fixed " + self.path_info

    def put(self):
        return "put " + self.req.read().decode()

def handler(req):
    return "not me"
'''

# Code written for plain 'PythonHandler legacy', unchanged.
LEGACY = '''\
from mod_python import apache, util

def handler(req):
    if req.path_info == "/away":
        util.redirect(req, "/somewhere")
    req.content_type = "text/plain"
    req.write("legacy " + req.method)
    return apache.OK
'''

INDEX = 'def handler(req):\n    return "index of sub"\n'
NOHANDLER = "value = 1\n"
BROKEN = "def handler(req)\n    return 'syntax error above'\n"


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    """One httpd per MPM for the whole module: every test here only sends requests."""
    root = make_tempdir(f"modpy_safe-dispatch-{request.param}-")
    srv = Httpd(root, mpm=request.param,
                directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                files={"returns.py": RETURNS, "notes.py": NOTES, "echo.py": ECHO,
                       "sub/index.py": INDEX, "static.txt": "plain static file\n",
                       "nohandler.py": NOHANDLER, "broken.py": BROKEN,
                       "fixed/app.py": FIXED, "legacy/legacy.py": LEGACY,
                       "debug/returns.py": RETURNS})
    docroot = srv.docroot
    # Each section names its own PythonHandler, so relative handler files resolve
    # against that section's directory, as mod_python resolves 'PythonHandler x'.
    srv.add_config(
        f'<Directory "{docroot}/fixed">\n    PythonHandler modpy_safe.dispatch\n'
        f"    PythonOption modpy_safe.handler app.py::Resource\n</Directory>\n"
        f'<Directory "{docroot}/legacy">\n    PythonHandler modpy_safe.dispatch\n'
        f"    PythonOption modpy_safe.handler legacy\n</Directory>\n"
        f'<Directory "{docroot}/debug">\n    PythonDebug On\n</Directory>\n'
    )
    with running(srv, request):
        yield srv


def test_routing_and_return_types(server: Httpd) -> None:
    r = server.get("/returns.py/str")
    assert (r.status, r.text) == (200, "Grüße"), r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    r = server.get("/returns.py/html")
    assert r.headers["content-type"] == "text/html; charset=utf-8" and "<p>hi</p>" in r.text
    r = server.get("/returns.py/bytes")
    assert r.body == b"\x00\xff" and r.headers["content-type"] == "application/octet-stream"
    r = server.get("/returns.py/dict")
    assert r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"note": "Grüße", "n": 1}
    assert json.loads(server.get("/returns.py/list").body) == [1, "two"]
    r = server.get("/returns.py/generator")
    assert (r.status, r.text) == (200, "one,two,three")
    assert server.get("/returns.py/int").status == 404
    r = server.get("/returns.py/none")
    assert (r.status, r.text) == (200, "written by hand")
    r = server.get("/returns.py/ctype")
    assert r.headers["content-type"] == "text/csv" and r.text == "a,b"
    assert (server.get("/returns.py/status").status, server.get("/returns.py/status").text) == (
        201, "created")
    assert server.get("/returns.py/server-return").status == 403

    # Without the option: extensionless URL, path_info, directory index, static files.
    r = server.get("/notes/42?note=x")
    assert json.loads(r.body) == {"method": "GET", "path_info": "/42", "note": "x"}, r.text
    assert json.loads(server.get("/notes.py").body)["path_info"] == ""
    assert server.get("/sub/").text == "index of sub"
    r = server.get("/static.txt")
    assert (r.status, r.text) == (200, "plain static file\n")
    for missing in ("/nothing.py", "/nothing", "/nothing/else", "/nohandler.py"):
        r = server.get(missing)
        assert r.status == 404, (missing, r.status, r.text)

    # With the option: every request in the section goes to the named class.
    assert server.get("/fixed/").text == "fixed "
    assert server.get("/fixed/app.py/any/where").text == "fixed /any/where"
    assert server.get("/fixed/no-such-file").status == 200  # still the section's target
    assert server.get("/fixed/app.py").text == "fixed "
    assert server.request("PUT", "/fixed/x", body="data").text == "put data"
    # A PythonHandler module moved over unchanged (bare module name, util.redirect).
    r = server.get("/legacy/")
    assert (r.status, r.text) == (200, "legacy GET")
    r = server.get("/legacy/any/away")  # Apache: filename .../any, path_info /away
    assert r.status in (302, 303) and r.headers["location"].endswith("/somewhere")


def test_methods_head_options_405(server: Httpd) -> None:
    assert server.post("/notes/1", {"note": "n"}).text == "posted n"
    assert server.request("DELETE", "/notes/1").status == 204
    get = server.get("/notes/1")
    head = server.request("HEAD", "/notes/1")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
    options = server.request("OPTIONS", "/notes/1")
    assert options.status == 200
    assert options.headers["allow"] == "GET, HEAD, POST, DELETE, OPTIONS"
    for method in ("PUT", "PATCH"):
        r = server.request(method, "/notes/1", body="x")
        assert r.status == 405, (method, r.status)
        assert r.headers["allow"] == "GET, HEAD, POST, DELETE, OPTIONS"
    assert server.request("OPTIONS", "/fixed/").headers["allow"] == "GET, HEAD, PUT, OPTIONS"


NOTE = "Grüße 日本語 ✓ & = ?"


def test_non_ascii_forms_and_upload(server: Httpd) -> None:
    by_get = json.loads(server.get("/echo.py?" + urlencode({"note": NOTE, "tag": "a"})
                                   + "&tag=b").body)
    assert by_get == {"note": NOTE, "tag": ["a", "b"]}
    by_post = json.loads(server.post("/echo.py", {"note": NOTE}).body)
    assert by_post == {"note": NOTE}

    upload = bytes(range(256)) * 64 + "Grüße".encode()
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n{NOTE}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"bericht-ä.bin\"\r\nContent-Type: application/x-raw\r\n\r\n"
    ).encode() + upload + f"\r\n--{boundary}--\r\n".encode()
    r = server.request("POST", "/echo.py?via=query", body=body,
                       headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert json.loads(r.body) == {
        "via": "query", "note": NOTE,
        "file": {"filename": "bericht-ä.bin", "type": "application/x-raw", "size": len(upload),
                 "sha256": hashlib.sha256(upload).hexdigest()},
    }, r.text
    bad = server.request("POST", "/echo.py", body=b"note=%FF",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status == 400 and "UTF-8" in bad.text
    assert server.get("/echo.py?note=" + quote(b"\xff")).status == 400


def test_httperror_redirect_and_error_pages(server: Httpd) -> None:
    r = server.get("/returns.py/httperror")
    assert r.status == 404 and "no such note" in r.text
    r = server.get("/returns.py/httperror", headers={"Accept": "application/json"})
    assert json.loads(r.body) == {"status": 404, "error": "Not Found", "message": "no such note"}
    r = server.get("/returns.py/redirect")
    assert r.status == 303 and r.headers["location"] == "/elsewhere?x=1"

    # Production: a short page with a reference id; the traceback only in the log.
    r = server.get("/returns.py/boom")
    assert r.status == 500
    assert "Traceback" not in r.text and "kaboom" not in r.text and "returns.py" not in r.text
    ref = re.search(r"Reference: <code>([0-9a-f]+)</code>", r.text).group(1)
    logged = [line for line in server.error_log().splitlines() if f"[{ref}]" in line]
    assert any("Traceback" in line for line in logged)
    assert any("RuntimeError: kaboom foo" in line for line in logged)

    # A module that cannot be imported: 500 with an id, the SyntaxError in the log.
    r = server.get("/broken.py")
    assert r.status == 500 and "SyntaxError" not in r.text
    ref = re.search(r"Reference: <code>([0-9a-f]+)</code>", r.text).group(1)
    assert "SyntaxError" in "".join(
        line for line in server.error_log().splitlines() if f"[{ref}]" in line)

    # PythonDebug On (for /debug only): the traceback is in the page, with the id.
    r = server.get("/debug/returns.py/boom")
    assert r.status == 500 and "Traceback" in r.text and "RuntimeError: kaboom foo" in r.text
    ref = re.search(r"Reference: <code>([0-9a-f]+)</code>", r.text).group(1)
    assert f"[{ref}]" in server.error_log()

    # DatabaseError: 503 and a reference; the host only in the log (and with
    # PythonDebug On in the page), the password nowhere.
    r = server.get("/returns.py/db")
    assert r.status == 503 and "database is not available" in r.text
    assert "db.example" not in r.text and "s3cretpw" not in r.text
    ref = re.search(r"Reference: <code>([0-9a-f]+)</code>", r.text).group(1)
    assert "db.example" in "".join(
        line for line in server.error_log().splitlines() if f"[{ref}]" in line)
    debug = server.get("/debug/returns.py/db").text
    assert "db.example" in debug and "s3cretpw" not in debug
    assert "s3cretpw" not in server.error_log()
