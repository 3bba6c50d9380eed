"""The reachability walk and the kinds registry in plain Python (no httpd).

Each test runs a small module body in a namespace named like a module version
of the importer, walks it, and checks what was found.
"""
from __future__ import annotations

import functools
import sqlite3
import textwrap
import threading
from typing import Any

import pytest
from fix_importer import FakeConnection

from modpy_safe.reload import kinds, reach

LABEL = "_mps_reach_test_0123456789"


def module(body: str, **names: Any) -> dict[str, Any]:
    """Run ``body`` as a managed module version and return its namespace."""
    namespace: dict[str, Any] = {"__name__": LABEL, "FakeConnection": FakeConnection, **names}
    exec(compile(textwrap.dedent(body), f"<{LABEL}>", "exec"), namespace)
    return namespace


def found(namespace: dict[str, Any], **bounds: int) -> list[Any]:
    """Return the resources the walk finds, in no particular order."""
    return [obj for _, obj, _ in reach.walk(namespace, {LABEL}, **bounds).resources.values()]


HOLDERS = {
    "top_level": "conn = FakeConnection()",
    "singleton_wrapper": """
        class Store:
            def __init__(self):
                self.conn = FakeConnection()
        store = Store()
    """,
    "slots": """
        class Store:
            __slots__ = ("conn", "unset")
            def __init__(self):
                self.conn = FakeConnection()
        store = Store()
    """,
    "dict_value": "CONNS = {'main': {'by_thread': {1: FakeConnection()}}}",
    "dict_key": "SEEN = {FakeConnection(): 'opened'}",
    "list": "CONNS = [None, [FakeConnection()]]",
    "tuple": "PAIR = (1, FakeConnection())",
    "set_via_wrapper": """
        class Box:
            def __init__(self):
                self.conn = FakeConnection()
        BOXES = {Box()}
    """,
    "class_attribute": """
        class Repo:
            conn = FakeConnection()
    """,
    "default_argument": """
        def query(sql, conn=FakeConnection()):
            return conn
    """,
    "keyword_default": """
        def query(sql, *, conn=FakeConnection()):
            return conn
    """,
    "closure": """
        def make():
            conn = FakeConnection()
            def query():
                return conn
            return query
        query = make()
    """,
    "lru_cache_unbounded": """
        import functools
        @functools.lru_cache(maxsize=None)
        def get_conn():
            return FakeConnection()
        get_conn()
    """,
    "lru_cache_bounded": """
        import functools
        @functools.lru_cache(maxsize=4)
        def get_conn(name):
            return FakeConnection(name)
        get_conn("a")
    """,
    "bound_method": """
        class Store:
            def __init__(self):
                self.conn = FakeConnection()
            def run(self):
                return self.conn
        run = Store().run
    """,
    "partial": """
        import functools
        def run(conn, sql):
            return conn
        run_main = functools.partial(run, FakeConnection())
    """,
    "staticmethod_default": """
        class Repo:
            @staticmethod
            def get(conn=FakeConnection()):
                return conn
    """,
    "subclass_of_dict": """
        import collections
        CONNS = collections.OrderedDict(main=FakeConnection())
    """,
    "deque": """
        import collections
        IDLE = collections.deque([FakeConnection()])
    """,
}


@pytest.mark.parametrize("holder", sorted(HOLDERS))
def test_a_connection_is_found_wherever_the_module_keeps_it(holder: str) -> None:
    namespace = module(HOLDERS[holder])
    made = [v for v in found(namespace)]
    assert len(made) == 1 and isinstance(made[0], FakeConnection), made


def test_every_threads_value_of_a_threading_local_is_found() -> None:
    namespace = module("""
        import threading
        LOCAL = threading.local()
        LOCAL.conn = FakeConnection("main thread")
    """)
    local = namespace["LOCAL"]
    ready, finish = threading.Barrier(4), threading.Event()

    def worker(name: str) -> None:
        local.conn = FakeConnection(name)
        ready.wait()
        finish.wait()

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    try:
        ready.wait()
        names = sorted(c.name for c in found(namespace))
    finally:
        finish.set()
        for thread in threads:
            thread.join()
    assert names == ["main thread", "t0", "t1", "t2"]


