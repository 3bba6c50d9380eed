"""What clients see of errors through a real httpd: a status and a reference, nothing more.

With ``PythonDebug Off`` a 503 (database down) or 500 page carries no host,
port, DSN or advice meant for the operator, in the content phase and in a
phase before content alike; the detail is in the error log under the page's
reference. With ``PythonDebug On`` the page shows it. The publisher part:
nested ``__auth__`` / ``__access__`` written as literal dicts, lists and tuples
protect their page, and one computed at run time refuses it with a plain 500.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest

from modpy_safe.testing import Httpd, free_port, make_tempdir, running

pytestmark = pytest.mark.httpd

DEAD_PORT = free_port()  # nothing listens there: connecting fails at once
DSN = f"host=127.0.0.1 port={DEAD_PORT} dbname=orders user=shop password=Sh0pSecret"

APP = f'''\
import modpy_safe

db = modpy_safe.Database({DSN!r}, name="orders", mode="per-request")


def handler(req):
    with db.connection() as conn:
        return "never"


def accesshandler(req):
    with db.connection() as conn:
        return None
'''

PAGES = '''\
def literal(req):
    __auth__ = {"spam": "eggs", "ham": "jam"}
    __access__ = ["spam"]
    __auth_realm__ = "shop"
    return "literal ok"


def as_tuple(req):
    __access__ = ("ham",)
    __auth__ = {"spam": "eggs", "ham": "jam"}
    return "tuple ok"


def computed(req):
    users = {"spam": "eggs"}
    __auth__ = dict(users)
    return "must not be served"
'''


@pytest.fixture(scope="module", params=["prefork", "event"])
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    """One httpd per MPM: a database that is down, with and without PythonDebug."""
    root = make_tempdir(f"modpy_safe-errors-{request.param}-")
    srv = Httpd(root, mpm=request.param, files={
        "app/app.py": APP, "gate/secret.txt": "SECRET BYTES\n", "debug/app.py": APP,
        "pub/pages.py": PAGES})
    docroot = srv.docroot
    srv.settings["extra"] = (
        f'<Directory "{docroot}/app">\n    SetHandler mod_python\n'
        "    PythonHandler modpy_safe.dispatch\n"
        "    PythonOption modpy_safe.handler app.py\n</Directory>\n"
        f'<Directory "{docroot}/debug">\n    SetHandler mod_python\n    PythonDebug On\n'
        "    PythonHandler modpy_safe.dispatch\n"
        "    PythonOption modpy_safe.handler app.py\n</Directory>\n"
        f'<Directory "{docroot}/gate">\n    PythonAccessHandler modpy_safe.dispatch\n'
        "    PythonOption modpy_safe.handler ../app/app.py\n</Directory>\n"
        f'<Directory "{docroot}/pub">\n    SetHandler mod_python\n'
        "    PythonHandler modpy_safe.publisher\n</Directory>\n")
    with running(srv, request):
        yield srv


def _reference(body: bytes) -> str:
    found = re.search(rb"Reference: <code>([0-9a-f]+)</code>", body)
    assert found, body[:400]
    return found.group(1).decode()


def _logged(server: Httpd, reference: str) -> str:
    return "\n".join(line for line in server.error_log().splitlines() if f"[{reference}]" in line)


OPERATOR_ONLY = ("127.0.0.1", str(DEAD_PORT), "orders", "dbname", "shop", "Sh0pSecret",
                 "pool_max", "PythonOption", "Traceback", "app.py")


@pytest.mark.parametrize("path", ["/app/x", "/gate/secret.txt"])
def test_503_page_tells_the_client_nothing_an_operator_keeps(server: Httpd, path: str) -> None:
    r = server.get(path)
    assert r.status == 503, (r.status, r.body[:300])
    for secret in OPERATOR_ONLY:
        assert secret not in r.text, secret
    assert "SECRET BYTES" not in r.text
    logged = _logged(server, _reference(r.body))
    assert f"port={DEAD_PORT}" in logged or str(DEAD_PORT) in logged
    assert "Sh0pSecret" not in server.error_log()


def test_503_page_with_python_debug_on_shows_the_detail(server: Httpd) -> None:
    r = server.get("/debug/x")
    assert r.status == 503 and str(DEAD_PORT) in r.text and "Traceback" in r.text
    assert "Sh0pSecret" not in r.text


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_nested_literal_auth_protects_its_page(server: Httpd) -> None:
    r = server.get("/pub/pages.py/literal")
    assert r.status == 401 and r.header("www-authenticate") == 'Basic realm="shop"'
    assert server.get("/pub/pages.py/literal", headers=_basic("spam", "nope")).status == 401
    assert server.get("/pub/pages.py/literal", headers=_basic("ham", "jam")).status == 403
    r = server.get("/pub/pages.py/literal", headers=_basic("spam", "eggs"))
    assert (r.status, r.text) == (200, "literal ok")
    assert server.get("/pub/pages.py/as_tuple", headers=_basic("spam", "eggs")).status == 403
    assert server.get("/pub/pages.py/as_tuple", headers=_basic("ham", "jam")).text == "tuple ok"


def test_computed_nested_auth_refuses_with_a_plain_500(server: Httpd) -> None:
    r = server.get("/pub/pages.py/computed", headers=_basic("spam", "eggs"))
    assert r.status == 500 and "must not be served" not in r.text
    assert "computed" not in r.text and "__auth__" not in r.text
    assert "value computed at run time" in _logged(server, _reference(r.body))
