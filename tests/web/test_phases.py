"""Every phase before content through a real httpd: served, reloaded, and failing closed.

One server per MPM (prefork, event). The protected resource is a static file
whose bytes are a unique token; each refusing phase is made to raise, to raise
HTTPError(401) with and without a challenge, to redirect, to return nothing where
it must decide, to fail to import and to name a missing file. Each time the
answer must carry the status (and WWW-Authenticate / Location) and no byte of
the file. ``PythonPostReadRequestHandler`` and ``PythonTransHandler`` are
server-level directives: they run in a virtual host on a second port.
"""
from __future__ import annotations

import http.client
import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from modpy_safe.testing import Httpd, Response, free_port, make_tempdir, running

pytestmark = pytest.mark.httpd

SECRET = f"TOPSECRET-{uuid.uuid4().hex}\n"

GATE = '''\
import modpy_safe
from mod_python import apache

VERSION = 1

# What a phase answers when it lets the request through.
PASS = {"transhandler": apache.DECLINED, "typehandler": apache.DECLINED,
        "authenhandler": apache.OK, "authzhandler": apache.OK}


def _gate(req, name):
    req.headers_out.add("X-Phase", "%s:%d" % (name, VERSION))
    want = req.args or ""
    if want.startswith(name + "-"):
        kind = want[len(name) + 1:]
        if kind == "raise":
            raise RuntimeError("gate %s failed" % name)
        if kind == "401":
            raise modpy_safe.HTTPError(401, "who are you?",
                                       headers={"WWW-Authenticate": 'Basic realm="gate"'})
        if kind == "401bare":
            raise modpy_safe.HTTPError(401, "who are you?")
        if kind == "redirect":
            modpy_safe.redirect("/login?from=" + name)
        if kind == "none":
            return None
        if kind == "int403":
            return apache.HTTP_FORBIDDEN
    if name == "authenhandler":
        req.user = "gate"
    return PASS.get(name)


def postreadrequesthandler(req): return _gate(req, "postreadrequesthandler")
def transhandler(req): return _gate(req, "transhandler")
def headerparserhandler(req): return _gate(req, "headerparserhandler")
def inithandler(req): return _gate(req, "inithandler")
def accesshandler(req): return _gate(req, "accesshandler")
def authenhandler(req): return _gate(req, "authenhandler")
def authzhandler(req): return _gate(req, "authzhandler")
def typehandler(req): return _gate(req, "typehandler")
def fixuphandler(req): return _gate(req, "fixuphandler")


def loghandler(req):
    req.log_error("gate loghandler version %d for %s" % (VERSION, req.uri), apache.APLOG_NOTICE)


def cleanuphandler(req):
    req.log_error("gate cleanuphandler version %d for %s" % (VERSION, req.uri),
                  apache.APLOG_NOTICE)
'''

BROKEN = "def authenhandler(req)\n    return 0\n"  # a SyntaxError

# Two stacked authen handlers: DECLINED passes to the next, OK ends the phase.
STACK = '''\
from mod_python import apache


def first(req):
    req.headers_out.add("X-Stack", "first")
    if req.args == "first-decides":
        req.user = "first"
        return apache.OK
    return apache.DECLINED


def second(req):
    req.headers_out.add("X-Stack", "second")
    req.user = "second"
    return apache.OK
'''

# The old way to reach a phase: 'PythonAuthenHandler modpy_safe.dispatch::handler',
# one function branching on req.phase.
LEGACY = '''\
import modpy_safe


def handler(req):
    if req.phase == "PythonAuthenHandler":
        if req.args == "raise":
            raise RuntimeError("legacy authen failed")
        if req.args == "401":
            raise modpy_safe.HTTPError(401, "no")
        req.user = "legacy"
        return 0
    return "content"
'''

#: Phases run from a <Directory>. PythonTypeHandler is not among them: mod_mime (loaded
#: before mod_python, as on Debian) answers the type phase first, so it never runs.
DIRECTORY_PHASES = ("headerparserhandler", "accesshandler", "authenhandler", "authzhandler",
                    "fixuphandler")
#: Phases run from the server level, in the virtual host. mod_python runs
#: PythonInitHandler once, in post-read-request, with the server's configuration.
SERVER_PHASES = ("postreadrequesthandler", "inithandler", "transhandler")
DIRECTIVE = {name: "Python" + {"postreadrequesthandler": "PostReadRequest",
                               "transhandler": "Trans", "headerparserhandler": "HeaderParser",
                               "inithandler": "Init", "accesshandler": "Access",
                               "authenhandler": "Authen", "authzhandler": "Authz",
                               "fixuphandler": "Fixup",
                               "loghandler": "Log", "cleanuphandler": "Cleanup"}[name]
                      + "Handler" for name in DIRECTORY_PHASES + SERVER_PHASES
                      + ("loghandler", "cleanuphandler")}
#: Phases that decide with OK: returning None there is an error, not a pass.
DECISIVE = ("transhandler", "authenhandler", "authzhandler")
MODULES = "/usr/lib/apache2/modules"


