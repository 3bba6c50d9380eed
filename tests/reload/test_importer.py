"""The safe importer and resource tracking in plain Python (no httpd)."""
from __future__ import annotations

import logging
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fix_importer import FakeConnection, open_connections, write

from modpy_safe import ConfigError
from modpy_safe._context import RequestScope, current_loading
from modpy_safe._options import Options
from modpy_safe.reload import importer as _importer
from modpy_safe.reload import resources as _resources

NAIVE = """\
    import fix_importer
    conn = fix_importer.FakeConnection(__file__)
    VERSION = {version}
"""

GUARDED = """\
    import fix_importer
    if "conn" not in globals():
        conn = fix_importer.FakeConnection("guarded")
    VERSION = {version}
"""


@pytest.fixture
def scope_for() -> Iterator[Any]:
    """Factory of request scopes; every scope still open is closed at the end."""
    opened: list[RequestScope] = []

    def make(options: dict[str, str] | None = None, *, debug: bool = False) -> RequestScope:
        opts = {"modpy_safe.reload.interval": "0", **(options or {})}
        scope = RequestScope(None, Options(opts), debug=debug)
        opened.append(scope)
        return scope

    yield make
    for scope in opened:
        scope.close()


def request(path: Path, scope: RequestScope) -> Any:
    """One request: acquire the module, return it, end the request."""
    try:
        return _importer.acquire(str(path), scope)
    finally:
        scope.close()


def test_first_load_makes_a_labelled_module_with_hooks(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "X = 1\n")
    module = request(app, scope_for())
    assert module.X == 1
    assert module.__file__ == str(app)
    assert sys.modules[module.__name__] is module
    assert module.__name__.startswith("_mps_app_")
    assert callable(module.__mp_clone__) and callable(module.__mp_purge__)


def test_unchanged_file_is_not_executed_again(tmp_path, scope_for):
    runs = tmp_path / "runs"
    app = write(tmp_path / "app.py", f"with open({str(runs)!r}, 'a') as f:\n    f.write('x')\n")
    first = request(app, scope_for())
    for _ in range(3):
        assert request(app, scope_for()) is first
    assert runs.read_text() == "x"


def test_interval_bounds_the_check(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "V = 1\n")
    hourly = {"modpy_safe.reload.interval": "3600"}
    assert request(app, scope_for(hourly)).V == 1
    write(app, "V = 2\n")
    assert request(app, scope_for(hourly)).V == 1  # not checked within the interval
    assert request(app, scope_for()).V == 2  # interval 0 checks now


def test_naive_connection_is_closed_when_the_last_old_request_ends(tmp_path, scope_for):
    app = write(tmp_path / "app.py", NAIVE.format(version=1))
    running = scope_for()
    old = _importer.acquire(str(app), running)  # a request still running on v1
    write(app, NAIVE.format(version=2))
    new = request(app, scope_for())
    assert (old.VERSION, new.VERSION) == (1, 2)
    assert old.conn is not new.conn
    assert not old.conn.closed, "closed under a request still running on it"
    running.close()
    assert old.conn.closed
    assert not new.conn.closed
    record = next(r for r in _importer.records() if r.path == str(app))
    assert (record.generation, record.reloads, record.closed_for_old) == (2, 1, 1)


def test_a_requests_leases_end_after_its_cleanups_and_once(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "X = 1\n")

    def active() -> int:
        return next(r for r in _importer.records() if r.path == str(app)).active

    seen: list[int] = []
    scope = scope_for()
    with scope:
        _importer.acquire(str(app), scope)
        _importer.acquire(str(app), scope)  # a second lease in the same request
        scope.add_cleanup(lambda: seen.append(active()))
        assert active() == 2
    assert seen == [2], "a cleanup ran after the instance's lease had ended"
    assert active() == 0
    scope.close()  # closing again releases nothing twice
    assert active() == 0


def test_naive_module_reloaded_many_times_keeps_one_connection(tmp_path, scope_for):
    app = write(tmp_path / "app.py", NAIVE.format(version=0))
    request(app, scope_for())
    for version in range(1, 11):
        write(app, NAIVE.format(version=version))
        assert request(app, scope_for()).VERSION == version
    mine = [c for c in open_connections() if c.name == str(app)]
    assert len(mine) == 1


def test_guarded_idiom_keeps_the_same_connection(tmp_path, scope_for):
    app = write(tmp_path / "app.py", GUARDED.format(version=0))
    first = request(app, scope_for()).conn
    for version in range(1, 4):
        write(app, GUARDED.format(version=version))
        module = request(app, scope_for())
        assert module.VERSION == version
        assert module.conn is first
    assert not first.closed


def test_loading_context_offers_the_predecessor(tmp_path, scope_for):
    probe = """\
        from modpy_safe._context import current_loading
        here = current_loading()
        SEEN = (here.generation, here.predecessor is not None and "V" in here.predecessor)
        V = 1
    """
    app = write(tmp_path / "app.py", probe)
    assert request(app, scope_for()).SEEN == (1, False)
    write(app, probe + "\n")
    assert request(app, scope_for()).SEEN == (2, True)
    assert current_loading() is None


