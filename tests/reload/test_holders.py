"""Every ordinary way of holding a connection, edited 10 times through real httpd.

Each scenario is one fixture file in ``holders/`` (its docstring says what it
covers). A server per configuration serves them all, each with its own
``application_name``. For every scenario: load it, then 10 edits with a request
after each; the server's connections for that scenario are counted in
``pg_stat_activity`` after every request and must stay at the scenario's
steady value (one connection per process, or a pool's size). When httpd stops,
every scenario is back to 0. Nothing here asks the garbage collector for help.

All scenarios run under dispatch with event and prefork; publisher and worker
run a representative subset, to keep the matrix affordable on two cores.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

HOLDERS = Path(__file__).parent / "holders"

#: Scenario -> the file edited (default: the scenario's own file).
EDITED = {"helper_module": "helper_module_lib", "helper_wrapper": "helper_wrapper_lib"}
#: Scenario -> its connections once loaded (default 1), and after the first edit.
STEADY = {"psycopg2_pool": 2, "pool_psycopg3": 2}
AFTER_EDIT = {"deleted_variable": 0}
#: Scenario -> how many "closed ..." lines its 10 edits log (default: one per edit).
CLOSES = {"guarded": 0, "database_object": 0, "deleted_variable": 1}

ALL = sorted(p.stem for p in HOLDERS.glob("*.py") if not p.stem.endswith("_lib"))
SUBSET = ["top_level", "singleton_wrapper", "dict_per_thread", "threading_local",
          "lru_cache_factory", "cursor_only", "sqlalchemy_engine", "pool_psycopg3",
          "renamed_variable", "helper_wrapper"]
CONFIGS = {
    ("dispatch", "event"): ALL,
    ("dispatch", "prefork"): ALL,
    ("dispatch", "worker"): SUBSET,
    ("publisher", "prefork"): SUBSET,
    ("publisher", "event"): SUBSET,
}
# A closed connection's backend leaves pg_stat_activity within a few polls; a
# count still wrong after 3 s is a leak (and a leaking run should not take long).
TRIES = 60
DIRECTORY = {"dispatch": "SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
             "publisher": "SetHandler mod_python\nPythonHandler modpy_safe.publisher"}


def render(name: str, dsn: str, version: int) -> str:
    """The fixture file ``name`` as version ``version``, connecting with ``dsn``."""
    text = (HOLDERS / f"{name}.py").read_text()
    lines = []
    for line in text.splitlines():
        if line.endswith("# first version only") and version:
            continue
        if line.endswith("# later versions only") and not version:
            continue
        lines.append(line)
    text = "\n".join(lines) + "\n"
    assert "VERSION = 0\n" in text or "DSN" not in text
    return text.replace('"__DSN__"', repr(dsn)).replace("VERSION = 0\n", f"VERSION = {version}\n")


def application(scenario: str, config: tuple[str, str]) -> str:
    handler, mpm = config
    return f"h_{scenario}_{handler[:3]}_{mpm[:3]}"


class Sites:
    """One httpd (one process) per configuration, serving every scenario's files.

    Started on first use; starting one stops the one before, so a single test
    server runs at a time.
    """

    def __init__(self, request: Any, postgres: Any) -> None:
        self._request = request
        self._postgres = postgres
        self._stack = contextlib.ExitStack()
        self._config: tuple[str, str] | None = None
        self._server: Httpd | None = None

    def get(self, config: tuple[str, str]) -> Httpd:
        if config != self._config:
            self.close()
            handler, mpm = config
            root = make_tempdir(f"modpy_safe-holders-{handler}-{mpm}-")
            files = {}
            for scenario in CONFIGS[config]:
                dsn = self._postgres.dsn_for(application(scenario, config))
                for name in {scenario, EDITED.get(scenario, scenario)}:
                    files[f"{name}.py"] = render(name, dsn, 0)
            server = Httpd(root, mpm=mpm, directory=DIRECTORY[handler], processes=1,
                           files=files, options={"modpy_safe.reload.interval": "0"})
            self._server = self._stack.enter_context(running(server, self._request))
            self._config = config
        assert self._server is not None
        return self._server

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._config = self._server = None


@pytest.fixture(scope="module")
def sites(request: Any, postgres: Any) -> Iterator[Sites]:
    found = Sites(request, postgres)
    try:
        yield found
    finally:
        found.close()


def answer(server: Httpd, scenario: str) -> dict[str, int]:
    response = server.get(f"/{scenario}.py")
    assert response.status == 200, f"{response.status}: {response.text[:2000]}"
    words = response.text.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


STOP = "httpd_stops"


def cases() -> list[Any]:
    """Every scenario of a configuration, then its server's stop, configuration by configuration."""
    return [pytest.param(config, step, id=f"{'-'.join(config)}-{step}")
            for config in sorted(CONFIGS) for step in [*CONFIGS[config], STOP]]


@pytest.mark.parametrize(("config", "step"), cases())
def test_connections_stay_steady_over_ten_edits_and_end_with_httpd(sites, config, step,
                                                                   postgres):
    server = sites.get(config)
    if step == STOP:
        server.stop()
        left = {scenario: postgres.settled_count(application(scenario, config), expected=0,
                                                 tries=TRIES)
                for scenario in CONFIGS[config]}
        assert left == dict.fromkeys(left, 0)
        return
    scenario = step
    app = application(scenario, config)
    dsn = postgres.dsn_for(app)
    edited = EDITED.get(scenario, scenario)
    assert answer(server, scenario)["version"] == 0
    steady = STEADY.get(scenario, 1)
    counts = [postgres.settled_count(app, expected=steady, tries=TRIES)]
    for version in range(1, 11):
        server.write(f"{edited}.py", render(edited, dsn, version))
        assert answer(server, scenario)["version"] == version
        steady = AFTER_EDIT.get(scenario, steady)
        counts.append(postgres.settled_count(app, expected=steady, tries=TRIES))
    assert counts == [STEADY.get(scenario, 1)] + [steady] * 10, counts
    closed = re.findall(rf"closed .* left by generation \d+ of \S+/{edited}\.py",
                        server.error_log())
    assert len(closed) == CLOSES.get(scenario, 10), closed
