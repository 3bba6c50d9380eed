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


def application(scenario: str, handler: str, mpm: str) -> str:
    return f"h_{scenario}_{handler[:3]}_{mpm[:3]}"


@pytest.fixture(scope="module", params=sorted(CONFIGS), ids="-".join)
def site(request: Any, postgres: Any) -> Iterator[tuple[Httpd, str, str]]:
    """One httpd (one process) per configuration serving every scenario's files."""
    handler, mpm = request.param
    root = make_tempdir(f"modpy_safe-holders-{handler}-{mpm}-")
    files = {}
    for scenario in CONFIGS[request.param]:
        dsn = postgres.dsn_for(application(scenario, handler, mpm))
        for name in {scenario, EDITED.get(scenario, scenario)}:
            files[f"{name}.py"] = render(name, dsn, 0)
    server = Httpd(root, mpm=mpm, directory=DIRECTORY[handler], processes=1, files=files,
                   options={"modpy_safe.reload.interval": "0"})
    with running(server, request):
        yield server, handler, mpm


def answer(server: Httpd, scenario: str) -> dict[str, int]:
    response = server.get(f"/{scenario}.py")
    assert response.status == 200, f"{response.status}: {response.text[:2000]}"
    words = response.text.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def cases() -> list[Any]:
    return [pytest.param(config, scenario, id=f"{'-'.join(config)}-{scenario}")
            for config in sorted(CONFIGS) for scenario in CONFIGS[config]]


@pytest.mark.parametrize(("site", "scenario"), cases(), indirect=["site"])
def test_ten_edits_keep_the_connections_at_the_steady_value(site, scenario, postgres):
    server, handler, mpm = site
    app = application(scenario, handler, mpm)
    dsn = postgres.dsn_for(app)
    edited = EDITED.get(scenario, scenario)
    assert answer(server, scenario)["version"] == 0
    steady = STEADY.get(scenario, 1)
    counts = [postgres.settled_count(app, expected=steady)]
    for version in range(1, 11):
        server.write(f"{edited}.py", render(edited, dsn, version))
        assert answer(server, scenario)["version"] == version
        steady = AFTER_EDIT.get(scenario, steady)
        counts.append(postgres.settled_count(app, expected=steady))
    assert counts == [STEADY.get(scenario, 1)] + [steady] * 10, counts
    closed = re.findall(rf"closed .* left by generation \d+ of \S+/{edited}\.py",
                        server.error_log())
    assert len(closed) == CLOSES.get(scenario, 10), closed


@pytest.mark.parametrize("site", sorted(CONFIGS), indirect=True, ids="-".join)
def test_stopping_httpd_leaves_no_connection(site, postgres):
    server, handler, mpm = site
    server.stop()
    left = {scenario: postgres.settled_count(application(scenario, handler, mpm), expected=0)
            for scenario in CONFIGS[(handler, mpm)]}
    assert left == dict.fromkeys(left, 0)
