"""modpy_safe.Database in plain Python against the private PostgreSQL."""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from fix_drivers import connect_function
from fix_fork import in_forked_child

import modpy_safe
from modpy_safe import (
    ConfigError,
    Database,
    DatabaseUnavailable,
    PoolClosed,
    PoolTimeout,
)
from modpy_safe._apache import ServerFacts
from modpy_safe._context import Loading, RequestScope
from modpy_safe._options import Options
from modpy_safe.db import database as _database
from modpy_safe.db import driver as _driver


def facts(mpm: str, threads: int = 1, processes: int = 2) -> ServerFacts:
    threaded = mpm != "prefork"
    return ServerFacts(mpm=mpm, threaded=threaded, forked=True,
                       threads_per_child=threads if threaded else 1,
                       max_processes=processes, pid=os.getpid())


@pytest.fixture
def databases() -> Iterator[list[Database]]:
    """Databases made by a test; all closed at its end so no connection outlives it."""
    made: list[Database] = []
    yield made
    for db in made:
        db.close(wait=1)


@pytest.fixture
def make(databases: list[Database], driver: str) -> Any:
    """Make a Database of the test's driver (see conftest.py), closed when the test ends."""
    def make(*args: Any, **kwargs: Any) -> Database:
        kwargs.setdefault("driver", driver)
        db = Database(*args, **kwargs)
        databases.append(db)
        return db
    return make


def backend_pid(db: Database) -> int:
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])



