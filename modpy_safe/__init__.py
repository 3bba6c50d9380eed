"""modpy_safe: safe reloading and MPM-aware database connections for mod_python.

The public API is what this module lists in ``__all__``; everything in an
``_underscore`` module is internal.
"""
from __future__ import annotations

# First, before anything below imports psycopg2: under a threaded MPM the first
# requests import it in several interpreters at once (see reload/coldstart.py).
from .reload import coldstart as _coldstart

_coldstart.install()

from ._errors import (  # noqa: E402
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    HTTPError,
    ModpySafeError,
    NotInHttpdError,
    PoolClosed,
    PoolTimeout,
)
from .db.database import Database  # noqa: E402
from .reload.importer import ImportFailed, import_module  # noqa: E402
from .reload.resources import register, register_type  # noqa: E402
from .web.handler import Handler  # noqa: E402
from .web.response import Redirect, redirect  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Database",
    "DatabaseError",
    "DatabaseUnavailable",
    "HTTPError",
    "Handler",
    "ImportFailed",
    "ModpySafeError",
    "NotInHttpdError",
    "PoolClosed",
    "PoolTimeout",
    "Redirect",
    "__version__",
    "import_module",
    "redirect",
    "register",
    "register_type",
]
