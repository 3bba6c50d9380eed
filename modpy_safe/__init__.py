"""modpy_safe: safe reloading and MPM-aware database connections for mod_python.

The public API is what this module lists in ``__all__``; everything in an
``_underscore`` module is internal.
"""
from __future__ import annotations

from ._errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    HTTPError,
    ModpySafeError,
    NotInHttpdError,
    PoolClosed,
    PoolTimeout,
)
from .db.database import Database
from .reload.importer import ImportFailed, import_module
from .reload.resources import register, register_type
from .web.handler import Handler
from .web.response import Redirect, redirect

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
