"""Check a file and its dependencies, load a changed version, and track its imports.

:func:`fresh` is the one way to get an entry's current instance: within the
reload interval it returns it without a lock or a system call; otherwise it
stats the file and its dependencies and, when a version changed, loads the new
one under the load lock (the reload protocol in DESIGN.md). Each loaded
version gets private builtins whose ``__import__`` loads sibling files through
:func:`import_child`, which records them as the version's dependencies.
"""
from __future__ import annotations

import builtins
import linecache
import os
import sys
import threading
import time
import traceback
import types
from typing import Any

from .. import _apache
from .._apache import Request
from .._context import Loading, RequestScope, current_scope
from .._options import RELOAD_INTERVAL, Options
from .._redact import scrub
from ..ops.counters import count_reload_failure
from . import path as _path
from . import resources as _resources
from .versions import (
    OWNER_KEY,
    Entry,
    ImportFailed,
    Instance,
    ReloadError,
    Stamp,
    close_all,
    entries,
    entry_for,
    lease,
    load_lock,
    log,
    owner_of,
    release,
    stat_file,
    sweeper,
)

__all__ = ["fresh", "extra_dirs", "import_child"]



def _close_all_at_exit() -> None:
    close_all()


# ---------------------------------------------------------------- checking


def _check_dependencies(inst: Instance | None) -> tuple[tuple[str, int], ...]:
    """Check every file ``inst`` imported now, reloading the ones that changed.

    Return (path, generation) for each, -1 for a file that is gone. A
    dependency is checked whenever its parent is, whatever its interval.
    """
    if inst is None:
        return ()
    gens = []
    for child in sorted(inst.children_instances(), key=lambda c: c.entry.path):
        try:
            current = fresh(child.entry, None, 0.0, debug=False, force=True)
            gens.append((child.entry.path, current.generation))
        except FileNotFoundError:
            gens.append((child.entry.path, -1))
        except ImportFailed:
            gens.append((child.entry.path, child.generation))
    return tuple(gens)


def _loaded_key(inst: Instance) -> tuple[Any, ...]:
    """Identify the version ``inst`` is: its file's stamp and its dependencies' generations."""
    deps = sorted((c.entry.path, c.generation) for c in inst.children_instances())
    return (inst.mtime, tuple(deps))


def extra_dirs(options: Options, scope: RequestScope | None = None) -> tuple[str, ...]:
    """Return the ``reload.path`` and ``mod_python.importer.path`` directories.

    ``~/`` in them is the handler root of the request ``scope`` serves.
    """
    return _path.search_path(options, _path.handler_root(scope))


def fresh(entry: Entry, extra: tuple[str, ...] | None, interval: float, *, debug: bool,
           force: bool = False, req: Request | None = None) -> Instance:
    """Return ``entry``'s instance after reloading it if it (or a dependency) changed.

    ``extra`` are the ``reload.path`` directories its plain imports may load
    from (None: those of the previous instance).
    """
    inst = entry.instance
    now = time.monotonic()
    if inst is not None and not force and now - entry.checked_at < interval:
        return inst  # the fast path: no lock, no system call
    if entry.loading is not None and entry.loading_thread == threading.get_ident():
        # An import cycle inside the load this thread is running: like Python,
        # hand out the partly initialized module.
        return entry.loading
    entry.checked_at = now
    key = (stat_file(entry.path), _check_dependencies(inst))
    if inst is not None and key == _loaded_key(inst):
        return inst
    if key == entry.failed_key:
        return _failed(entry, inst, debug)
    with load_lock:
        current = entry.instance
        if current is not None and current is not inst:
            return current  # another thread loaded it while we waited
        if key == entry.failed_key:  # another thread's load of this version failed
            return _failed(entry, inst, debug)
        if extra is None:
            extra = inst.dirs[1:] if inst is not None else ()
        dirs = tuple(dict.fromkeys(
            [os.path.dirname(entry.path)] + [os.path.abspath(d) for d in extra]))
        try:
            return _load(entry, dirs, req)
        except ImportFailed:
            return _failed(entry, entry.instance, debug)


def _failed(entry: Entry, inst: Instance | None, debug: bool) -> Instance:
    """Answer for a version that failed: the old instance, or the error."""
    assert entry.failure is not None
    error, cause = entry.failure
    if inst is None or debug:
        raise ImportFailed(entry.path, error) from cause
    return inst


# ---------------------------------------------------------------- loading


