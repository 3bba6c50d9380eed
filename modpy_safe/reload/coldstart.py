"""Import hooks for the first requests of a fresh interpreter, which arrive on many threads.

mod_python 3.5 creates a child's interpreter when its first request comes, and
when several come together each of their threads may create one: its table of
interpreters is filled without a lock (a fresh event child with 16 threads was
seen with 16 interpreters of the same name, one per thread, 15 of which never
served a second request). Two races follow, and this module closes both.

1. **psycopg2's C extension is initialised twice.** ``psycopg2._psycopg`` uses
   single-phase initialisation: the first import in a process runs its C init,
   later ones (in any interpreter) copy the module that init made. Two
   interpreters importing it at once both run the init; the second builds a
   module without ``encodings`` (``ImportError: cannot import name 'encodings'
   from 'psycopg2._psycopg'``), leaves that copy for every later interpreter,
   and re-creates the exception classes the C code raises, so even the first
   interpreter's ``except psycopg2.Error`` stops matching. Python's import
   locks are per interpreter and do not help. The first import of each package
   in :data:`GUARDED` therefore runs under one lock shared by every
   interpreter of the process: an ``flock`` on a memfd that the first
   interpreter makes and the others find in ``/proc/self/fd``. Those packages
   import only the standard library and themselves, so a thread that holds a
   module lock and waits for this one never holds what the importer needs.
2. **mod_python hands out a module that is still executing.** Its
   ``import_module`` skips Python's import lock when another thread looked at
   the module in the last second, and then finds no ``handler`` in it
   (``module '.../dispatch.py' contains no 'handler'``). The modules named in
   :data:`ENTRY_POINTS` are therefore created with each mod_python handler
   name already bound to a function that waits for the import to finish (with
   the import lock, as any import does) and calls the real one; the module's
   own definitions replace them, and names the module does not define are
   removed when it is complete.

:func:`install` puts the finder that does this first on ``sys.meta_path``;
``modpy_safe/__init__.py`` calls it before anything imports psycopg2. What
cannot be repaired is a process where another interpreter, one without
modpy_safe, initialised psycopg2 at the same moment: the import then says so
in the error log, with the fix, and ends the child so that Apache starts a
fresh one instead of answering 500 for ever.
"""
from __future__ import annotations

import _imp
import contextlib
import fcntl
import importlib
import os
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

__all__ = ["GUARDED", "ENTRY_POINTS", "FIX", "install", "process_lock", "broken_reason",
           "Poisoned"]

#: Top-level packages whose first import in an interpreter is serialized process-wide.
GUARDED = frozenset({"psycopg2"})

#: Modules named in ``PythonHandler`` directives, and the names mod_python looks up in them.
ENTRY_POINTS = frozenset({"modpy_safe.dispatch", "modpy_safe.publisher", "modpy_safe.status"})
HANDLER_NAMES = (
    "handler", "postreadrequesthandler", "transhandler", "maptostoragehandler",
    "headerparserhandler", "inithandler", "accesshandler", "authenhandler", "authzhandler",
    "typehandler", "fixuphandler", "loghandler", "cleanuphandler", "inputfilter",
    "outputfilter", "connectionhandler",
)

FIX = ("The fix: have each interpreter that uses psycopg2 import it when the child "
       "starts, with 'PythonImport modpy_safe.dispatch <interpreter name>' (for handlers "
       "without modpy_safe: 'PythonImport psycopg2 <interpreter name>'); see "
       "docs/troubleshooting.md, \"cannot import name 'encodings'\".")

_MEMFD_NAME = "modpy_safe-first-import"
_MEMFD_LINK = f"/memfd:{_MEMFD_NAME} (deleted)"
_lock_path: str | None = None  # this process's lock, as /proc/self/fd/N


class Poisoned(ImportError):
    """psycopg2's C extension was initialised twice in this process; it is unusable here."""

    __module__ = "modpy_safe"


# ----------------------------------------------------------------- the process lock
def _is_lock(path: str) -> bool:
    try:
        return os.readlink(path) == _MEMFD_LINK
    except OSError:
        return False


def _find_or_make_lock() -> str:
    """Return this process's lock file as a /proc/self/fd path; make it if none exists."""
    # _imp's lock is one per process, shared by every interpreter: looking and
    # making are one step, so two interpreters never make two locks.
    _imp.acquire_lock()
    try:
        for entry in os.listdir("/proc/self/fd"):
            if _is_lock(f"/proc/self/fd/{entry}"):
                return f"/proc/self/fd/{entry}"
        return f"/proc/self/fd/{os.memfd_create(_MEMFD_NAME)}"
    finally:
        _imp.release_lock()