def _auth_lines(phase: str) -> str:
    if phase not in ("authenhandler", "authzhandler"):
        return ""
    # Authorization runs only after authentication: an authz section needs both.
    return ('    AuthType Basic\n    AuthName "gate"\n    Require valid-user\n'
            "    PythonAuthenHandler modpy_safe.dispatch\n")


def _section(path: str, phase: str, options: dict[str, str]) -> str:
    lines = "".join(f'    PythonOption {k} "{v}"\n' for k, v in options.items())
    directive = "" if phase == "authenhandler" else f"    {DIRECTIVE[phase]} modpy_safe.dispatch\n"
    return f'<Directory "{path}">\n{_auth_lines(phase)}{directive}{lines}</Directory>\n'


def _config(docroot: str, port2: int) -> str:
    parts = [f"LoadModule authn_core_module {MODULES}/mod_authn_core.so\n"
             f"LoadModule authz_user_module {MODULES}/mod_authz_user.so\n"]
    for phase in DIRECTORY_PHASES:
        gate = {"modpy_safe.handler": "../gate.py"}
        parts.append(_section(f"{docroot}/p-{phase}", phase, gate))
        parts.append(_section(f"{docroot}/imp-{phase}", phase,
                              dict(gate, **{f"modpy_safe.{phase}": "../broken.py"})))
        parts.append(_section(f"{docroot}/missing-{phase}", phase,
                              dict(gate, **{f"modpy_safe.{phase}": "../nothere.py"})))
    parts.append(f'<Directory "{docroot}/legacy">\n    AuthType Basic\n    AuthName "legacy"\n'
                 "    Require valid-user\n    PythonAuthenHandler modpy_safe.dispatch::handler\n"
                 "    PythonOption modpy_safe.handler ../legacy.py\n</Directory>\n")
    parts.append(f'<Directory "{docroot}/stack">\n{_auth_lines("authenhandler")}'
                 '    PythonOption modpy_safe.authenhandler "../stack.py::first '
                 '../stack.py::second"\n</Directory>\n')
    every = "".join(f"    {DIRECTIVE[p]} modpy_safe.dispatch\n" for p in DIRECTIVE
                    if p not in SERVER_PHASES and p != "authenhandler")
    parts.append(f'<Directory "{docroot}/all">\n{_auth_lines("authenhandler")}{every}'
                 '    PythonOption modpy_safe.handler ../gate.py\n</Directory>\n')
    # The server-level phases, in a virtual host of their own.
    parts.append(
        f"Listen 127.0.0.1:{port2}\n<VirtualHost 127.0.0.1:{port2}>\n"
        f'    DocumentRoot "{docroot}"\n'
        "    PythonPostReadRequestHandler modpy_safe.dispatch\n"
        "    PythonInitHandler modpy_safe.dispatch\n"
        "    PythonTransHandler modpy_safe.dispatch\n"
        "    PythonOption modpy_safe.handler gate.py\n</VirtualHost>\n")
    return "".join(parts)


def _files() -> dict[str, str]:
    files = {"gate.py": GATE, "broken.py": BROKEN, "all/secret.txt": SECRET,
             "legacy.py": LEGACY, "legacy/secret.txt": SECRET,
             "stack.py": STACK, "stack/secret.txt": SECRET,
             "plain/secret.txt": SECRET}
    for phase in DIRECTORY_PHASES:
        for kind in ("p", "imp", "missing"):
            files[f"{kind}-{phase}/secret.txt"] = SECRET
    return files


@pytest.fixture(scope="module", params=["prefork", "event"])
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    """One httpd per MPM serving every phase section."""
    root = make_tempdir(f"modpy_safe-phases-{request.param}-")
    srv = Httpd(root, mpm=request.param, files=_files())
    srv.port2 = free_port()  # type: ignore[attr-defined]
    srv.settings["extra"] = _config(str(srv.docroot), srv.port2)  # type: ignore[attr-defined]
    with running(srv, request):
        yield srv


def _get(srv: Httpd, path: str, *, port: int | None = None, **headers: str) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port or srv.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        header_list = list(resp.getheaders())
        return Response(resp.status, {k.lower(): v for k, v in header_list}, body,
                        resp.reason, header_list)
    finally:
        conn.close()


def _versions(r: Response) -> set[str]:
    """Return the ``phase:VERSION`` marks the gate's phases left on the response."""
    return {v for k, v in r.header_list if k.lower() == "x-phase"}


def _wait(what: str, predicate: Callable[[], bool], tries: int = 100) -> None:
    """Poll ``predicate`` (bounded); raise naming ``what`` when it never holds."""
    for _ in range(tries):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} never happened after {tries} tries")


def _no_secret(r: Response) -> None:
    token = SECRET.strip().encode()
    assert token not in r.body, r.body[:300]
    assert all(SECRET.strip() not in v for _, v in r.header_list)
    # Not even part of it: the file is never opened for this answer.
    assert b"TOPSECRET" not in r.body


def _fetch(srv: Httpd, phase: str, query: str) -> Response:
    if phase in SERVER_PHASES:
        return _get(srv, f"/plain/secret.txt?{query}", port=srv.port2)  # type: ignore[attr-defined]
    return _get(srv, f"/p-{phase}/secret.txt?{query}")