def _load(entry: Entry, dirs: tuple[str, ...], req: Request | None) -> Instance:
    """Load a new instance of ``entry`` (caller holds ``load_lock``) and make it current."""
    old = entry.instance
    source, mtime = _read_source(entry.path)
    if old is not None and not source.strip():
        # An editor that truncates before it writes: the old version answers
        # until the content arrives (the next check sees the new stamp).
        return old
    generation = entry.generation + 1
    module = types.ModuleType(entry.label)
    inst = Instance(entry, module, generation, mtime, dirs)
    _prepare(inst)
    handed: dict[int, tuple[str, Any]] = {}
    predecessor: dict[str, Any] | None = None
    if old is not None:
        predecessor = old.namespace
        handed = _hand_over(old, inst)
        if not _run_user_clone(old, inst):
            handed, predecessor = {}, None
    previous = sys.modules.get(entry.label)
    entry.loading, entry.loading_thread = inst, threading.get_ident()
    try:
        code = compile(source, entry.path, "exec", dont_inherit=True)
        # Registered before its code runs, as Python does: dataclasses and typing
        # look the module up by name while the class bodies execute.
        sys.modules[entry.label] = module
        with Loading(entry.path, entry.label, inst.namespace, predecessor, generation):
            exec(code, inst.namespace)
        _unhand_unused(inst, handed, code)
    except Exception as exc:
        if previous is not None:
            sys.modules[entry.label] = previous
        else:
            sys.modules.pop(entry.label, None)
        _discard(inst, handed)
        error = _describe(entry.path, exc)
        entry.failure = (error, exc)
        entry.last_error = error
        count_reload_failure()
        # The version as read, with its dependencies as they are now (the failed
        # code may have reloaded one): not tried again until one of them changes.
        entry.failed_key = (mtime, _check_dependencies(old))
        what = "load" if old is None else "reload"
        log.error("%s of %s failed at %s:%d: %s", what, entry.path, error.file, error.line,
                  error.message)
        # The traceback once per failed version; the next request sees failed_key.
        log.error("%s", error.traceback.rstrip())
        raise ImportFailed(entry.path, error) from exc
    finally:
        entry.loading, entry.loading_thread = None, 0
    linecache.checkcache(entry.path)
    inst.tree_cache = inst.tree()
    entry.instance = inst
    entry.generation = generation
    entry.failure = None
    entry.failed_key = None
    if old is None:
        log.info("loaded %s as %s (generation %d)", entry.path, entry.label, generation)
        if req is not None:
            _apache.on_child_exit(_close_all_at_exit, req)
    else:
        log.info("reloaded %s (generation %d)", entry.path, generation)
        sweeper.retire(old)
    return inst


def _read_source(path: str) -> tuple[bytes, Stamp]:
    """Return the file's bytes and the stamp they belong to.

    An editor that truncates and rewrites in place can be caught halfway: read
    again while the file changes under us (bounded), and record the stamp seen
    before reading, so a later check still notices a newer one.
    """
    for _ in range(5):
        with open(path, "rb") as source:
            before = os.fstat(source.fileno())
            data = source.read()
        try:
            after = os.stat(path)
        except FileNotFoundError:
            break  # replaced by rename right now: what we read is a whole version
        same = (after.st_mtime_ns, after.st_size, after.st_ino) == (
            before.st_mtime_ns, before.st_size, before.st_ino)
        if same and len(data) == before.st_size:
            break
    return data, (before.st_mtime_ns, before.st_size, before.st_ino)


def _prepare(inst: Instance) -> None:
    """Fill a fresh namespace: identity, private builtins, default hooks."""
    ns = inst.namespace
    own_builtins = dict(builtins.__dict__)
    own_builtins["__import__"] = _import_hook(inst, builtins.__import__)
    own_builtins[OWNER_KEY] = inst
    ns.update(
        __file__=inst.entry.path,
        __builtins__=own_builtins,
        __cached__=None,
        # mod_python 3.3's name for where this module's imports look.
        __mp_path__=list(inst.dirs),
        __mp_clone__=_default_clone(inst),
        __mp_purge__=_default_purge(inst),
    )


def _default_clone(inst: Instance) -> Any:
    def __mp_clone__(new_module: types.ModuleType) -> None:
        """Hand this instance's resources (connections, pools, Databases) to ``new_module``."""
        target = owner_of(vars(new_module))
        if target is not None:
            _hand_over(inst, target)

    __mp_clone__.__modpy_safe_default__ = True  # type: ignore[attr-defined]
    return __mp_clone__


def _default_purge(inst: Instance) -> Any:
    def __mp_purge__() -> None:
        """Close this instance's resources once its last request has ended."""
        # Retirement already closes everything no current module references, so
        # the default only makes sure this instance is retired.
        if not inst.retired and inst.entry.instance is not inst:
            sweeper.retire(inst)

    __mp_purge__.__modpy_safe_default__ = True  # type: ignore[attr-defined]
    return __mp_purge__


def _hand_over(old: Instance, new: Instance) -> dict[int, tuple[str, Any]]:
    """Place ``old``'s resources in ``new``'s namespace under the same names."""
    found = _resources.collect(old.namespace)
    for name, obj in found.values():
        new.namespace.setdefault(name, obj)
    return found


