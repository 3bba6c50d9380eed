"""The psycopg 3 driver in plain Python: what differs from psycopg2 and how it is chosen."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from modpy_safe import ConfigError, Database, DatabaseUnavailable
from modpy_safe._context import RequestScope
from modpy_safe._options import Options


@pytest.fixture
def made() -> Iterator[list[Database]]:
    dbs: list[Database] = []
    yield dbs
    for db in dbs:
        db.close(wait=1)


def test_driver_psycopg_hands_out_psycopg_3_connections(postgres: Any, made: list) -> None:
    db = Database(postgres.dsn_for("pg3_type"), name="pg3_type", driver="psycopg")
    made.append(db)
    with db.connection() as conn:
        assert isinstance(conn, psycopg.Connection)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with db.transaction() as cur:
        assert isinstance(cur, psycopg.Cursor)
    assert db.describe()["settings"]["driver"] == "psycopg"


def test_the_driver_option_chooses_psycopg(postgres: Any, made: list) -> None:
    db = Database(name="pg3_opt")
    made.append(db)
    options = {"modpy_safe.db.pg3_opt.dsn": postgres.dsn_for("pg3_opt"),
               "modpy_safe.db.pg3_opt.driver": "psycopg"}
    with RequestScope(None, Options(options)), db.connection() as conn:
        assert isinstance(conn, psycopg.Connection)


def test_a_bad_driver_names_the_option_and_the_drivers(postgres: Any) -> None:
    db = Database(postgres.dsn, name="pg3_bad")
    with RequestScope(None, Options({"modpy_safe.db.pg3_bad.driver": "psycopg4"})):
        with pytest.raises(ConfigError) as info, db.connection():
            pass
    assert "modpy_safe.db.pg3_bad.driver" in str(info.value) and "'psycopg4'" in str(info.value)
    assert "allowed: psycopg2, psycopg." in str(info.value)
    with pytest.raises(ConfigError, match="argument driver has value 'pg8000'"):
        Database(postgres.dsn, driver="pg8000")


def test_discard_all_keeps_psycopgs_prepared_statements_in_step(postgres: Any, made: list) -> None:
    """DISCARD ALL drops the server's prepared statements: psycopg must forget them too."""
    db = Database(postgres.dsn_for("pg3_prepared"), name="pg3_prepared", driver="psycopg",
                  reset="discard",
                  connect=lambda dsn: psycopg.connect(dsn, prepare_threshold=0))
    made.append(db)
    for _ in range(3):
        with db.connection() as conn:  # prepared on first use, discarded on return
            assert conn.execute("SELECT %s::int + 1", (41,)).fetchone() == (42,)
            conn.commit()  # returned idle: no rollback, which would clear psycopg's list
    assert db.stats()["discarded_error"] == 0


def test_session_defaults_are_restored_on_return(postgres: Any, made: list) -> None:
    db = Database(postgres.dsn_for("pg3_session"), name="pg3_session", driver="psycopg")
    made.append(db)
    with db.connection() as conn:
        conn.read_only = True
        conn.deferrable = True
        conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        first = conn
    with db.connection() as conn:
        assert conn is first
        assert (conn.read_only, conn.deferrable, conn.isolation_level, conn.autocommit) == (
            None, None, None, False)
        # Nothing forces READ WRITE: the server's default decides.
        conn.execute("SET SESSION default_transaction_read_only = on")
        conn.commit()
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)


def test_a_connection_lost_in_a_block_is_database_unavailable(postgres: Any,
                                                              made: list) -> None:
    db = Database(postgres.dsn_for("pg3_lost"), name="pg3_lost", driver="psycopg")
    made.append(db)
    with pytest.raises(DatabaseUnavailable, match="connection was lost") as info:
        with db.connection() as conn:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    with db.connection() as conn:  # replaced at the next checkout
        assert conn.execute("SELECT 1").fetchone() == (1,)