@pytest.mark.parametrize("phase", SERVER_PHASES + DIRECTORY_PHASES)
def test_phase_passes_then_refuses_closed(server: Httpd, phase: str) -> None:
    ok = _fetch(server, phase, "nothing")
    assert ok.status == 200 and ok.body == SECRET.encode(), (ok.status, ok.body[:200])
    assert f"{phase}:1" in _versions(ok)

    # An exception: 500 with a reference, the traceback in the log only.
    r = _fetch(server, phase, f"{phase}-raise")
    assert r.status == 500, (r.status, r.body[:300])
    _no_secret(r)
    ref = re.search(rb"Reference: <code>([0-9a-f]+)</code>", r.body).group(1).decode()
    assert b"gate" not in r.body and b"Traceback" not in r.body
    assert f"RuntimeError: gate {phase} failed" in "".join(
        line for line in server.error_log().splitlines() if f"[{ref}]" in line)

    # HTTPError(401) keeps its challenge.
    r = _fetch(server, phase, f"{phase}-401")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="gate"'
    assert b"who are you?" in r.body
    _no_secret(r)

    # A redirect keeps its Location.
    r = _fetch(server, phase, f"{phase}-redirect")
    assert r.status == 303 and r.header("location") == f"/login?from={phase}"
    _no_secret(r)

    # A status returned the mod_python way: Apache's own page.
    r = _fetch(server, phase, f"{phase}-int403")
    assert r.status == 403
    _no_secret(r)

    # None where OK decides is an error; elsewhere it lets the request through.
    r = _fetch(server, phase, f"{phase}-none")
    if phase in DECISIVE:
        assert r.status == 500
        _no_secret(r)
    else:
        assert r.status == 200 and r.body == SECRET.encode()


def test_401_without_header_gets_the_sections_challenge(server: Httpd) -> None:
    r = _get(server, "/p-authenhandler/secret.txt?authenhandler-401bare")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="gate"'
    _no_secret(r)


@pytest.mark.parametrize("phase", DIRECTORY_PHASES)
@pytest.mark.parametrize("kind", ["imp", "missing"])
def test_failed_import_and_missing_file_refuse(server: Httpd, phase: str, kind: str) -> None:
    r = _get(server, f"/{kind}-{phase}/secret.txt")
    assert r.status == 500, (r.status, r.body[:300])
    _no_secret(r)
    ref = re.search(rb"Reference: <code>([0-9a-f]+)</code>", r.body).group(1).decode()
    logged = "".join(line for line in server.error_log().splitlines() if f"[{ref}]" in line)
    assert ("SyntaxError" if kind == "imp" else "nothere.py") in logged
    assert b"broken.py" not in r.body and b"nothere" not in r.body


def test_every_phase_is_served_and_reloaded(server: Httpd) -> None:
    expected = {f"{p}:1" for p in DIRECTORY_PHASES}
    r = _get(server, "/all/secret.txt")
    assert r.status == 200 and r.body == SECRET.encode()
    assert expected <= _versions(r), _versions(r)
    _wait("the log handler's version 1", lambda: "gate loghandler version 1 for "
          "/all/secret.txt" in server.error_log())
    r = _get(server, "/plain/secret.txt", port=server.port2)  # type: ignore[attr-defined]
    assert {f"{p}:1" for p in SERVER_PHASES} <= _versions(r)

    server.write("gate.py", GATE.replace("VERSION = 1", "VERSION = 2"))
    wanted = {v.replace(":1", ":2") for v in expected}
    _wait("version 2 in every phase",
          lambda: wanted <= _versions(_get(server, "/all/secret.txt")))
    _wait("the log handler's version 2", lambda: "gate loghandler version 2 for "
          "/all/secret.txt" in server.error_log())
    _wait("the cleanup handler's version 2", lambda: "gate cleanuphandler version 2 for "
          "/all/secret.txt" in server.error_log())
    r = _get(server, "/plain/secret.txt", port=server.port2)  # type: ignore[attr-defined]
    assert {f"{p}:2" for p in SERVER_PHASES} <= _versions(r)


def test_dispatch_handler_named_for_another_phase_fails_closed(server: Httpd) -> None:
    assert _get(server, "/legacy/secret.txt").body == SECRET.encode()
    r = _get(server, "/legacy/secret.txt?raise")
    assert r.status == 500
    _no_secret(r)
    r = _get(server, "/legacy/secret.txt?401")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="legacy"'
    _no_secret(r)


def test_stacked_handlers_follow_the_phases_return_codes(server: Httpd) -> None:
    def stack(r: Response) -> list[str]:
        return [v for k, v in r.header_list if k.lower() == "x-stack"]

    r = _get(server, "/stack/secret.txt")
    assert r.status == 200 and stack(r) == ["first", "second"]  # DECLINED: the next one runs
    r = _get(server, "/stack/secret.txt?first-decides")
    assert r.status == 200 and stack(r) == ["first"]  # OK ends an authen phase
