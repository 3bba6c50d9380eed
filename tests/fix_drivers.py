"""The database drivers the tests run for, and the ``driver`` fixture that parametrizes them.

A conftest.py that wants every test asking for ``driver`` to run once per
driver imports the fixture: ``from fix_drivers import driver``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

#: The drivers ``Database(driver=...)`` accepts.
DRIVERS = ("psycopg2", "psycopg")


def connect_function(driver: str) -> Callable[..., Any]:
    """Return the driver's own ``connect`` (``psycopg2.connect`` or ``psycopg.connect``)."""
    if driver == "psycopg":
        import psycopg

        return psycopg.connect
    import psycopg2

    return psycopg2.connect


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """Run the test once with psycopg2 and once with psycopg 3."""
    return str(request.param)