@contextlib.contextmanager
def held_by_another_thread(db: Database) -> Iterator[None]:
    """Keep one of ``db``'s connections checked out by another thread for the block."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.connection():
            entered.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert entered.wait(30)
    try:
        yield
    finally:
        release.set()
        holder.join(30)


def in_request(options: dict[str, str] | None = None) -> RequestScope:
    return RequestScope(None, Options(options or {}))


def test_exported_and_lazy(postgres: Any, make: Any) -> None:
    assert modpy_safe.Database is Database and "Database" in modpy_safe.__all__
    db = make(postgres.dsn_for("db_lazy"), name="lazy")
    assert postgres.count_connections("db_lazy") == 0 and db.mode == ""
    assert make("host=127.0.0.1 port=1 dbname=x", name="unreachable").mode == ""
    assert backend_pid(db) in postgres.backend_pids("db_lazy")
    assert db.mode == "persistent"  # plain Python, no facts: persistent


def test_transaction_commits_or_rolls_back(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_tx"), name="tx")
    with db.transaction() as cur:
        cur.execute("DROP TABLE IF EXISTS db_tx; CREATE TABLE db_tx (x int)")
    with pytest.raises(ZeroDivisionError):
        with db.transaction() as cur:
            cur.execute("INSERT INTO db_tx VALUES (1)")
            raise ZeroDivisionError("the block failed")
    with db.transaction() as cur:
        cur.execute("INSERT INTO db_tx VALUES (2)")
    with db.transaction() as cur:
        cur.execute("SELECT array_agg(x) FROM db_tx")
        assert cur.fetchone()[0] == [2]


def test_nested_use_shares_one_connection(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_nested"), name="nested", mode="persistent", timeout=0.1)
    with db.connection() as outer:
        with db.transaction() as cur:  # would time out if it needed a second one
            assert cur.connection is outer


def test_uncommitted_work_is_rolled_back_on_return(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_left_open"), name="left_open")
    with db.transaction() as cur:
        cur.execute("DROP TABLE IF EXISTS db_left_open; CREATE TABLE db_left_open (x int)")
    with db.connection() as conn:
        conn.cursor().execute("INSERT INTO db_left_open VALUES (1)")
        first = conn
    assert db.stats()["returned_in_transaction"] == 1
    with db.connection() as conn:
        assert conn is first
        assert conn.info.transaction_status == 0  # idle, in both drivers' numbering
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM db_left_open")
            assert cur.fetchone()[0] == 0


def test_rollback_keeps_session_state_discard_clears_it(postgres: Any, make: Any) -> None:
    postgres.admin_execute(
        "DO $$ BEGIN CREATE ROLE modpy_reader NOLOGIN; EXCEPTION WHEN duplicate_object "
        "THEN NULL; END $$")
    postgres.admin_execute("GRANT modpy_reader TO modpy")

    def dirty_then_look(db: Database) -> tuple[Any, ...]:
        with db.connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SET search_path = nowhere; SET ROLE modpy_reader")
        with db.connection() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT current_user, current_setting('search_path')")
                return (*cur.fetchone(), conn.autocommit)

    kept = dirty_then_look(make(postgres.dsn_for("db_rollback"), name="rb"))
    assert kept == ("modpy_reader", "nowhere", False)  # rollback: session state stays
    clean = dirty_then_look(make(postgres.dsn_for("db_discard"), name="dc", reset="discard"))
    assert clean == ("modpy", '"$user", public', False)


def test_terminated_backend_is_replaced_in_the_same_checkout(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_term"), name="term")
    before = backend_pid(db)
    assert postgres.terminate("db_term") == 1
    assert postgres.settled_count("db_term", expected=0) == 0  # the backend is gone, not going
    after = backend_pid(db)
    assert after != before
    assert db.stats()["discarded_ping"] == 1


def test_restart_then_outage_then_recovery(postgres: Any, make: Any, driver: str) -> None:
    calls: list[str] = []
    connect = connect_function(driver)

    def counting_connect(dsn: str) -> Any:
        calls.append(dsn)
        return connect(dsn)

    db = make(postgres.dsn_for("db_restart"), name="restart", connect=counting_connect)
    before = backend_pid(db)
    postgres.restart()
    assert backend_pid(db) != before  # dead connection replaced, request succeeds
    assert "connect_timeout=5" in calls[0]
    postgres.stop()
    try:
        with pytest.raises(DatabaseUnavailable, match="'restart' is unavailable") as info:
            backend_pid(db)
        assert postgres.password not in str(info.value)
        dialled = len(calls)
        with pytest.raises(DatabaseUnavailable, match="'restart' is unavailable"):
            backend_pid(db)  # waits for the back-off to pass, then makes one attempt
        assert len(calls) == dialled + 1
    finally:
        postgres.start()
    for _ in range(200):  # bounded: the back-off window is at most a second
        try:
            backend_pid(db)
            break
        except DatabaseUnavailable:
            threading.Event().wait(0.02)
    else:
        pytest.fail("the Database did not recover after the server came back")
    assert db.stats()["connect_failures"] >= 1


def test_wrong_password_is_never_shown(postgres: Any, make: Any) -> None:
    secret = "Wr0ng-S3cret-xyz"
    db = make(postgres.dsn.replace(postgres.password, secret), name="wrongpw")
    with pytest.raises(DatabaseUnavailable, match="password authentication failed") as info:
        backend_pid(db)
    assert secret not in str(info.value)
    assert secret not in repr(db.describe()) and "password=***" in db.describe()["settings"]["dsn"]


def test_password_is_masked_also_as_libpq_decoded_it(make: Any) -> None:
    def leaky(dsn: str) -> Any:
        raise psycopg2.OperationalError("libpq quoted p@ss-word-9 back")

    db = make("postgresql://u:p%40ss-word-9@127.0.0.1:1/db", name="leaky", connect=leaky)
    with pytest.raises(DatabaseUnavailable, match="libpq quoted \\*\\*\\* back") as info:
        backend_pid(db)
    assert "ss-word-9" not in str(info.value) and "ss-word-9" not in repr(db.describe())


def test_exhaustion_raises_pool_timeout(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_exhaust"), name="exhaust", mode="pooled", pool_max=1,
              timeout=0.1)
    with held_by_another_thread(db):
        with pytest.raises(PoolTimeout, match="database 'exhaust'") as info:
            backend_pid(db)
        assert postgres.password not in str(info.value)
    assert db.stats()["timeouts"] == 1
    backend_pid(db)


@pytest.mark.parametrize("option, value, allowed", [
    ("mode", "threaded", "auto, persistent, pooled, per-request"),
    ("pool_max", "0", "a whole number of at least 1"),
    ("pool_min", "-1", "a whole number of at least 0"),
    ("timeout", "soon", "a number of seconds"),
    ("max_lifetime", "-5", "a number of seconds"),
    ("max_idle", "x", "a number of seconds"),
    ("ping_after", "nan", "a number of seconds"),
    ("reset", "truncate", "rollback, discard"),
])
def test_bad_option_names_option_value_and_rule(postgres: Any, make: Any, option: str,
                                                value: str, allowed: str) -> None:
    db = make(postgres.dsn_for("db_bad_option"), name="opt")
    with in_request({f"modpy_safe.db.opt.{option}": value}):
        with pytest.raises(ConfigError) as info:
            backend_pid(db)
    message = str(info.value)
    assert f"modpy_safe.db.opt.{option}" in message and repr(value) in message
    assert allowed in message
    with pytest.raises(ConfigError, match=rf"argument {option} has value"):
        Database(postgres.dsn, name="opt", **{option: value})


def test_bad_dsn_is_refused_without_echoing_the_password(driver: str) -> None:
    with pytest.raises(ConfigError, match="argument dsn") as info:
        Database("host=db password=topsecret99 nonsense", driver=driver)
    assert "topsecret99" not in str(info.value)
    nodsn = Database(name="nodsn")
    with in_request(), pytest.raises(ConfigError, match="has no DSN"):
        backend_pid(nodsn)
    with pytest.raises(ConfigError, match="name has value"):
        Database("host=x", name="with space")


def test_options_fill_in_what_code_did_not_give(postgres: Any, make: Any) -> None:
    db = make(name="fromopts", pool_max=3)
    opts = {"modpy_safe.db.fromopts.dsn": postgres.dsn_for("db_opts"),
            "modpy_safe.db.fromopts.mode": "pooled",
            "modpy_safe.db.fromopts.pool_max": "7",
            "modpy_safe.db.fromopts.timeout": "2.5"}
    with in_request(opts):
        backend_pid(db)
    described = db.describe()
    assert described["mode"] == "pooled"
    assert described["settings"]["pool_max"] == 3  # the argument wins
    assert described["settings"]["timeout"] == 2.5
    assert postgres.password not in repr(described)
    assert db in _database.databases()


@pytest.mark.parametrize("mpm, mode, size", [
    ("prefork", "persistent", 1), ("worker", "pooled", 6), ("event", "pooled", 6)])
def test_auto_mode_follows_the_mpm(postgres: Any, make: Any, mpm: str, mode: str,
                                   size: int) -> None:
    db = make(postgres.dsn_for("db_auto"), name="auto", facts=facts(mpm, threads=6))
    backend_pid(db)
    assert db.mode == mode and db.describe()["settings"]["pool_max"] == size


def test_per_request_connection_lives_for_the_request(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_per_request"), name="perreq", mode="per-request")
    with in_request():
        first = backend_pid(db)
        assert backend_pid(db) == first
        assert postgres.settled_count("db_per_request", expected=1) == 1
    assert postgres.settled_count("db_per_request", expected=0) == 0
    with pytest.raises(KeyError):
        with in_request():
            backend_pid(db)
            raise KeyError("the handler failed")
    assert postgres.settled_count("db_per_request", expected=0) == 0
    with db.connection():  # outside a request: the block's lifetime
        assert postgres.settled_count("db_per_request", expected=1) == 1
    assert postgres.settled_count("db_per_request", expected=0) == 0
    assert db.stats()["opened"] == db.stats()["closed"] == 3


def test_reload_hands_over_the_same_object(postgres: Any, make: Any, driver: str) -> None:
    dsn = postgres.dsn_for("db_reload")
    old = make(dsn, name="main", mode="pooled", pool_max=2)
    pid = backend_pid(old)
    predecessor = {"db": old}
    with Loading("/app.py", "app", {}, predecessor, 2):
        same = Database(dsn, name="main", mode="pooled", pool_max=2, driver=driver)
        other_name = make(dsn, name="other", mode="pooled", pool_max=2)
        changed = make(dsn, name="main", mode="pooled", pool_max=3)
    assert same is old and backend_pid(same) == pid
    assert other_name is not old and changed is not old
    with Database(dsn, name="main", mode="pooled", pool_max=2, driver=driver).connection():
        pass  # not loading: a new object
    assert callable(old.__modpy_safe_close__)
    old.__modpy_safe_close__()  # what the importer does with a retired one
    with pytest.raises(PoolClosed, match="'main' is closed"):
        backend_pid(old)
    assert backend_pid(changed) != pid


def test_close_waits_for_checked_out_connections(postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_close"), name="closing", mode="pooled", pool_max=2)
    backend_pid(db)
    with held_by_another_thread(db):
        assert db.close(wait=0.05) is False  # bounded: gave up waiting, did not hang
        assert postgres.settled_count("db_close", expected=1) == 1  # the idle one is gone
    assert postgres.settled_count("db_close", expected=0) == 0


def test_budget_warning_once(postgres: Any, make: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="modpy_safe.pool")
    big = make(postgres.dsn_for("db_budget"), name="big", facts=facts("worker", 25, 16))
    backend_pid(big)
    backend_pid(big)
    warnings = [r.getMessage() for r in caplog.records if r.name == "modpy_safe.pool"]
    assert len(warnings) == 1
    assert "up to 400 connections (16 processes x 25)" in warnings[0]
    assert "203 too many" in warnings[0] and "pool_max" in warnings[0]
    assert "PgBouncer" in warnings[0] and postgres.password not in warnings[0]
    caplog.clear()
    backend_pid(make(postgres.dsn_for("db_budget"), name="small", facts=facts("prefork")))
    assert not [r for r in caplog.records if r.name == "modpy_safe.pool"]


def test_forked_child_never_uses_nor_terminates_the_parents_connection(
        postgres: Any, make: Any) -> None:
    db = make(postgres.dsn_for("db_fork"), name="fork")
    parent_pid = backend_pid(db)
    def child() -> dict[str, Any]:
        child_pid = backend_pid(db)
        stats = db.stats()
        db.close(wait=0)
        _driver._forsaken.clear()  # free the parent's objects: must not reach the server
        gc.collect()
        return {"pid": child_pid, "stats": stats}

    report = in_forked_child(child)
    assert "error" not in report, report
    assert report["pid"] != parent_pid and report["stats"]["discarded_fork"] == 1
    assert backend_pid(db) == parent_pid  # still alive and still the same one



def test_a_connection_that_died_before_its_first_use_is_unavailable_not_a_bug(
        postgres: Any, make: Any, driver: str) -> None:
    """A connection the driver already knows is closed when the request first uses it
    (the server went away between connect and first use; the budget check's query
    found it) gives "connection already closed": that is a 503, never a 500."""
    module = __import__(driver)

    def connect_then_lose(dsn: str) -> Any:
        conn = module.connect(dsn)
        conn.close()  # what a failed first statement leaves behind
        return conn

    db = make(postgres.dsn_for("db_died_early"), name="died_early", connect=connect_then_lose)
    with pytest.raises(DatabaseUnavailable, match="the connection was lost"):
        with db.transaction() as cur:
            cur.execute("SELECT 1")
