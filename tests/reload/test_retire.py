"""Retirement through the importer in plain Python: what an old version reaches is closed.

Each test writes real files, loads them through the importer with request
scopes, edits them and checks which connections are open.
"""
from __future__ import annotations

import logging
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fix_importer
import pytest
from fix_importer import FakeConnection, write

from modpy_safe._context import RequestScope
from modpy_safe._options import Options
from modpy_safe.reload import importer as _importer
from modpy_safe.reload import reach


@pytest.fixture
def scope_for() -> Iterator[Any]:
    """Factory of request scopes; every scope still open is closed at the end."""
    opened: list[RequestScope] = []

    def make() -> RequestScope:
        scope = RequestScope(None, Options({"modpy_safe.reload.interval": "0"}), debug=False)
        opened.append(scope)
        return scope

    yield make
    for scope in opened:
        scope.close()


def request(path: Path, scope: RequestScope, call: str | None = None) -> Any:
    """One request: acquire the module, call ``call`` in it if given, end the request."""
    try:
        module = _importer.acquire(str(path), scope)
        if call:
            getattr(module, call)()
        return module
    finally:
        scope.close()


def source(body: str, version: int) -> str:
    return ("from fix_importer import FakeConnection\n"
            f"VERSION = {version}\n" + textwrap.dedent(body))


# Each module body keeps its connection a different way; 'use()' is what a
# request does with it (a lazy holder connects on first use).
HOLDERS = {
    "singleton_wrapper": """
        class Store:
            def __init__(self):
                self.conn = FakeConnection("wrapper")
        store = Store()
        def use():
            return store.conn
    """,
    "lazy_singleton": """
        class Lazy:
            conn = None
            def get(self):
                if self.conn is None:
                    self.conn = FakeConnection("lazy")
                return self.conn
        lazy = Lazy()
        def use():
            return lazy.get()
    """,
    "dict_per_thread": """
        import threading
        CONNS = {}
        def use():
            return CONNS.setdefault(threading.get_ident(), FakeConnection("dict"))
    """,
    "threading_local": """
        import threading
        LOCAL = threading.local()
        def use():
            if not hasattr(LOCAL, "conn"):
                LOCAL.conn = FakeConnection("local")
            return LOCAL.conn
    """,
    "class_attribute": """
        class Repo:
            conn = FakeConnection("class")
        def use():
            return Repo.conn
    """,
    "default_argument": """
        def use(conn=FakeConnection("default")):
            return conn
    """,
    "closure": """
        def make():
            conn = FakeConnection("closure")
            def use():
                return conn
            return use
        use = make()
    """,
    "lru_cache_factory": """
        import functools
        @functools.lru_cache(maxsize=None)
        def connection():
            return FakeConnection("lru")
        def use():
            return connection()
    """,
}


@pytest.mark.parametrize("holder", sorted(HOLDERS))
def test_edits_leave_only_the_current_versions_connection_open(holder, tmp_path, scope_for):
    app = write(tmp_path / "app.py", source(HOLDERS[holder], 0))
    held = []
    for version in range(6):
        if version:
            write(app, source(HOLDERS[holder], version))
        module = request(app, scope_for(), call="use")
        assert module.VERSION == version
        held.append(module.use())
        assert [c.closed for c in held] == [1] * version + [0], f"after edit {version}"


def test_a_renamed_or_deleted_variable_is_not_pinned_by_the_hand_over(tmp_path, scope_for):
    app = write(tmp_path / "app.py", source("conn = FakeConnection('v0')", 0))
    first = request(app, scope_for()).conn
    write(app, source("db_conn = FakeConnection('renamed')", 1))
    renamed = request(app, scope_for())
    assert not hasattr(renamed, "conn"), "the old name was left in the new version"
    assert first.closed
    write(app, source("", 2))  # deleted
    deleted = request(app, scope_for())
    assert not hasattr(deleted, "db_conn") and renamed.db_conn.closed


def test_the_guarded_idiom_and_a_name_read_as_a_string_keep_their_connection(tmp_path,
                                                                            scope_for):
    guarded = 'if "conn" not in globals():\n    conn = FakeConnection("guarded")\n'
    app = write(tmp_path / "app.py", source(guarded, 0))
    first = request(app, scope_for()).conn
    write(app, source(guarded, 1))
    assert request(app, scope_for()).conn is first and not first.closed
    by_string = "def use():\n    return globals()['conn']\n"
    write(app, source(by_string, 2))
    assert request(app, scope_for(), call="use").use() is first and not first.closed


def test_a_cursor_only_module_closes_the_connection_behind_it(tmp_path, scope_for):
    body = """
        class Cursor:
            def __init__(self, connection):
                self.connection = connection
            def execute(self, sql): pass
            def fetchone(self): pass
            def close(self): pass
        cur = Cursor(FakeConnection("cursor"))
    """
    app = write(tmp_path / "app.py", source(body, 0))
    first = request(app, scope_for()).cur.connection
    write(app, source(body, 1))
    second = request(app, scope_for()).cur.connection
    assert first.closed and not second.closed


def test_what_a_library_keeps_is_left_to_it(tmp_path, scope_for, monkeypatch):
    shared = FakeConnection("the library's own")
    monkeypatch.setattr(fix_importer, "SHARED", shared, raising=False)
    app = write(tmp_path / "app.py", source("import fix_importer\nmine = [fix_importer.SHARED]",
                                            0))
    request(app, scope_for())
    write(app, source("", 1))
    request(app, scope_for())
    assert not shared.closed