def _scrubbed_traceback() -> str:
    """Return the exception being handled, formatted, with DSN passwords masked.

    A hook's traceback quotes its source lines, which may hold a literal DSN.
    """
    return scrub(traceback.format_exc()).rstrip()


def _unhand_unused(new: Instance, handed: dict[int, tuple[str, Any]],
                   code: types.CodeType) -> None:
    """Take back what was handed to ``new`` under a name its code never uses.

    A renamed or deleted variable would otherwise keep the old version's
    connection referenced by the new version, and so open, for the process's life.
    """
    if not handed:
        return
    used = _resources.names_used(code)
    for name, obj in handed.values():
        if name not in used and new.namespace.get(name) is obj:
            del new.namespace[name]


def _run_user_clone(old: Instance, new: Instance) -> bool:
    """Call a file's own ``__mp_clone__``; on failure purge ``old``, reset ``new``, return False."""
    hook = old.namespace.get("__mp_clone__")
    if not callable(hook) or getattr(hook, "__modpy_safe_default__", False):
        return True
    try:
        hook(new.module)
        return True
    except Exception:
        log.error("__mp_clone__ of generation %d of %s failed; purging it and starting "
                  "generation %d fresh\n%s", old.generation, old.entry.path, new.generation,
                  _scrubbed_traceback())
    purge = old.namespace.get("__mp_purge__")
    if callable(purge):
        try:
            purge()
        except Exception:
            log.error("__mp_purge__ of generation %d of %s failed\n%s",
                      old.generation, old.entry.path, _scrubbed_traceback())
    identity = ("__name__", "__doc__", "__package__", "__loader__", "__spec__")
    keep: dict[str, Any] = {k: new.namespace[k] for k in identity if k in new.namespace}
    new.namespace.clear()
    new.namespace.update(keep)
    _prepare(new)
    return False


def _discard(inst: Instance, handed: dict[int, tuple[str, Any]]) -> None:
    """Close what a failed version opened (not what it was handed, not what is current)."""
    for what in sweeper.discard(inst, handed):
        log.info("closed %s opened by failed generation %d of %s", what, inst.generation,
                 inst.entry.path)


def _describe(path: str, exc: BaseException) -> ReloadError:
    """Find the file and line where loading ``path`` failed."""
    file, line = path, 0
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = exc.filename, exc.lineno or 0
    else:
        managed = {e.path for e in list(entries.values())}
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            name = frame.f_code.co_filename
            if name in managed or name == path:
                file, line = name, lineno
    # The traceback quotes the failing source line, often a literal DSN such as
    # psycopg2.connect("... password=..."), and goes to the log and status page.
    message = scrub(f"{type(exc).__name__}: {exc}")
    text = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return ReloadError(file=file, line=line, message=message, at=time.time(), traceback=text)


# ---------------------------------------------------------------- imports


_NEVER = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def _import_hook(inst: Instance, real_import: Any) -> Any:
    """Return an ``__import__`` that loads sibling files through the importer."""

    def __import__(name: str, globals: Any = None, locals: Any = None,
                   fromlist: Any = (), level: int = 0) -> Any:
        if level == 0 and "." not in name and name not in _NEVER:
            cache = inst.import_cache
            try:
                found = cache[name]
            except KeyError:
                found = None
                for directory in inst.dirs:
                    candidate = os.path.join(directory, name + ".py")
                    if os.path.isfile(candidate):
                        found = candidate
                        break
                cache[name] = found  # per instance: a new version looks again
            if found is not None:
                return import_child(inst, found)
        return real_import(name, globals, locals, fromlist, level)

    return __import__


def import_child(owner: Instance | None, path: str, *, check: bool = True) -> types.ModuleType:
    """Return the current instance of ``path`` for ``owner`` and record the dependency.

    ``check=False`` (``apache.import_module(..., autoreload=False)``) takes the
    loaded version, if there is one, without looking at the file, and records
    no dependency (the parent's own checks would reload the child).
    """
    entry = entry_for(path)
    loading = owner is not None and owner.entry.loading is owner
    scope = current_scope()
    if not check and entry.instance is not None and (loading or scope is None):
        child = entry.instance
    elif loading or scope is None:
        extra = owner.dirs[1:] if owner is not None else ()
        child = fresh(entry, extra, 0.0, debug=False, force=True)
    else:
        # At request time (an import inside a function): the interval applies,
        # and the request leases the instance it gets.
        interval = scope.options.value(RELOAD_INTERVAL)
        extra = owner.dirs[1:] if owner is not None else extra_dirs(scope.options, scope)
        while True:
            current = entry.instance
            child = current if not check and current is not None else fresh(
                entry, extra, interval, debug=scope.debug, req=scope.req)
            owners = lease(child)
            if owners is not None:
                scope.hold(owners, release)
                break
    if owner is not None and check:
        owner.depend_on(child)
    return child.module
