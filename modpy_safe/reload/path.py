"""Where imports of handler files look: the reload path, mod_python 3.3's path, ``~/``.

Two options name directories whose modules are loaded (and reloaded) by the
importer like the handler's own siblings:

* ``PythonOption modpy_safe.reload.path /srv/lib:~/shared`` -- separated by ``:``;
* ``PythonOption mod_python.importer.path "['~/lib', '/srv/lib']"`` -- mod_python
  3.3's option, a Python list of strings (read as a literal, never evaluated).

In both, ``~/`` (and ``~`` alone) means the handler root, as in mod_python 3.3: the
directory of the ``<Directory>`` section whose ``Python*Handler`` serves the request,
or the document root for a ``<Location>`` or the server level. An entry is never
expanded against a user's home directory.
"""
from __future__ import annotations

import ast
import os

from .. import _apache
from .._apache import Request
from .._context import RequestScope
from .._errors import ConfigError
from .._options import RELOAD_PATH, Options, as_paths, check

__all__ = ["search_path", "expand", "handler_root", "MP_OPTION", "ROOT_KEY"]

MP_OPTION = "mod_python.importer.path"
#: Key in ``RequestScope.data`` under which a caller that knows it (a filter) puts the root.
ROOT_KEY = "handler_root"
_NONE: tuple[str, ...] = ()


def _as_list(raw: str) -> tuple[str, ...]:
    """Read mod_python 3.3's ``['dir', ...]`` (a ``:``-separated string is accepted too)."""
    text = raw.strip()
    if not text.startswith(("[", "(")):
        return as_paths(text)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError("allowed: a Python list of directory names such as "
                         "\"['~/lib', '/srv/lib']\" (a literal: nothing is evaluated)")
    return tuple(value)


def expand(entry: str, root: str | None, *, option: str = "") -> str:
    """Return ``entry`` as an absolute directory, ``~/`` meaning ``root``."""
    if entry == "~" or entry.startswith("~/"):
        if root is None:
            raise ConfigError(
                f"{option or 'a search path'} uses {entry!r}, but this request has no "
                "handler root: '~/' means the directory of the <Directory> section whose "
                "Python*Handler serves it; use an absolute path here.")
        return os.path.normpath(os.path.join(root, entry[2:]))
    return os.path.abspath(entry)


def search_path(options: Options, root: str | None) -> tuple[str, ...]:
    """Return the extra directories of ``modpy_safe.reload.path`` and ``mod_python.importer.path``.

    ``root`` is the handler root (None when unknown). Each is validated once
    per configuration by ``options``; the expansion is cheap and done by the
    caller once per configuration and section.
    """
    found = [expand(entry, root, option=f"PythonOption {RELOAD_PATH.full_name}")
             for entry in options.value(RELOAD_PATH)]
    found += [expand(entry, root, option=f"PythonOption {MP_OPTION}")
              for entry in _mod_python_path(options)]
    return tuple(dict.fromkeys(found))


def _mod_python_path(options: Options) -> tuple[str, ...]:
    """Return ``mod_python.importer.path`` as written (parsed once per configuration)."""
    key = (MP_OPTION,)
    found: tuple[str, ...] | None = options.plans.get(key)
    if found is None:
        raw = options.raw(MP_OPTION)
        found = _NONE if raw is None else check(f"PythonOption {MP_OPTION}", raw, _as_list)
        options.plans[key] = found
    return found


def handler_root(scope: RequestScope | None) -> str | None:
    """Return the handler root of the request ``scope`` serves (see the module docstring)."""
    if scope is None:
        return None
    known = scope.data.get(ROOT_KEY)
    if known is not None:
        return str(known)
    return root_of(scope.req)


def root_of(req: Request) -> str | None:
    """Return the handler root of ``req``: its section's directory, else the document root."""
    directory = _apache.section_directory(req)
    if directory:
        return os.path.normpath(directory)
    document_root = getattr(req, "document_root", None)
    root = document_root() if document_root is not None else None
    return os.path.normpath(str(root)) if root else None
