"""Each configuration gets its own plan, through a real httpd.

The dispatcher and the publisher keep one plan per configuration, keyed on
what mod_python hands each request: the option table, the directive table
and the section that named the handler. Sections below share the one
``PythonHandler modpy_safe.dispatch`` of the document root (so ``req.hlist``
is the same for all of them) and differ only in their options, or only in
``PythonDebug``: each must be served by its own plan, whatever order the
requests come in.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

APP = '''\
def one(req):
    return "one"

def two(req):
    return "two"

def boom(req):
    raise RuntimeError("kaboom")
'''

PAGE = '''\
def index(req):
    return "page"

def boom(req):
    raise RuntimeError("kaboom")
'''


@pytest.fixture(scope="module", params=["prefork", "event"])
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    root = make_tempdir(f"modpy_safe-plan-{request.param}-")
    srv = Httpd(root, mpm=request.param, processes=1,
                directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                files={"app/app.py": APP, "pub/page.py": PAGE, "pubdebug/page.py": PAGE})
    docroot = srv.docroot
    for name, body in (
        ("one", "PythonOption modpy_safe.handler app/app.py::one"),
        ("two", "PythonOption modpy_safe.handler app/app.py::two"),
        ("quiet", "PythonOption modpy_safe.handler app/app.py::boom"),
        ("loud", "PythonOption modpy_safe.handler app/app.py::boom\n    PythonDebug On"),
        ("pub", "PythonHandler modpy_safe.publisher"),
        ("pubdebug", "PythonHandler modpy_safe.publisher\n    PythonDebug On"),
    ):
        srv.write(f"{name}/.keep", "")
        srv.add_config(f'<Directory "{docroot}/{name}">\n    {body}\n</Directory>\n')
    with running(srv, request) as started:
        yield started


def test_sections_that_differ_only_in_options_get_their_own_targets(server: Httpd) -> None:
    for _ in range(3):  # interleaved, so a plan cached for one is asked for the other
        assert server.get("/one/").text == "one"
        assert server.get("/two/x").text == "two"


def test_sections_that_differ_only_in_pythondebug_answer_each_their_way(server: Httpd) -> None:
    for _ in range(2):
        quiet = server.get("/quiet/")
        assert quiet.status == 500 and "Traceback" not in quiet.text, quiet.text
        loud = server.get("/loud/")
        assert loud.status == 500 and "RuntimeError: kaboom" in loud.text, loud.text


def test_publisher_plans_follow_the_configuration_too(server: Httpd) -> None:
    for _ in range(2):
        assert server.get("/pub/page.py").text == "page"
        quiet = server.get("/pub/page.py/boom")
        assert quiet.status == 500 and "Traceback" not in quiet.text, quiet.text
        loud = server.get("/pubdebug/page.py/boom")
        assert loud.status == 500 and "RuntimeError: kaboom" in loud.text, loud.text
