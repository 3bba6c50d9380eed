"""Decide which file and which callable serve a request.

``PythonOption modpy_safe.handler <file>[::<name>]`` names one target for the
whole section; the file is absolute or relative to the section's directory.
"""
from __future__ import annotations

import os
from typing import Any, NamedTuple

from ._errors import ConfigError, HTTPError
from ._options import Options

__all__ = ["Target", "resolve", "find"]


class Target(NamedTuple):
    path: str  # absolute path of the .py file
    name: str  # the callable (or Handler class) in it


def _section_dir(req: Any) -> str:
    directory = req.hlist.directory or os.path.dirname(req.filename or "") or "/"
    return str(directory)


def resolve(req: Any, options: Options) -> Target:
    """Return the target named by ``modpy_safe.handler`` for this request."""
    spec = options.raw("handler")
    if spec is None:
        raise ConfigError(
            "PythonOption modpy_safe.handler is not set: name the handler file, "
            "e.g. 'PythonOption modpy_safe.handler app.py::handler'."
        )
    path, _, name = spec.partition("::")
    path = path.strip()
    if not path.endswith(".py"):
        raise ConfigError(
            f"PythonOption modpy_safe.handler has value {spec!r}: allowed: "
            "a path to a .py file, optionally followed by ::<callable>."
        )
    if not os.path.isabs(path):
        path = os.path.join(_section_dir(req), path)
    return Target(os.path.normpath(path), name.strip() or "handler")


def find(module: Any, target: Target) -> Any:
    """Return the callable ``target.name`` of ``module``; 500 with a clear message if absent."""
    try:
        return getattr(module, target.name)
    except AttributeError:
        raise HTTPError(
            500, f"{target.path} defines no {target.name!r} to handle the request"
        ) from None
