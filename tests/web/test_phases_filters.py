"""PythonOutputFilter / PythonInputFilter modpy_safe.dispatch through a real httpd.

A filter's file is loaded and reloaded like a handler's; its options come from
``filter.req.get_options()``; a filter that fails never lets the unfiltered
data through in its place (mod_python would pass it on as it is).
"""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

FILTERS = '''\
VERSION = 1


def outputfilter(filter):
    data = filter.read()
    while data:
        filter.write(data.upper())
        data = filter.read()
    if data is None:
        filter.write(b"[v%d]" % VERSION)
        filter.close()


def lower(filter):
    data = filter.read()
    while data:
        filter.write(data.lower())
        data = filter.read()
    if data is None:
        filter.close()


def inputfilter(filter):
    data = filter.read()
    while data:
        filter.write(data[::-1])
        data = filter.read()
    if data is None:
        filter.close()
'''

BAD_FILTER = '''\
def outputfilter(filter):
    filter.read()
    raise RuntimeError("the filter broke")
'''

# Fails on its second call, when the first part has gone to the client already.
LATE_FILTER = '''\
def outputfilter(filter):
    calls = getattr(filter.req, "filter_calls", 0)
    filter.req.filter_calls = calls + 1
    if calls == 1:
        raise RuntimeError("the filter broke late")
    data = filter.read()
    while data:
        filter.write(data.upper())
        data = filter.read()
    if data is None:
        filter.close()
'''

TWO_PARTS = '''\
def handler(req):
    req.content_type = "text/plain"
    req.write("first part, ")  # flushed: the filter is called once per part
    req.write("private second part")
'''

ECHO = '''\
def handler(req):
    return req.read()
'''

SECRET = "Private text that only the filter's output may show\n"


def _config(docroot: str) -> str:
    return (
        f'<Directory "{docroot}/out">\n'
        "    PythonOutputFilter modpy_safe.dispatch UPPER\n"
        "    SetOutputFilter UPPER\n"
        "    PythonOption modpy_safe.handler ../filters.py\n</Directory>\n"
        f'<Directory "{docroot}/named">\n'
        "    PythonOutputFilter modpy_safe.dispatch LOWER\n"
        "    SetOutputFilter LOWER\n"
        "    PythonOption modpy_safe.outputfilter.LOWER ../filters.py::lower\n</Directory>\n"
        f'<Directory "{docroot}/bad">\n'
        "    PythonOutputFilter modpy_safe.dispatch BAD\n"
        "    SetOutputFilter BAD\n"
        "    PythonOption modpy_safe.outputfilter ../badfilter.py\n</Directory>\n"
        f'<Directory "{docroot}/late">\n'
        "    SetHandler mod_python\n"
        "    PythonHandler modpy_safe.dispatch\n"
        "    PythonOutputFilter modpy_safe.dispatch LATE\n"
        "    SetOutputFilter LATE\n"
        "    PythonOption modpy_safe.handler two_parts.py\n"
        "    PythonOption modpy_safe.outputfilter ../latefilter.py\n</Directory>\n"
        f'<Directory "{docroot}/in">\n'
        "    SetHandler mod_python\n"
        "    PythonHandler modpy_safe.dispatch\n"
        "    PythonInputFilter modpy_safe.dispatch REVERSE\n"
        "    SetInputFilter REVERSE\n"
        "    PythonOption modpy_safe.handler echo.py\n"
        "    PythonOption modpy_safe.inputfilter ../filters.py\n</Directory>\n"
    )


@pytest.fixture(scope="module", params=["prefork", "event"])
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    """One httpd per MPM with an output filter, a named one, a broken one and an input one."""
    root = make_tempdir(f"modpy_safe-filters-{request.param}-")
    srv = Httpd(root, mpm=request.param, files={
        "filters.py": FILTERS, "badfilter.py": BAD_FILTER, "in/echo.py": ECHO,
        "out/page.txt": "Hello, Filter\n", "named/page.txt": "Hello, Filter\n",
        "bad/secret.txt": SECRET, "latefilter.py": LATE_FILTER,
        "late/two_parts.py": TWO_PARTS})
    srv.settings["extra"] = _config(str(srv.docroot))
    with running(srv, request):
        yield srv


def test_output_filter_is_served_and_reloaded(server: Httpd) -> None:
    r = server.get("/out/page.txt")
    assert (r.status, r.body) == (200, b"HELLO, FILTER\n[v1]")
    server.write("filters.py", FILTERS.replace("VERSION = 1", "VERSION = 2"))
    r = server.wait_for("/out/page.txt", lambda r: r.body.endswith(b"[v2]"))
    assert r.body == b"HELLO, FILTER\n[v2]"


def test_filter_named_by_its_own_option(server: Httpd) -> None:
    assert server.get("/named/page.txt").body == b"hello, filter\n"


def test_input_filter_reaches_the_handler(server: Httpd) -> None:
    r = server.post("/in/echo.py", b"abc123")
    assert (r.status, r.body) == (200, b"321cba")


def test_failing_output_filter_never_passes_the_data_through(server: Httpd) -> None:
    r = server.get("/bad/secret.txt")
    assert r.status == 500
    assert b"Private text" not in r.body and b"PRIVATE" not in r.body
    ref = re.search(rb"Reference: <code>([0-9a-f]+)</code>", r.body).group(1).decode()
    assert "RuntimeError: the filter broke" in "".join(
        line for line in server.error_log().splitlines() if f"[{ref}]" in line)


def test_filter_failing_later_ends_the_body_where_it_stands(server: Httpd) -> None:
    r = server.get("/late/x")
    assert r.status == 200 and r.body.startswith(b"FIRST PART, "), r.body
    assert b"second" not in r.body.lower()
    assert "RuntimeError: the filter broke late" in server.error_log()