def test_failed_reload_keeps_old_closes_new_logs_once_and_fix_reloads(tmp_path, scope_for, caplog):
    app = write(tmp_path / "app.py", NAIVE.format(version=1))
    good = request(app, scope_for())
    broken = NAIVE.format(version=2) + "    raise ValueError('boom')\n"
    write(app, broken)
    with caplog.at_level(logging.INFO, logger="modpy_safe.importer"):
        for _ in range(3):
            assert request(app, scope_for()) is good
        with pytest.raises(_importer.ImportFailed) as info:
            request(app, scope_for(debug=True))
    assert info.value.file == str(app) and info.value.line == 4
    assert "ValueError: boom" in str(info.value)
    failures = [r for r in caplog.records if "reload of" in r.getMessage()]
    assert len(failures) == 1, "the failure must be logged once per failed version"
    assert not good.conn.closed
    failed_conn = [c for c in open_connections() if c.name == str(app) and c is not good.conn]
    assert failed_conn == [], "what the failed version opened must be closed"
    record = next(r for r in _importer.records() if r.path == str(app))
    assert record.failing and record.error is not None and record.error.line == 4

    write(app, NAIVE.format(version=3))
    fixed = request(app, scope_for())
    assert fixed.VERSION == 3
    assert good.conn.closed


def test_syntax_error_on_first_load_names_file_and_line(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "x = 1\ndef broken(:\n")
    with pytest.raises(_importer.ImportFailed) as info:
        request(app, scope_for())
    assert (info.value.file, info.value.line) == (str(app), 2)
    assert type(info.value).__module__ == "modpy_safe"


def test_missing_file_raises_file_not_found(tmp_path, scope_for):
    with pytest.raises(FileNotFoundError):
        request(tmp_path / "nothere.py", scope_for())


def test_bad_interval_is_a_config_error(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "V = 1\n")
    with pytest.raises(ConfigError, match=r"modpy_safe\.reload\.interval.*'soon'.*seconds"):
        request(app, scope_for({"modpy_safe.reload.interval": "soon"}))


def test_user_clone_runs_after_the_hand_over(tmp_path, scope_for):
    source = """\
        import fix_importer
        if "conn" not in globals():
            conn = fix_importer.FakeConnection("hooked")
            hits = []
        def __mp_clone__(new):
            new.hits = hits + [sorted(k for k in vars(new) if not k.startswith("__"))]
    """
    app = write(tmp_path / "app.py", source)
    first = request(app, scope_for())
    write(app, source + "\n")
    second = request(app, scope_for())
    assert second.conn is first.conn
    # The framework's hand-over happened first: the hook already saw conn.
    assert second.hits == [["conn"]]


def test_failing_clone_purges_and_starts_fresh(tmp_path, scope_for):
    source = """\
        import fix_importer
        if "conn" not in globals():
            conn = fix_importer.FakeConnection("purged")
        def __mp_clone__(new):
            raise RuntimeError("cannot clone")
        def __mp_purge__():
            PURGED.append(1)
        PURGED = []
    """
    app = write(tmp_path / "app.py", source)
    first = request(app, scope_for())
    write(app, source + "\n")
    second = request(app, scope_for())
    assert first.PURGED == [1]
    assert second.conn is not first.conn
    assert first.conn.closed and not second.conn.closed


def test_plain_import_of_a_sibling_is_tracked_and_reloads_the_importer(tmp_path, scope_for):
    write(tmp_path / "helpers.py", "WORD = 'one'\n")
    app = write(tmp_path / "app.py", "import helpers, json\nfrom helpers import WORD\n")
    first = request(app, scope_for())
    assert first.WORD == "one"
    assert first.json is sys.modules["json"]  # the standard library is left alone
    assert first.helpers.__name__.startswith("_mps_helpers_")
    record = next(r for r in _importer.records() if r.path == str(app))
    assert record.children == (str(tmp_path / "helpers.py"),)
    assert request(app, scope_for()) is first

    write(tmp_path / "helpers.py", "WORD = 'two'\n")
    second = request(app, scope_for())
    assert second is not first and second.WORD == "two"


def test_reload_path_directories_are_managed(tmp_path, scope_for):
    lib = tmp_path / "lib"
    lib.mkdir()
    write(lib / "shared_bits.py", "N = 1\n")
    app = write(tmp_path / "app.py", "import shared_bits\n")
    options = {"modpy_safe.reload.path": str(lib)}
    assert request(app, scope_for(options)).shared_bits.N == 1
    write(lib / "shared_bits.py", "N = 2\n")
    assert request(app, scope_for(options)).shared_bits.N == 2


