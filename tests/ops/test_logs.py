"""Application logging reaches Apache's error log, tagged and filtered, through real httpd.

A handler file logs with the standard ``logging`` module at every level, at
import and during requests; one directory has ``LogLevel warn``. The error log
must show each line with Apache's level and pid, the client, the logger's name
and the request's reference, the one its error page shows when it fails.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

APP = '''\
import logging, os, threading

log = logging.getLogger("myapp.orders")
log.warning("imported in %d", os.getpid())

def handler(req):
    worker = threading.Thread(target=log.warning, args=("from a thread (%s)", req.args))
    worker.start()
    worker.join()
    log.warning("stock low for %s (%s)", "widgets", req.args)
    log.info("order placed (%s)", req.args)
    log.debug("cart details (%s)", req.args)
    if req.args == "fail":
        log.error("about to fail")
        raise ValueError("boom")
    return str(os.getpid())
'''

# An application that configures logging itself, in an interpreter of its own.
OWN = '''\
import logging, os

logging.basicConfig(filename=os.path.join(os.path.dirname(__file__), "logs", "own.log"),
                    format="%(levelname)s %(name)s %(message)s")
log = logging.getLogger("ownapp")

def handler(req):
    log.warning("into my own file")
    return "ok"
'''


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    root = make_tempdir("modpy_safe-logs-")
    srv = Httpd(root, mpm="prefork", processes=1, loglevel="info",
                directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                files={"app.py": APP, "quiet/app.py": APP, "own/app.py": OWN})
    srv.path("own/logs").mkdir()
    os.chmod(srv.path("own/logs"), 0o777)
    srv.settings["extra"] = (
        f'<Directory "{srv.docroot}/quiet">\n    LogLevel warn\n</Directory>\n'
        f'<Directory "{srv.docroot}/own">\n    PythonInterpreter own\n</Directory>\n')
    with running(srv, request):
        yield srv


def _lines(server: Httpd, text: str) -> list[str]:
    return [line for line in server.error_log().splitlines() if text in line]


def test_application_records_carry_level_pid_logger_and_reference(server: Httpd) -> None:
    pid = int(server.get("/app.py?first").text)
    (warning,) = _lines(server, "stock low for widgets (first)")
    found = re.search(rf"\[:warn\] \[pid {pid}:tid \d+\] \[client 127\.0\.0\.1:\d+\] "
                      r"myapp\.orders: stock low for widgets \(first\) \[ref (\w+)\]$", warning)
    assert found, warning
    ref = found.group(1)
    (info,) = _lines(server, "order placed (first)")
    assert f"[:info] [pid {pid}:" in info and info.endswith(f"[ref {ref}]"), info
    # 'LogLevel info' shows info() but not debug().
    assert _lines(server, "cart details") == []
    # The import ran for this request, so it carries its reference.
    (imported,) = _lines(server, f"myapp.orders: imported in {pid}")
    assert imported.endswith(f"[ref {ref}]"), imported
    # Outside any request (another thread): through the main server, without one.
    (thread,) = _lines(server, "myapp.orders: from a thread (first)")
    assert f"[:warn] [pid {pid}:" in thread, thread
    assert "[ref" not in thread and "[client" not in thread, thread

    # The next request has its own reference.
    server.get("/app.py?second")
    (second,) = _lines(server, "stock low for widgets (second)")
    assert f"[ref {ref}]" not in second and "[ref " in second


def test_an_error_page_shows_the_reference_of_the_requests_log_lines(server: Httpd) -> None:
    page = server.get("/app.py?fail")
    assert page.status == 500
    shown = re.search(r"Reference: <code>(\w+)</code>", page.text)
    assert shown, page.text
    ref = shown.group(1)
    (line,) = _lines(server, "myapp.orders: about to fail")
    assert "[:error]" in line and line.endswith(f"[ref {ref}]")
    assert f"stock low for widgets (fail) [ref {ref}]" in server.error_log()
    # modpy_safe's own traceback of the failure carries the same id.
    assert any("ValueError: boom" in line for line in _lines(server, f"[{ref}]"))


def test_a_sections_loglevel_filters_its_requests(server: Httpd) -> None:
    assert server.get("/quiet/app.py?quiet").status == 200
    assert len(_lines(server, "stock low for widgets (quiet)")) == 1
    assert _lines(server, "order placed (quiet)") == []


def test_an_applications_own_logging_configuration_is_kept(server: Httpd) -> None:
    assert server.get("/own/app.py").text == "ok"
    assert (server.path("own/logs") / "own.log").read_text() == (
        "WARNING ownapp into my own file\n")
    assert _lines(server, "into my own file") == []
