"""Decide which file and which callable serve a request.

Two ways, chosen per section:

* ``PythonOption modpy_safe.handler <file>[::<name>]`` names one target for the
  whole section. ``<file>`` is a path to a ``.py`` file, absolute or relative to
  the section's ``<Directory>`` (in a ``<Location>`` or at server level: to the
  first ``sys.path`` entry that holds it, as mod_python finds
  ``PythonHandler mymodule``). A bare module name works too: ``mymodule`` means
  ``mymodule.py`` and ``pkg.mod`` means ``pkg/mod.py``, so a ``PythonHandler``
  line moves over unchanged. ``<name>`` defaults to ``handler``.
* Without it the request's file decides: ``/app/notes.py`` and ``/app/notes``
  (when ``notes.py`` exists) go to ``notes.py``'s ``handler``; a directory goes
  to its ``index.py``; an existing file of another kind is left to Apache
  (DECLINED), so static files keep being served; anything else is 404.

The option is read once per configuration (by its plan, ``web/plan.py``); a
URL-routed request costs a dict lookup (plus one ``stat`` for an extensionless
URL the first time).
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, NamedTuple

from .._apache import Request
from .._errors import ConfigError, HTTPError
from .._options import HANDLER, Options, as_handler_spec

__all__ = ["Target", "is_fixed", "fixed_target", "resolve_by_url", "find", "parse_spec",
           "locate", "OPTION", "MissingHandlerFile"]

OPTION = "modpy_safe.handler"
_CACHE_LIMIT = 1024


class Target(NamedTuple):
    """The file and the name in it that serve a request."""

    path: str  # absolute path of the .py file
    name: str  # the callable (or Handler class) in it
    explicit: bool  # named by modpy_safe.handler (a missing name is a config error)


parse_spec = as_handler_spec  # ``file[::name]`` -> (path, name); declared with the option


# req.filename → its Target: a .py file, or an extensionless URL whose .py exists.
_by_file: dict[str, Target] = {}
_lock = threading.Lock()


def locate(relative: str, directory: str | None, option: str = OPTION) -> str:
    """Return the absolute path of handler file ``relative`` named by ``option``.

    Relative to the section's ``directory``, else to the first ``sys.path``
    entry that holds it; a missing file in a section is kept (404 until it
    appears), anywhere else it is a configuration error.
    """
    if os.path.isabs(relative):
        return os.path.normpath(relative)
    # mod_python's order for 'PythonHandler mymodule': the section's directory,
    # then sys.path (PythonPath).
    candidates = ([directory] if directory else []) + [entry or "." for entry in sys.path]
    for base in candidates:
        candidate = os.path.join(base, relative)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    if directory:
        # Not there yet: requests get 404 until the file appears.
        return os.path.normpath(os.path.join(directory, relative))
    raise ConfigError(
        f"PythonOption {option} names {relative!r}, which is not in any sys.path entry: "
        "give an absolute path, or put 'PythonHandler modpy_safe.dispatch' in a "
        "<Directory> section to resolve it against that directory."
    )


class MissingHandlerFile(ConfigError):
    """An option names a handler file that does not exist.

    ``status`` is what the client gets: 404 for the content (the file may be
    on its way, as for a URL-routed page), 500 for a phase before it, which
    fails closed.
    """

    __module__ = "modpy_safe"

    def __init__(self, option: str, section: str, path: str, *, status: int = 404) -> None:
        self.status = status
        super().__init__(
            f"PythonOption {option} names {path}, which does not exist (for the handler "
            f"declared in {section}). Create the file or correct the option: a relative "
            "name is looked up in that section's directory, then on sys.path.")
        self.option, self.section, self.path = option, section, path

    def first_report(self) -> bool:
        """Return True the first time this process reports this option, section and path."""
        key = (self.option, self.section, self.path)
        with _lock:
            if key in _reported:
                return False
            _reported.add(key)
            return True


# What MissingHandlerFile has reported in this process: its detail goes to the log once.
_reported: set[tuple[str, str, str]] = set()


def is_fixed(options: Options) -> bool:
    """Return True when ``modpy_safe.handler`` names the section's one target."""
    return options.is_set(HANDLER)


def fixed_target(options: Options, directory: str | None) -> Target:
    """Return the target ``modpy_safe.handler`` names, resolved against ``directory``.

    Called once per configuration (the plan keeps the result).
    """
    relative, name = options.value(HANDLER)
    return Target(locate(relative, directory), name, True)


def resolve_by_url(req: Request) -> Target | None:
    """Return the target the request's file names, or None to leave it to Apache.

    Raises :class:`HTTPError` 404 when the URL names no handler file.
    """
    filename: str = req.filename or ""
    target = _by_file.get(filename)
    if target is not None:
        return target
    if filename.endswith(".py"):
        # Whether it exists is the importer's question (FileNotFoundError → 404).
        return _remember(filename, Target(filename, "handler", False))
    return _by_request_file(filename)


def _remember(filename: str, target: Target) -> Target:
    with _lock:
        if len(_by_file) >= _CACHE_LIMIT:  # bounded, whatever URLs clients invent
            _by_file.clear()
        _by_file[filename] = target
    return target


def _by_request_file(filename: str) -> Target | None:
    candidate = filename + ".py"
    if os.path.isfile(candidate):
        return _remember(filename, Target(candidate, "handler", False))
    if os.path.isdir(filename):
        index = os.path.join(filename, "index.py")
        if os.path.isfile(index):
            return Target(index, "handler", False)
    elif os.path.exists(filename):
        return None  # a static file: Apache's default handler serves it
    raise HTTPError(404, "There is no page at this address.")


def find(module: Any, target: Target) -> Any:
    """Return the callable ``target.name`` of ``module``.

    A file reached through its URL without that name is not a page (404); a name
    given in ``modpy_safe.handler`` that is missing is a configuration error.
    """
    obj = getattr(module, target.name, None)
    if obj is not None and callable(obj):
        return obj
    if not target.explicit:
        raise HTTPError(404, "There is no page at this address.")
    raise ConfigError(
        f"PythonOption {OPTION} names {target.name!r} in {target.path!r}, but that file "
        f"defines no function or Handler class called {target.name!r}."
    )