def test_import_module_is_relative_to_the_caller_and_recorded(tmp_path, scope_for):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / "part.py", "P = 1\n")
    app = write(tmp_path / "app.py",
                "import modpy_safe\npart = modpy_safe.import_module('sub/part')\n")
    assert request(app, scope_for()).part.P == 1
    write(sub / "part.py", "P = 2\n")
    assert request(app, scope_for()).part.P == 2


def test_dataclass_and_pickle_work_across_reloads(tmp_path, scope_for):
    source = """\
        from __future__ import annotations
        import dataclasses
        @dataclasses.dataclass
        class Note:
            text: str
            tags: list[str] = dataclasses.field(default_factory=list)
        V = {version}
    """
    app = write(tmp_path / "app.py", source.format(version=1))
    first = request(app, scope_for())
    data = pickle.dumps(first.Note("hello", ["a"]))
    write(app, source.format(version=2))
    second = request(app, scope_for())
    back = pickle.loads(data)
    assert type(back) is second.Note and back == second.Note("hello", ["a"])
    assert pickle.loads(pickle.dumps(back)) == back


def test_registered_objects_and_pools_are_resources():
    closed: list[str] = []

    class Client:
        def shutdown(self) -> None:
            closed.append("client")

    client = _resources.register(Client(), close=lambda: closed.append("client"))
    assert _resources.is_resource(client)
    assert not _resources.is_resource(FakeConnection)  # a class is not a connection
    assert not _resources.is_resource(sys)
    from psycopg2.pool import SimpleConnectionPool

    assert _resources.is_resource(SimpleConnectionPool.__new__(SimpleConnectionPool))
    assert _resources.close(client) and closed == ["client"]
    with pytest.raises(TypeError, match="close"):
        _resources.register(object())


def test_close_all_closes_what_loaded_modules_hold(tmp_path, scope_for):
    app = write(tmp_path / "app.py", NAIVE.format(version=1))
    module = request(app, scope_for())
    assert _importer.close_all() >= 1
    assert module.conn.closed


def test_autoreload_off_keeps_the_loaded_version(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "V = 1\n")
    assert request(app, scope_for()).V == 1
    write(app, "V = 2\n")
    scope = scope_for()
    try:
        assert _importer.acquire(str(app), scope, autoreload=False).V == 1
    finally:
        scope.close()


def test_a_request_within_the_interval_makes_no_system_call(tmp_path, scope_for, monkeypatch):
    write(tmp_path / "helpers.py", "X = 1\n")
    app = write(tmp_path / "app.py", "import helpers\n")
    hourly = {"modpy_safe.reload.interval": "3600"}
    request(app, scope_for(hourly))
    calls: list[str] = []
    real_stat = _importer.os.stat

    def counting_stat(path: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(_importer.os, "stat", counting_stat)
    for _ in range(5):
        request(app, scope_for(hourly))
    assert calls == []
    request(app, scope_for())  # interval 0: the file and its dependency are checked
    assert sorted(calls) == [str(app), str(tmp_path / "helpers.py")]


def test_threads_never_use_a_connection_closed_under_them(tmp_path, scope_for):
    """The plain-Python twin of the event test: leases keep old versions' connections open."""
    import threading
    import time

    source = """\
        import fix_importer
        conn = fix_importer.FakeConnection(__file__)
        VERSION = {version}
        def handler():
            conn.cursor()  # raises if the connection was closed
            return VERSION
    """
    app = write(tmp_path / "app.py", source.format(version=0))
    request(app, scope_for())
    errors: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            scope = scope_for()
            try:
                module = _importer.acquire(str(app), scope)
                for _ in range(10):
                    module.handler()
                    time.sleep(0.0005)  # let the writer reload while this request runs
            except BaseException as exc:
                errors.append(exc)
            finally:
                scope.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for version in range(1, 30):
            write(app, source.format(version=version))
            request(app, scope_for())
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    assert len([c for c in open_connections() if c.name == str(app)]) == 1


def test_a_file_emptied_for_rewriting_keeps_the_old_version(tmp_path, scope_for):
    app = write(tmp_path / "app.py", "V = 1\n")
    first = request(app, scope_for())
    write(app, "")  # the truncate of an editor that rewrites in place
    assert request(app, scope_for()) is first
    write(app, "V = 2\n")
    assert request(app, scope_for()).V == 2


def test_a_failure_after_a_helper_changed_is_logged_once(tmp_path, scope_for, caplog):
    write(tmp_path / "helpers.py", "WORD = 'one'\n")
    app = write(tmp_path / "app.py", "from helpers import WORD\nassert WORD == 'one'\n")
    first = request(app, scope_for())
    write(tmp_path / "helpers.py", "WORD = 'two'\n")
    with caplog.at_level(logging.INFO, logger="modpy_safe.importer"):
        for _ in range(3):
            assert request(app, scope_for()) is first
    failures = [r for r in caplog.records if r.getMessage().startswith("reload of")]
    assert len(failures) == 1
    assert "AssertionError" in failures[0].getMessage()
