"""Run handlers through a real Apache httpd and a private PostgreSQL in tests.

This module is a pytest plugin (registered by the ``pytest11`` entry point), so
a project that installs modpy_safe gets its fixtures:

``postgres`` (session)
    A private PostgreSQL cluster made with Debian's ``initdb`` in a temporary
    directory, on a free port, with password authentication for a test role.
    When the tests run as root the cluster runs as the ``postgres`` user.
``httpd`` (factory)
    ``httpd(mpm="prefork", directory="PythonHandler ...", files={...})`` starts
    an httpd with mod_python for one MPM on a free port and returns a
    :class:`Httpd`; every server is stopped when the test ends, and its error
    log is shown when the test failed.
``mpm``
    Parametrizes a test over ``prefork``, ``worker`` and ``event``.

The classes work without pytest too: ``apache/serve.py`` (``make run``) uses them.
"""
from __future__ import annotations

from .base import APACHE2, CHECKOUT, MPMS, SetupError, free_port, make_tempdir
from .httpd import Httpd, Response, dependency_paths, readable_pythonpath, running
from .pgbouncer import PgBouncer
from .postgres import PostgresServer

# The fixtures and hooks, so that this package stays the plugin module the
# ``pytest11`` entry point (and ``pytest_plugins = ["modpy_safe.testing"]``) names.
try:
    from .plugin import (  # noqa: F401
        httpd,
        mpm,
        pgbouncer,
        postgres,
        pytest_runtest_makereport,
    )
except ImportError:  # used without pytest (apache/serve.py)
    pass

__all__ = [
    "PostgresServer", "PgBouncer", "Httpd", "Response", "MPMS", "free_port", "SetupError",
    "make_tempdir", "readable_pythonpath", "dependency_paths", "running", "APACHE2",
    "CHECKOUT",
]