def test_a_pure_python_local_is_found_too() -> None:
    namespace = module("""
        import _threading_local
        LOCAL = _threading_local.local()
        LOCAL.conn = FakeConnection("pure")
    """)
    assert [c.name for c in found(namespace)] == ["pure"]


class _Cursor:
    """A DB-API cursor: execute, fetchone, close, and the connection it belongs to."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def execute(self, sql: str) -> None: ...
    def fetchone(self) -> Any: ...
    def close(self) -> None: ...


def test_a_cursor_leads_to_its_connection() -> None:
    conn = FakeConnection("behind a cursor")
    namespace = module("cur = make_cursor()", make_cursor=lambda: _Cursor(conn))
    assert found(namespace) == [conn]


def test_an_sqlite3_cursor_leads_to_its_connection() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        namespace = module("cur = conn.cursor()\ndel conn", conn=conn)
        assert found(namespace) == [conn]
    finally:
        conn.close()


def test_code_outside_the_importer_is_not_entered() -> None:
    import logging
    outside = FakeConnection("kept by a library")
    logging.getLogger("modpy_safe.tests.reach").reach_conn = outside  # type: ignore[attr-defined]
    foreign = type("Foreign", (), {"conn": outside, "__module__": "somelib.models"})
    try:
        namespace = module("""
            import logging
            LOG = logging
            MODEL = Foreign
            def helper():
                return 1
        """, Foreign=foreign)
        # A module, a library's class, a library's function: none is entered.
        namespace["FOREIGN_FUNCTION"] = logging.getLogger
        assert found(namespace) == []
    finally:
        del logging.getLogger("modpy_safe.tests.reach").reach_conn  # type: ignore[attr-defined]


def test_a_resource_is_not_entered() -> None:
    class Pool(FakeConnection):
        """A connection that holds other connections: closing it is enough."""

        def __init__(self) -> None:
            super().__init__("pool")
            self.members = [FakeConnection("member")]

    namespace = module("pool = Pool()", Pool=Pool)
    assert [c.name for c in found(namespace)] == ["pool"]


def test_a_million_atoms_beside_a_connection_are_skipped_not_a_bound() -> None:
    namespace = module("""
        BIG = {i: str(i) for i in range(1_000_000)}
        NUMBERS = list(range(1_000_000))
        conn = FakeConnection("beside")
    """)
    result = reach.walk(namespace, {LABEL})
    assert result.complete, result.unexamined
    assert [obj.name for _, obj, _ in result.resources.values()] == ["beside"]


def test_a_deep_tree_hits_the_object_bound_and_says_where() -> None:
    namespace = module("""
        class Node:
            def __init__(self, child):
                self.child = child
        TREE = None
        for _ in range(5000):
            TREE = Node(TREE)
        conn = FakeConnection("also here")
    """)
    result = reach.walk(namespace, {LABEL}, max_objects=1000)
    assert not result.complete
    assert list(result.unexamined) == ["TREE"], result.unexamined
    assert "limit 1000 objects" in result.unexamined["TREE"]
    deep = reach.walk(namespace, {LABEL})  # the default bound covers 5000 nodes (no recursion)
    assert deep.complete and len(deep.resources) == 1


def test_a_container_over_the_item_bound_is_named() -> None:
    namespace = module("ROWS = [[i] for i in range(50)]\nconn = FakeConnection()")
    result = reach.walk(namespace, {LABEL}, max_items=10)
    assert "ROWS" in result.unexamined and "a list of 50 item(s)" in result.unexamined["ROWS"]


# ---------------------------------------------------------------- kinds


def _fake_type(module_name: str, qualname: str, **methods: Any) -> type:
    cls = type(qualname, (), dict(methods))
    cls.__module__, cls.__qualname__ = module_name, qualname
    return cls


def test_library_types_are_known_by_name_without_importing_the_library() -> None:
    calls: list[str] = []
    pool_type = _fake_type("psycopg_pool.pool", "ConnectionPool", closed=False,
                           close=lambda self: calls.append("close"))
    engine_type = _fake_type("sqlalchemy.engine.base", "Engine",
                             dispose=lambda self: calls.append("dispose"))
    subclass = type("NullConnectionPool", (pool_type,), {})
    for obj, name in ((pool_type(), "psycopg_pool pool"), (subclass(), "psycopg_pool pool"),
                      (engine_type(), "SQLAlchemy Engine")):
        kind = kinds.classify(obj)
        assert kind is not None and kind.name == name
        assert kinds.close(obj)
    assert calls == ["close", "close", "dispose"]


def test_a_real_sqlalchemy_engine_is_disposed() -> None:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine("sqlite://")
    kind = kinds.classify(engine)
    assert kind is not None and kind.name == "SQLAlchemy Engine"
    assert kinds.describe(engine) == "SQLAlchemy Engine (sqlalchemy.engine.base.Engine)"


def test_sqlite3_and_generic_dbapi_connections_are_closed_once() -> None:
    conn = sqlite3.connect(":memory:")
    assert kinds.close(conn)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    fake = FakeConnection()
    assert kinds.classify(fake).name == "DB-API connection"  # type: ignore[union-attr]
    assert kinds.close(fake) and not kinds.close(fake)  # 'closed' is honoured


def test_register_type_by_class_and_by_dotted_name() -> None:
    closed: list[str] = []

    class Client:
        def shutdown(self) -> None:
            closed.append("client")

    kinds.register_type(Client, lambda c: c.shutdown())
    remote = _fake_type("somelib.client", "Remote", stop=lambda self: closed.append("remote"))
    kinds.register_type("somelib.client.Remote", lambda r: r.stop())
    namespace = module("A = [Client()]\nB = {'r': Remote()}", Client=Client, Remote=remote)
    for obj in found(namespace):
        assert kinds.close(obj)
    assert sorted(closed) == ["client", "remote"]
    with pytest.raises(TypeError, match="dotted name"):
        kinds.register_type("Remote", lambda r: None)
    with pytest.raises(TypeError, match="close must be callable"):
        kinds.register_type(Client, "shutdown")  # type: ignore[arg-type]


def test_registered_object_is_found_anywhere_and_forgotten_once_closed() -> None:
    closed: list[int] = []
    thing = object.__new__(type("Thing", (), {}))
    kinds.register(thing, close=lambda: closed.append(1))
    namespace = module("HOLDER = {'x': [thing]}", thing=thing)
    assert found(namespace) == [thing]
    assert kinds.close(thing) and closed == [1]
    assert kinds.classify(thing) is None


def test_objects_that_raise_when_looked_at_do_not_stop_the_walk() -> None:
    class Hostile:
        """A proxy whose every attribute raises, and whose class cannot be asked either."""

        __slots__ = ("target",)

        def __getattribute__(self, name: str) -> Any:
            raise RuntimeError(f"no {name}")

    class BadCursor:
        def execute(self, sql: str) -> None: ...
        def fetchone(self) -> Any: ...
        def close(self) -> None: ...

        @property
        def connection(self) -> Any:
            raise RuntimeError("gone")

    class BadPartial(functools.partial):  # type: ignore[type-arg]
        @property
        def args(self) -> Any:  # type: ignore[override]
            raise RuntimeError("no args today")

    namespace = module("""
        THINGS = [hostile, bad_cursor, bad_partial]
        conn = FakeConnection("still found")
    """, hostile=Hostile(), bad_cursor=BadCursor(), bad_partial=BadPartial(print))
    assert [c.name for c in found(namespace)] == ["still found"]


def test_a_dbutils_persistent_db_closes_every_threads_connection() -> None:
    class Steady:
        """DBUtils' SteadyDBConnection: close() is ignored, _close() really closes."""

        def __init__(self) -> None:
            self._closed = False

        def _close(self) -> None:
            self._closed = True

    persistent = _fake_type("dbutils.persistent_db", "PersistentDB")
    pool = persistent()
    pool.thread = threading.local()
    made: list[Steady] = []

    def use() -> None:
        pool.thread.connection = Steady()
        made.append(pool.thread.connection)

    use()
    held = threading.Event()
    other = threading.Thread(target=lambda: (use(), held.wait()))
    other.start()
    try:
        while len(made) < 2:
            threading.Event().wait(0.01)
        kind = kinds.classify(pool)
        assert kind is not None and kind.name == "DBUtils PersistentDB"
        assert kinds.close(pool)
    finally:
        held.set()
        other.join()
    assert [c._closed for c in made] == [True, True]
