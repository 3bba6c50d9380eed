"""postgres.fresh_database() and the fresh_db fixture: empty, distinct, dropped."""
from __future__ import annotations

from typing import Any

import psycopg2
import pytest


def test_fresh_databases_are_empty_distinct_and_dropped_even_when_in_use(postgres: Any) -> None:
    with postgres.fresh_database() as first, postgres.fresh_database("other") as second:
        assert first.name != second.name and second.name.startswith("other_")
        first.execute("CREATE TABLE t (x int)")
        assert second.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace") == [(0,)]
        left_open = psycopg2.connect(first.dsn_for("fresh_left_open"))
    try:
        names = {row[0] for row in postgres.admin_execute("SELECT datname FROM pg_database")}
        assert first.name not in names and second.name not in names
        assert left_open.closed or postgres.count_connections("fresh_left_open") == 0
    finally:
        left_open.close()


def test_the_fixture_gives_the_test_role_its_own_database(fresh_db: Any, postgres: Any) -> None:
    assert fresh_db.execute("SELECT current_database(), current_user") == [
        (fresh_db.name, postgres.role)]
    fresh_db.execute("CREATE TABLE notes (id serial PRIMARY KEY)")  # the role owns public
    assert postgres.password in fresh_db.dsn and f"dbname={fresh_db.name}" in fresh_db.dsn


@pytest.mark.parametrize("prefix", ["", "Upper", "1st", "semi;colon", "x" * 41])
def test_a_bad_prefix_is_refused(postgres: Any, prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix must be"):
        postgres.fresh_database(prefix)
