"""Fixtures of the database tests: a test that asks for ``driver`` runs once per driver."""
from __future__ import annotations

from fix_drivers import driver  # noqa: F401 - the fixture, used by name
