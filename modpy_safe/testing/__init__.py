"""Run handlers through a real Apache httpd and a private PostgreSQL in tests.

This module is a pytest plugin (registered by the ``pytest11`` entry point), so
a project that installs modpy_safe gets its fixtures:

``postgres`` (session)
    A private PostgreSQL cluster made with Debian's ``initdb`` in a temporary
    directory, on a free port, with password authentication for a test role.
    When the tests run as root the cluster runs as the ``postgres`` user.
``fresh_db`` (function)
    An empty database of that cluster for one test (:class:`FreshDatabase`:
    ``dsn``, ``execute(sql)``), dropped when the test ends.
``httpd`` (factory)
    ``httpd(mpm="prefork", directory="PythonHandler ...", files={...})`` starts
    an httpd with mod_python for one MPM on a free port and returns a
    :class:`Httpd`; every server is stopped when the test ends. Its directory
    is removed when the test passed, and kept, named in the failure report
    with the end of its error log, when it failed.
``mpm``
    Parametrizes a test over ``prefork``, ``worker`` and ``event``.

It registers the ``httpd`` marker (and puts it on every test that uses the
``httpd`` fixture). The user's guide is docs/testing.md.

The classes work without pytest too: ``apache/serve.py`` (``make run``) uses them.
"""
from __future__ import annotations

from .base import APACHE2, CHECKOUT, MPMS, SetupError, free_port, make_tempdir
from .httpd import Httpd, Response, dependency_paths, readable_pythonpath, running
from .pgbouncer import PgBouncer
from .postgres import FreshDatabase, PostgresServer

# The fixtures and hooks, so that this package stays the plugin module the
# ``pytest11`` entry point (and ``pytest_plugins = ["modpy_safe.testing"]``) names.
try:
    from .plugin import (  # noqa: F401
        fresh_db,
        httpd,
        mpm,
        pgbouncer,
        postgres,
        pytest_collection_modifyitems,
        pytest_configure,
        pytest_runtest_makereport,
        pytest_terminal_summary,
    )
except ImportError:  # used without pytest (apache/serve.py)
    pass

__all__ = [
    "PostgresServer", "FreshDatabase", "PgBouncer", "Httpd", "Response", "MPMS", "free_port",
    "SetupError", "make_tempdir", "readable_pythonpath", "dependency_paths", "running",
    "APACHE2", "CHECKOUT",
]
