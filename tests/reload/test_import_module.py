"""``apache.import_module`` from a dispatched handler goes through the safe importer.

Through a real httpd (prefork, event): a helper imported with mod_python 3.3's
call is found beside the handler, reloaded when edited (and its importer with
it), keyed by its file so ``path=`` never returns a same-named module from
another directory; ``~/`` is the handler root; ``mod_python.importer.path`` and
``modpy_safe.reload.path`` are searched; ``__mp_path__`` is set; a name found only
on ``sys.path`` is Python's own module.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

APP = '''\
import json
import os
from mod_python import apache

helper = apache.import_module("helper")
import helper as imported_helper  # the import statement: the same module, not a second copy
HERE = os.path.dirname(__file__)


def handler(req):
    kind = req.path_info.strip("/")
    if kind == "helper":
        return helper.VALUE
    if kind == "late":
        return apache.import_module("late").VALUE
    if kind == "same":
        return apache.import_module("same").WHERE
    if kind == "same-other":
        other = os.path.join(os.path.dirname(HERE), "other")
        return apache.import_module("same", path=[other]).WHERE
    if kind == "home":
        return apache.import_module("~/lib/tool").WHERE
    if kind == "option":
        return apache.import_module("shared").WHERE + " " + apache.import_module("two").WHERE
    if kind == "mp-path":
        return {"app": __mp_path__, "helper": helper.__mp_path__}
    if kind == "one-copy":
        return str(imported_helper is helper)
    if kind == "stdlib":
        return str(apache.import_module("json") is json)
    if kind == "missing":
        return apache.import_module("./nothere").VALUE
    return "?"
'''


@pytest.fixture(scope="module", params=["prefork", "event"])
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    """One httpd per MPM whose handler imports its helpers the mod_python 3.3 way."""
    root = make_tempdir(f"modpy_safe-import-module-{request.param}-")
    srv = Httpd(root, mpm=request.param, files={
        "app/app.py": APP,
        "app/helper.py": 'VALUE = "helper 1"\n',
        "app/late.py": 'VALUE = "late 1"\n',
        "app/same.py": 'WHERE = "app"\n',
        "other/same.py": 'WHERE = "other"\n',
        "app/lib/tool.py": 'WHERE = "tool in ~/lib"\n',
        "app/shared/shared.py": 'WHERE = "shared"\n',
        "app/lib2/two.py": 'WHERE = "two"\n',
    })
    srv.settings["extra"] = (
        f'<Directory "{srv.docroot}/app">\n    SetHandler mod_python\n'
        "    PythonHandler modpy_safe.dispatch\n"
        "    PythonOption modpy_safe.handler app.py\n"
        "    PythonOption mod_python.importer.path \"['~/shared']\"\n"
        "    PythonOption modpy_safe.reload.path ~/lib2\n</Directory>\n")
    with running(srv, request):
        yield srv


def test_helper_is_found_and_reloaded_when_edited(server: Httpd) -> None:
    assert server.get("/app/x/helper").text == "helper 1"
    server.write("app/helper.py", 'VALUE = "helper 2"\n')
    server.wait_for("/app/x/helper", lambda r: r.text == "helper 2")


def test_import_at_request_time_is_reloaded_too(server: Httpd) -> None:
    assert server.get("/app/x/late").text == "late 1"
    server.write("app/late.py", 'VALUE = "late 2"\n')
    server.wait_for("/app/x/late", lambda r: r.text == "late 2")


def test_path_never_returns_a_same_named_file_from_elsewhere(server: Httpd) -> None:
    # Both orders, many times: each request may land on a process that has the other loaded.
    for _ in range(3):
        assert server.get("/app/x/same").text == "app"
        assert server.get("/app/x/same-other").text == "other"


def test_handler_root_and_search_options(server: Httpd) -> None:
    assert server.get("/app/x/home").text == "tool in ~/lib"
    assert server.get("/app/x/option").text == "shared two"


def test_modules_carry_mp_path(server: Httpd) -> None:
    paths = server.get("/app/x/mp-path").json()
    app_dir = str(server.docroot / "app")
    expected = [app_dir, f"{app_dir}/lib2", f"{app_dir}/shared"]
    assert paths["app"] == expected
    assert paths["helper"] == expected


def test_names_only_on_sys_path_are_left_to_python(server: Httpd) -> None:
    assert server.get("/app/x/stdlib").text == "True"


def test_missing_explicit_file_is_an_error(server: Httpd) -> None:
    r = server.get("/app/x/missing")
    assert r.status == 500 and "nothere" not in r.text


def test_import_statement_and_import_module_share_one_module(server: Httpd) -> None:
    assert server.get("/app/x/one-copy").text == "True"