def test_what_a_current_helper_version_reaches_stays_open(tmp_path, scope_for):
    write(tmp_path / "helpers.py", "from fix_importer import FakeConnection\n"
                                   "class Box:\n    pass\nBOX = Box()\n"
                                   "BOX.conn = FakeConnection('helper')\n")
    app = write(tmp_path / "app.py", source("import helpers\nHOLD = {'c': helpers.BOX.conn}", 0))
    conn = request(app, scope_for()).HOLD["c"]
    write(app, source("", 1))
    request(app, scope_for())
    assert not conn.closed, "a current helper version still reaches it"
    write(tmp_path / "helpers.py", "X = 1\n")
    write(app, source("import helpers", 2))
    request(app, scope_for())
    assert conn.closed, "the helper's old version was retired and nothing reaches it"


def test_each_closed_resource_is_one_log_line_and_counted(tmp_path, scope_for, caplog):
    caplog.set_level(logging.INFO, logger="modpy_safe.importer")
    body = "CONNS = [FakeConnection('a'), FakeConnection('b')]\n"
    app = write(tmp_path / "app.py", source(body, 0))
    request(app, scope_for())
    write(app, source(body, 1))
    request(app, scope_for())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closed ")]
    assert lines == [f"closed DB-API connection (fix_importer.FakeConnection) reached through "
                     f"'CONNS' left by generation 1 of {app}"] * 2
    record = next(r for r in _importer.records() if r.path == str(app))
    assert record.closed_for_old == 2


def test_a_registered_type_is_closed_its_own_way(tmp_path, scope_for):
    body = """
        import modpy_safe
        class Client:
            closed = False
            def shutdown(self):
                self.closed = True
        modpy_safe.register_type(Client, lambda client: client.shutdown())
        CLIENTS = {"main": Client()}
    """
    app = write(tmp_path / "app.py", source(body, 0))
    first = request(app, scope_for()).CLIENTS["main"]
    write(app, source(body, 1))
    second = request(app, scope_for()).CLIENTS["main"]
    assert first.closed and not second.closed


def test_a_bound_hit_is_one_log_line_naming_the_module(tmp_path, scope_for, caplog,
                                                       monkeypatch):
    monkeypatch.setattr(reach, "MAX_OBJECTS", 500)
    body = """
        class Node:
            def __init__(self, child):
                self.child = child
        TREE = None
        for _ in range(2000):
            TREE = Node(TREE)
        conn = FakeConnection("beside a deep tree")
    """
    app = write(tmp_path / "app.py", source(body, 0))
    first = request(app, scope_for()).conn
    for version in (1, 2):
        write(app, source(body, version))
        request(app, scope_for())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert first.closed, "found breadth first, before the tree used the bound up"
    # Generation 2 was walked twice (current, then retired): still one line.
    for generation in (1, 2):
        about = [w for w in warnings
                 if w.startswith(f"generation {generation} of {app} is too big")]
        assert len(about) == 1, warnings
        assert "'TREE':" in about[0] and "limit 500 objects" in about[0]


def test_a_structure_shared_with_a_version_too_big_to_see_keeps_its_connections(
        tmp_path, scope_for, monkeypatch):
    monkeypatch.setattr(reach, "MAX_ITEMS", 100)
    body = """
        if "ROWS" not in globals():
            ROWS = [[i] for i in range(1000)]
        def __mp_clone__(new):
            new.ROWS = ROWS
        conn = FakeConnection("near shared rows")
    """
    app = write(tmp_path / "app.py", source(body, 0))
    first = request(app, scope_for()).conn
    write(app, source(body, 1))
    request(app, scope_for())
    assert not first.closed, "the current version could use it through what was not examined"
    assert _importer.close_all() >= 1 and first.closed


def test_a_name_imported_from_a_helper_stays_open_until_its_importer_lets_go(tmp_path,
                                                                             scope_for):
    helper = "from fix_importer import FakeConnection\nCONN = FakeConnection('helper v{v}')\n"
    write(tmp_path / "helpers.py", helper.format(v=0))
    app = write(tmp_path / "app.py", source("from helpers import CONN\nHELD = [CONN]", 0))
    first = request(app, scope_for()).CONN
    running = scope_for()
    old_app = _importer.acquire(str(app), running)  # a request still on the old app
    write(tmp_path / "helpers.py", helper.format(v=1))
    new_app = request(app, scope_for())
    assert new_app.CONN is not first and old_app.CONN is first
    assert not first.closed, "the old app version, still running a request, imported it"
    running.close()
    assert first.closed and not new_app.CONN.closed


def test_a_psycopg_pool_is_closed_and_its_threads_end(tmp_path, scope_for, postgres):
    pytest.importorskip("psycopg_pool")
    app_name = "retire_psycopg_pool"
    body = f"""
        import psycopg_pool
        pool = psycopg_pool.ConnectionPool({postgres.dsn_for(app_name)!r}, min_size=1,
                                           max_size=1, name="reach-v{{v}}")
        pool.wait()
    """

    def threads_of(name: str) -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith(name)]

    app = write(tmp_path / "app.py", source(body.format(v=0), 0))
    first = request(app, scope_for()).pool
    assert threads_of("reach-v0")
    write(app, source(body.format(v=1), 1))
    second = request(app, scope_for()).pool
    try:
        assert first.closed and not second.closed
        assert threads_of("reach-v0") == [], "close() ends the pool's worker threads"
        assert postgres.settled_count(app_name, expected=1) == 1
    finally:
        second.close()
