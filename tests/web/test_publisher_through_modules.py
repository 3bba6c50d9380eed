"""Nothing reached through an imported module is published, through httpd.

A page that imports ``os`` must not answer ``/page.py/os/environ`` (the
server's environment) or ``/page.py/os/popen?cmd=...`` (a shell command):
modules are neither published nor traversed, whether the module is a name of
the page, an attribute of an object on the path, a sibling file the page
imported, or what a published function returns. Every such URL is 403 or 404,
runs nothing and shows nothing of the module.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

PAGE_PY = '''
import json
import os
import os.path
import sys
from os import path as ospath

import psycopg2

import helper  # a file beside the page, loaded by modpy_safe's importer


class Holder:
    def __init__(self):
        self.mod = os
        self.fine = "holder ok"


holder = Holder()


def index(req):
    return "page ok"


def gives_module(req):
    return os
'''

HELPER_PY = '''
import os

SECRET = "helper secret"


def run(cmd):
    return os.popen(cmd).read()
'''


@pytest.fixture(scope="module")
def site(request: Any) -> Iterator[tuple[Httpd, Path]]:
    """One httpd serving the page with modpy_safe.publisher; a directory its user can write."""
    root = make_tempdir("modpy_safe-pubmodules-")
    state = root / "state"
    state.mkdir()
    os.chmod(state, 0o777)  # a command run by httpd's User would leave its mark here
    server = Httpd(root, files={"page.py": PAGE_PY, "helper.py": HELPER_PY},
                   directory="SetHandler mod_python\nPythonHandler modpy_safe.publisher")
    with running(server, request):
        yield server, state


def touch(state: Path, name: str) -> str:
    """A shell command, as a query string value, that creates ``state/name``."""
    return f"touch%20{state}/{name}"


def module_paths(state: Path) -> list[str]:
    return [
        "/page.py/os",
        "/page.py/os/environ",
        "/page.py/os/environ/get?key=PATH",
        "/page.py/os/environ/copy",
        f"/page.py/os/popen?cmd={touch(state, 'popen')}",
        f"/page.py/os.popen?cmd={touch(state, 'dotted')}",
        f"/page.py/os/system?command={touch(state, 'system')}",
        "/page.py/os/getcwd",
        "/page.py/os/path/join?a=x",
        "/page.py/ospath/join?a=x",
        "/page.py/sys/modules",
        "/page.py/sys/exit",
        "/page.py/json/dumps?obj=x",
        "/page.py/psycopg2/connect?dsn=host=127.0.0.1",
        "/page.py/helper",
        "/page.py/helper/SECRET",
        f"/page.py/helper/run?cmd={touch(state, 'helper')}",
        "/page.py/holder/mod",
        "/page.py/holder/mod/environ",
        f"/page.py/holder/mod/popen?cmd={touch(state, 'holder')}",
        "/page.py/gives_module",
    ]


def test_the_page_itself_is_published(site: tuple[Httpd, Path]) -> None:
    """The page's own function and object answer: the refusals below are not a broken page."""
    server, _ = site
    for path, text in (("/page.py", "page ok"), ("/page.py/holder/fine", "holder ok")):
        answer = server.get(path)
        assert (answer.status, answer.text) == (200, text), answer.text[:300]


def test_nothing_reached_through_a_module_is_published(site: tuple[Httpd, Path]) -> None:
    """403/404 for every URL through a module; no command ran, no module content shown."""
    server, state = site
    answers = {path: server.get(path) for path in module_paths(state)}
    published = {path: (a.status, a.text[:120]) for path, a in answers.items()
                 if a.status not in (403, 404)}
    assert published == {}
    for path, answer in answers.items():
        for shown in ("/usr/bin", "helper secret", "<module", "environ({"):
            assert shown not in answer.text, (path, answer.text[:300])
    # The refusals were answered before any call: nothing was started to run later.
    assert sorted(os.listdir(state)) == []
