"""An option that names a handler file which does not exist: named once in the log.

``PythonOption modpy_safe.handler`` (or a per-phase option such as
``modpy_safe.authenhandler``) naming a missing file is a configuration error:
the error log says which option, in which section, names which path, once per
process; the client gets a 404 for the content (500 for a phase before it,
which fails closed) with a reference, and the details only with
``PythonDebug On``. A URL that names no page stays a plain 404, unlogged.
"""
from __future__ import annotations

import re
from typing import Any

import pytest

pytestmark = pytest.mark.httpd

MODULES = "/usr/lib/apache2/modules"
PAGE = 'def handler(req):\n    return "here now"\n'
GATE = "def authenhandler(req):\n    return 0\n"


def _server(httpd: Any, *, debug: bool) -> Any:
    server = httpd("worker", processes=1, threads=4, debug=debug, start=False,
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                   files={"routed/exists.py": PAGE, "guarded/secret.txt": "secret",
                          "fixed/readme.txt": "the section needs its directory"})
    docroot = server.docroot
    server.settings["extra"] = (
        f"LoadModule authn_core_module {MODULES}/mod_authn_core.so\n"
        f"LoadModule authz_user_module {MODULES}/mod_authz_user.so\n"
        f'<Directory "{docroot}/fixed">\n'
        "    SetHandler mod_python\n    PythonHandler modpy_safe.dispatch\n"
        "    PythonOption modpy_safe.handler nothere.py\n"
        "</Directory>\n"
        f'<Directory "{docroot}/guarded">\n'
        "    SetHandler default-handler\n"
        "    AuthType Basic\n    AuthName gate\n    Require valid-user\n"
        "    PythonAuthenHandler modpy_safe.dispatch\n"
        "    PythonOption modpy_safe.authenhandler ../gate_missing.py\n"
        "</Directory>\n")
    return server.start()


def _reference(body: bytes) -> str:
    found = re.search(rb"Reference: <code>([0-9a-f]+)</code>", body)
    assert found, body[:500]
    return found.group(1).decode()


def test_the_log_names_option_section_and_path_once(httpd: Any) -> None:
    server = _server(httpd, debug=False)
    missing = f"{server.docroot}/fixed/nothere.py"
    answers = [server.get("/fixed/page") for _ in range(3)]
    assert [r.status for r in answers] == [404, 404, 404]
    for r in answers:
        assert b"nothere" not in r.body and b"Directory" not in r.body  # details: log only
        assert b"There is no page at this address." in r.body
    log = server.error_log()
    told = (f"PythonOption modpy_safe.handler names {missing}, which does not exist (for "
            f'the handler declared in <Directory "{server.docroot}/fixed/">)')
    assert log.count(told) == 1, log[-3000:]
    first = _reference(answers[0].body)
    assert any(f"[{first}]" in line and told in line for line in log.splitlines())
    later = [line for line in log.splitlines() if f"[{_reference(answers[2].body)}]" in line]
    assert later and "still missing" in later[0], later

    server.write("fixed/nothere.py", PAGE)  # fixed: served at once, nothing cached
    assert server.wait_for("/fixed/page", lambda r: r.status == 200).text == "here now"


def test_a_per_phase_option_is_named_and_the_phase_fails_closed(httpd: Any) -> None:
    server = _server(httpd, debug=False)
    r = server.get("/guarded/secret.txt")
    assert r.status == 500 and b"secret" not in r.body
    log = server.error_log()
    assert log.count(f"PythonOption modpy_safe.authenhandler names {server.docroot}/"
                     "gate_missing.py, which does not exist (for the handler declared in "
                     f'<Directory "{server.docroot}/guarded/">)') == 1, log[-3000:]


def test_with_python_debug_the_page_says_it_too(httpd: Any) -> None:
    server = _server(httpd, debug=True)
    r = server.get("/fixed/page")
    assert r.status == 404
    assert (f"PythonOption modpy_safe.handler names {server.docroot}/fixed/nothere.py, which "
            "does not exist (for the handler declared in &lt;Directory "
            f"&quot;{server.docroot}/fixed/&quot;&gt;)") in r.text, r.text


def test_a_url_that_names_no_page_stays_a_404(httpd: Any) -> None:
    server = _server(httpd, debug=False)
    assert server.get("/routed/exists.py").text == "here now"
    for path in ("/routed/absent.py", "/routed/absent"):
        r = server.get(path)
        assert r.status == 404, (path, r.status, r.text[:300])
    assert "does not exist" not in server.error_log()
