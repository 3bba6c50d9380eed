"""``apache.import_module()`` from a file modpy_safe loaded, served by the safe importer.

mod_python 3.3 code imports its helpers with
``apache.import_module(name, autoreload=None, log=None, path=None)``. Called from a
module the importer loaded, that call is routed here (``_apache`` wraps mod_python's
function and asks :func:`import_for` first), so the helper is reloaded when it
changes, recorded as the caller's dependency, gets the default hooks, and is
keyed by its file: ``path=`` never hands back a same-named file from elsewhere.

How ``name`` is found, following mod_python 3.3's importer:

* an absolute path, ``~/x`` (the handler root), ``./x`` or ``../x`` (the caller's
  directory) names the file (``.py`` may be left out);
* a plain name is looked up as ``name.py`` in ``path`` (``~/`` allowed), then in the
  caller's directory and its ``__mp_path__``, then in ``mod_python.importer.path``
  and ``modpy_safe.reload.path``;
* a name found in none of them (a package, the standard library, site-packages)
  is imported by Python as usual, never reloaded.

``autoreload=False`` uses the loaded version without checking the file; ``log``
logs the import at INFO. Called from anything else (mod_python's own dispatcher,
a module Python imported), mod_python's function answers as before.
"""
from __future__ import annotations

import importlib
import logging
import os
import types
from collections.abc import Iterable
from typing import Any

from .. import _apache
from .._context import current_scope
from . import path as _path
from .loader import extra_dirs, import_child
from .versions import owner_of

__all__ = ["import_for", "find_file"]

log = logging.getLogger("modpy_safe.importer")

_EXPLICIT = ("/", "~/", "./", "../")


def find_file(name: str, caller: dict[str, Any], path: Iterable[str] | None,
              root: str | None, extra: Iterable[str]) -> str | None:
    """Return the ``.py`` file ``name`` means for a module with globals ``caller``.

    None when ``name`` is a module name found in no searched directory (Python's
    own import then answers). An explicit file that does not exist raises
    ModuleNotFoundError.
    """
    base = os.path.dirname(str(caller.get("__file__") or "")) or None
    if name.startswith(_EXPLICIT) or name == "~":
        if name.startswith("/"):
            file = name
        elif name.startswith("~"):
            file = _path.expand(name, root, option=f"apache.import_module({name!r})")
        elif base is None:
            raise ModuleNotFoundError(f"apache.import_module({name!r}): the caller has no "
                                      "__file__ to resolve a relative path against")
        else:
            file = os.path.join(base, name)
        file = os.path.normpath(file)
        for candidate in (file, file + ".py"):
            if candidate.endswith(".py") and os.path.isfile(candidate):
                return candidate
        raise ModuleNotFoundError(f"apache.import_module({name!r}): no file {file!r}",
                                  name=name, path=file)
    if not name.isidentifier():
        return None  # a dotted name: packages are Python's business
    dirs: list[str] = [_path.expand(d, root, option="apache.import_module(path=...)")
                       for d in (path or ())]
    if base is not None:
        dirs.append(base)
    dirs.extend(str(d) for d in caller.get("__mp_path__") or ())
    dirs.extend(extra)
    for directory in dict.fromkeys(dirs):
        candidate = os.path.join(directory, name + ".py")
        if os.path.isfile(candidate):
            return os.path.normpath(candidate)
    return None


def import_for(caller: dict[str, Any], name: str, autoreload: Any, logged: Any,
               path: Any) -> types.ModuleType | None:
    """Import ``name`` for the module whose globals are ``caller``; None if it is not ours."""
    owner = owner_of(caller)
    if owner is None:
        return None
    scope = current_scope()
    root = _path.handler_root(scope)
    extra = extra_dirs(scope.options, scope) if scope is not None else owner.dirs[1:]
    if isinstance(path, str):  # a common slip: one directory instead of a list
        path = [path]
    file = find_file(name, caller, path, root, extra)
    if file is None:
        return importlib.import_module(name)
    if autoreload is None:
        autoreload = scope is None or _apache.autoreload_enabled(scope.req)
    if logged:
        log.info("apache.import_module(%r) from %s: %s", name, owner.entry.path, file)
    return import_child(owner, file, check=bool(autoreload))


_apache.route_import_module(import_for)