@contextlib.contextmanager
def process_lock() -> Iterator[None]:
    """Hold the lock shared by every interpreter of this process (and by its forks).

    Without ``/proc`` or memfd (not Linux) there is no such lock: the block runs
    unguarded, as it would without modpy_safe.
    """
    global _lock_path
    try:
        if _lock_path is None or not _is_lock(_lock_path):
            _lock_path = _find_or_make_lock()
        # A new open file description each time: flock() excludes every other
        # description of the file, also one opened by another thread of this process.
        fd = os.open(_lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, AttributeError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits without holding the GIL
        yield
    finally:
        os.close(fd)  # releases it


# ------------------------------------------------------------ is psycopg2 usable?
def _psycopg2_broken(module: types.ModuleType) -> str | None:
    c_module = sys.modules.get("psycopg2._psycopg")
    if c_module is None or not hasattr(c_module, "encodings"):
        return "its C module psycopg2._psycopg lacks the names its first init made"
    try:
        c_module.parse_dsn("=")  # libpq rejects it: the C code raises ProgrammingError
    except Exception as exc:
        if type(exc).__name__ == "ProgrammingError" and type(exc) is not getattr(
                module, "ProgrammingError", None):
            return ("the exception classes its C code raises are not the ones this "
                    "interpreter's psycopg2 defines")
    return None


_CHECKS: dict[str, Callable[[types.ModuleType], str | None]] = {"psycopg2": _psycopg2_broken}


def broken_reason(name: str, exc: BaseException | None = None) -> str | None:
    """Return why the guarded package ``name`` cannot be used in this process, or None.

    ``exc`` is the error its import raised, if it raised: an ImportError of a
    name from psycopg2's C module is the mark of a second init.
    """
    if exc is not None:
        text = str(exc)
        if isinstance(exc, ImportError) and "cannot import name" in text and "_psycopg" in text:
            return f"its import failed: {text}"
        return None
    module = sys.modules.get(name)
    check = _CHECKS.get(name)
    return check(module) if module is not None and check is not None else None


def _give_up(name: str, reason: str) -> None:
    """Say what happened and how to fix it; inside httpd, end this child process."""
    message = (f"modpy_safe: {name} cannot be used in process {os.getpid()}: {reason}. "
               f"Two interpreters of this process initialised its C extension at the same "
               f"time, at least one of them without modpy_safe, and that cannot be repaired "
               f"inside the process. {FIX}")
    if "_apache" not in sys.modules:  # mod_python's C module: not inside httpd
        raise Poisoned(message)
    # The error log is this process's stderr. Write to it directly: modpy_safe's
    # logging imports what just failed. Then end the child: each of its requests
    # that touches psycopg2 would fail, and Apache replaces a child that exits
    # (a worker or event child ignores SIGTERM, so there is no gentler way).
    with contextlib.suppress(OSError):
        os.write(2, f"{message} This child exits now; Apache starts a new one.\n".encode())
    os._exit(0)


# ----------------------------------------------------------------------- loaders
class _SerializedLoader:
    """Run a guarded package's first import under :func:`process_lock`, then check it."""

    def __init__(self, name: str, loader: Any) -> None:
        self.name = name
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        _restore_loader(module, self.loader)
        with process_lock():
            try:
                self.loader.exec_module(module)
            except ImportError as exc:
                reason = broken_reason(self.name, exc)
                if reason is not None:
                    _give_up(self.name, reason)
                raise
            reason = broken_reason(self.name)
        if reason is not None:
            _give_up(self.name, reason)


def _waiting(module_name: str, attr: str) -> Callable[..., Any]:
    """Return a stand-in for ``module_name.attr`` that waits for the module to be complete."""

    def early(*args: Any, **kwargs: Any) -> Any:
        # The import lock of a module still executing makes this wait for it.
        module = importlib.import_module(module_name)
        return getattr(module, attr)(*args, **kwargs)

    early.__name__ = early.__qualname__ = attr
    early.__modpy_safe_stand_in__ = True  # type: ignore[attr-defined]
    return early


class _EntryPointLoader:
    """Create an entry module with its handler names bound before it is visible to others."""

    def __init__(self, name: str, loader: Any) -> None:
        self.name = name
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        module = self.loader.create_module(spec) or types.ModuleType(spec.name)
        for attr in HANDLER_NAMES:
            setattr(module, attr, _waiting(spec.name, attr))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        _restore_loader(module, self.loader)
        try:
            self.loader.exec_module(module)
        finally:
            for attr in HANDLER_NAMES:
                if getattr(getattr(module, attr, None), "__modpy_safe_stand_in__", False):
                    delattr(module, attr)


def _restore_loader(module: types.ModuleType, loader: Any) -> None:
    # The module sees its real loader (tracebacks read the source through it).
    module.__loader__ = loader
    if module.__spec__ is not None:
        module.__spec__.loader = loader


class _Finder:
    """First on ``sys.meta_path``: wraps the loaders of guarded packages and entry modules."""

    @classmethod
    def find_spec(cls, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> Any:
        if fullname in GUARDED:
            wrap: type[_SerializedLoader | _EntryPointLoader] = _SerializedLoader
        elif fullname in ENTRY_POINTS:
            wrap = _EntryPointLoader
        else:
            return None
        meta_path = list(sys.meta_path)
        after = meta_path.index(cls) + 1 if cls in meta_path else 0
        for finder in meta_path[after:]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = wrap(fullname, spec.loader)
            return spec
        return None


def install() -> None:
    """Put the finder first on this interpreter's ``sys.meta_path`` (once).

    A guarded package this interpreter imported before is checked instead.
    """
    if _Finder in sys.meta_path:
        return
    sys.meta_path.insert(0, _Finder)
    for name in sorted(GUARDED & set(sys.modules)):
        reason = broken_reason(name)
        if reason is not None:
            _give_up(name, reason)
