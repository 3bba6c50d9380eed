"""The safe importer: load handler files into fresh modules and reload them safely.

Interface used by the rest of modpy_safe:

``acquire(path, scope, *, autoreload=True) -> module``
    Return the current instance of the ``.py`` file at absolute ``path``,
    loading or reloading it (see "The reload protocol" in DESIGN.md), and lease
    it (and the instances it imported) until ``scope`` ends. Reads
    ``modpy_safe.reload.interval`` and ``modpy_safe.reload.path`` from
    ``scope.options``. Raises FileNotFoundError for a missing file and
    :class:`ImportFailed` when no working version exists (or, with
    ``scope.debug``, when the newest version failed).
``entry_for(path)`` and ``acquire_entry(entry, scope, interval, extra, *, autoreload)``
    The same for callers that keep, per configuration, the file's entry, the
    reload interval and the ``reload.path`` directories (the dispatcher, the
    publisher): within the interval a request is one clock read and one lease.
    The lease goes into the scope's ``lease_*`` slots and ends after its cleanups.
``import_module(path) -> module`` (public as ``modpy_safe.import_module``)
    For code in a handler file: the current instance of another file, relative
    to the caller's directory, recorded as the caller's dependency.
``records() -> list[FileRecord]``
    One :class:`FileRecord` per file this interpreter has loaded, for the status
    page: path, label, generation, reloads, loaded_at (epoch seconds),
    children (paths), error (:class:`ReloadError` or None), failing (the newest
    version failed), closed_for_old (resources closed on behalf of old
    generations), pending_old (old generations not closed yet), active (requests
    on the current instance).

A request that causes no reload takes no lock: it reads the entry, and at most
once per interval stats the file and its dependencies. Loads are serialized by
one re-entrant lock, so a file imported by two handlers is loaded once.
"""
from __future__ import annotations

import builtins
import dataclasses
import functools
import hashlib
import linecache
import logging
import os
import re
import sys
import threading
import time
import traceback
import types
from typing import Any

from .. import _apache
from .._context import Loading, RequestScope, current_scope
from .._errors import ModpySafeError
from .._options import Options, as_paths, as_seconds
from .._redact import scrub
from . import resources as _resources

__all__ = ["acquire", "import_module", "records", "ImportFailed", "FileRecord", "ReloadError"]

log = logging.getLogger("modpy_safe.importer")

_AS_INTERVAL = as_seconds()  # one cast object: Options caches by name, the cast is reused
_OWNER_KEY = "__modpy_safe_owner__"  # kept in each instance's private builtins


class ImportFailed(ModpySafeError):
    """A handler file could not be loaded; ``file`` and ``line`` say where it failed."""

    __module__ = "modpy_safe"

    def __init__(self, path: str, error: ReloadError) -> None:
        super().__init__(f"{path} could not be loaded: {error.file}:{error.line}: {error.message}")
        self.path = path
        self.file = error.file
        self.line = error.line
        self.error = error


@dataclasses.dataclass(frozen=True)
class ReloadError:
    """Where and how a version of a file failed to load."""

    file: str
    line: int
    message: str
    at: float  # epoch seconds
    traceback: str


@dataclasses.dataclass(frozen=True)
class FileRecord:
    """What the status page shows about one file."""

    path: str
    label: str
    generation: int
    reloads: int
    loaded_at: float
    children: tuple[str, ...]
    error: ReloadError | None
    failing: bool
    closed_for_old: int
    pending_old: int
    active: int


class _Instance(_resources.Owner):
    """One loaded version of one file."""

    def __init__(self, entry: _Entry, module: types.ModuleType, generation: int,
                 mtime: Stamp, dirs: tuple[str, ...]) -> None:
        super().__init__(module.__dict__)
        self.entry = entry
        self.module = module
        self.generation = generation
        self.mtime = mtime
        self.dirs = dirs  # where its plain imports look for managed files
        self.deps: dict[str, _Instance] = {}  # path -> the child instance it imported
        self.loaded_at = time.time()
        self.tree_cache: list[_resources.Owner] = [self]
        self.import_cache: dict[str, str | None] = {}

    def depend_on(self, child: _Instance) -> None:
        if child.entry.path not in self.deps and child is not self:
            self.deps[child.entry.path] = child
            self.children.append(child)

    def describe(self) -> str:
        return f"generation {self.generation} of {self.entry.path}"


class _Entry:
    """Everything known about one file path."""

    def __init__(self, path: str) -> None:
        self.path = path
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        # Not a name a real module can have, so sys.modules never clashes.
        self.label = f"_mps_{stem}_{digest}"
        self.instance: _Instance | None = None
        self.loading: _Instance | None = None
        self.loading_thread = 0
        self.generation = 0
        self.checked_at = -1e18  # monotonic time of the last stat
        self.failed_key: tuple[Any, ...] | None = None
        self.failure: tuple[ReloadError, BaseException] | None = None
        self.last_error: ReloadError | None = None
        self.closed_for_old = 0


_entries: dict[str, _Entry] = {}
_load_lock = threading.RLock()
_sweeper = _resources.Sweeper(
    lambda: [e.instance for e in list(_entries.values()) if e.instance is not None],
    lambda owner, count: _closed(owner, count),
)


_release = _sweeper.release  # one bound method, not one per request
_tokens = _resources.tokens


def _closed(owner: _resources.Owner, count: int) -> None:
    if isinstance(owner, _Instance):
        owner.entry.closed_for_old += count
        if count:
            log.info("closed %d connection(s) left by generation %d of %s",
                     count, owner.generation, owner.entry.path)


# ---------------------------------------------------------------- public API


def acquire(path: str, scope: RequestScope, *, autoreload: bool = True) -> types.ModuleType:
    """Return the current instance of ``path`` and lease it until ``scope`` ends."""
    options = scope.options
    interval = options.get("reload.interval", _AS_INTERVAL, 1.0)
    return acquire_entry(entry_for(path), scope, interval, _extra_dirs(options),
                         autoreload=autoreload)


def entry_for(path: str) -> _Entry:
    """Return the record of the file at absolute ``path`` (kept for the process's life)."""
    entry = _entries.get(path)
    if entry is None:
        with _load_lock:
            entry = _entries.setdefault(path, _Entry(path))
    return entry


def acquire_entry(entry: _Entry, scope: RequestScope, interval: float,
                  extra: tuple[str, ...], *, autoreload: bool = True) -> types.ModuleType:
    """:func:`acquire` for callers that keep ``entry``, the interval and the
    ``reload.path`` directories per configuration (the dispatcher, the publisher).

    Within the interval it is one clock read and one lease: no lock, no stat.
    """
    while True:
        inst = entry.instance
        if inst is None or (autoreload and time.monotonic() - entry.checked_at >= interval):
            inst = _fresh(entry, extra, interval, debug=scope.debug, req=scope.req)
        owners = inst.tree_cache
        token = next(_tokens)  # atomic in CPython
        if len(owners) == 1:
            inst.leases.add(token)  # no imported instances: one write
        else:
            for owner in owners:
                owner.leases.add(token)
        # Written before this read; retire() writes 'retired' before it reads
        # the leases (see _resources.Owner.lease).
        if not inst.retired:
            if scope.lease_token:
                scope.add_cleanup(functools.partial(_release, owners, token))
            else:  # released after the cleanups (see RequestScope)
                scope.lease_owners, scope.lease_token, scope.lease_release = (
                    owners, token, _release)
            return inst.module
        # Replaced between our read and our lease: release it and take the new one.
        _release(owners, token)


def import_module(path: str) -> types.ModuleType:
    """Return the current instance of the ``.py`` file ``path`` and record the dependency.

    ``path`` is relative to the directory of the calling module (the ``.py``
    suffix may be left out). When the file changes, it and the caller are
    reloaded on their next request.
    """
    caller = sys._getframe(1).f_globals
    owner = _owner_of(caller)
    base = os.path.dirname(str(caller.get("__file__") or "")) or os.getcwd()
    if not path.endswith(".py"):
        path += ".py"
    full = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    return _import_child(owner, full)


def records() -> list[FileRecord]:
    """Return one record per loaded (or failed) file of this interpreter, sorted by path."""
    pending: dict[str, int] = {}
    for owner in _sweeper.pending():
        if isinstance(owner, _Instance):
            pending[owner.entry.path] = pending.get(owner.entry.path, 0) + 1
    out = []
    for entry in sorted(list(_entries.values()), key=lambda e: e.path):
        inst = entry.instance
        out.append(FileRecord(
            path=entry.path,
            label=entry.label,
            generation=inst.generation if inst else 0,
            reloads=max(0, entry.generation - 1),
            loaded_at=inst.loaded_at if inst else 0.0,
            children=tuple(sorted(inst.deps)) if inst else (),
            error=entry.last_error,
            failing=entry.failure is not None,
            closed_for_old=entry.closed_for_old,
            pending_old=pending.get(entry.path, 0),
            active=len(inst.leases) if inst else 0,
        ))
    return out


def close_all() -> int:
    """Close every resource held by any loaded module (the child process is exiting)."""
    owners = [e.instance for e in list(_entries.values()) if e.instance is not None]
    count = _sweeper.close_everything(owners)
    if count:
        log.info("closed %d connection(s) held by loaded modules at process exit (pid %d)",
                 count, os.getpid())
    return count


def _close_all_at_exit() -> None:
    close_all()


# ---------------------------------------------------------------- checking


# What identifies a version of a file on disk: mtime, size and inode. The mtime
# alone misses a file finished within the same tick of the file system's clock
# as the half-written copy a request loaded (and a rename of a file with an
# equal mtime): the finished file would then never be loaded.
Stamp = tuple[int, int, int]


def _stat(path: str) -> Stamp:
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        raise FileNotFoundError(2, "handler file not found", path) from None


def _key(inst: _Instance | None, mtime: Stamp) -> tuple[Any, ...]:
    """Identify a version: the file's stamp and the generation of each dependency now."""
    if inst is None:
        return (mtime,)
    gens = []
    for child_path, child in sorted(list(inst.deps.items())):
        entry = _entries[child_path]
        try:
            # A dependency is checked whenever its parent is, whatever its interval.
            current = _fresh(entry, None, 0.0, debug=False, force=True)
            gens.append((child_path, current.generation))
        except FileNotFoundError:
            gens.append((child_path, -1))
        except ImportFailed:
            gens.append((child_path, child.generation))
    return (mtime, tuple(gens))


def _loaded_key(inst: _Instance) -> tuple[Any, ...]:
    return (inst.mtime, tuple(sorted((p, c.generation) for p, c in list(inst.deps.items()))))


def _extra_dirs(options: Options) -> tuple[str, ...]:
    """Return the ``modpy_safe.reload.path`` directories (validated, cached by Options)."""
    none: tuple[str, ...] = ()
    return options.get("reload.path", as_paths, none)


def _fresh(entry: _Entry, extra: tuple[str, ...] | None, interval: float, *, debug: bool,
           force: bool = False, req: Any = None) -> _Instance:
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
    key = _key(inst, _stat(entry.path))
    if inst is not None and key == _loaded_key(inst):
        return inst
    if key == entry.failed_key:
        return _failed(entry, inst, debug)
    with _load_lock:
        inst = entry.instance
        key = _key(inst, _stat(entry.path))
        if inst is not None and key == _loaded_key(inst):
            return inst  # another thread loaded it while we waited
        if key == entry.failed_key:
            return _failed(entry, inst, debug)
        if extra is None:
            extra = inst.dirs[1:] if inst is not None else ()
        dirs = tuple(dict.fromkeys(
            [os.path.dirname(entry.path)] + [os.path.abspath(d) for d in extra]))
        try:
            return _load(entry, dirs, req)
        except ImportFailed:
            return _failed(entry, entry.instance, debug)


def _failed(entry: _Entry, inst: _Instance | None, debug: bool) -> _Instance:
    """Answer for a version that failed: the old instance, or the error."""
    assert entry.failure is not None
    error, cause = entry.failure
    if inst is None or debug:
        raise ImportFailed(entry.path, error) from cause
    return inst


# ---------------------------------------------------------------- loading


def _load(entry: _Entry, dirs: tuple[str, ...], req: Any) -> _Instance:
    """Load a new instance of ``entry`` (caller holds ``_load_lock``) and make it current."""
    old = entry.instance
    source, mtime = _read_source(entry.path)
    if old is not None and not source.strip():
        # An editor that truncates before it writes: the old version answers
        # until the content arrives (the next check sees the new stamp).
        return old
    generation = entry.generation + 1
    module = types.ModuleType(entry.label)
    inst = _Instance(entry, module, generation, mtime, dirs)
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
    except Exception as exc:
        if previous is not None:
            sys.modules[entry.label] = previous
        else:
            sys.modules.pop(entry.label, None)
        _discard(inst, handed)
        error = _describe(entry.path, exc)
        entry.failure = (error, exc)
        entry.last_error = error
        # The version as read, with its dependencies as they are now (the failed
        # code may have reloaded one): not tried again until one of them changes.
        entry.failed_key = _key(old, mtime)
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
        _sweeper.retire(old)
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


def _prepare(inst: _Instance) -> None:
    """Fill a fresh namespace: identity, private builtins, default hooks."""
    ns = inst.namespace
    own_builtins = dict(builtins.__dict__)
    own_builtins["__import__"] = _import_hook(inst, builtins.__import__)
    own_builtins[_OWNER_KEY] = inst
    ns.update(
        __file__=inst.entry.path,
        __builtins__=own_builtins,
        __cached__=None,
        __mp_clone__=_default_clone(inst),
        __mp_purge__=_default_purge(inst),
    )


def _default_clone(inst: _Instance) -> Any:
    def __mp_clone__(new_module: types.ModuleType) -> None:
        """Hand this instance's resources (connections, pools, Databases) to ``new_module``."""
        target = _owner_of(vars(new_module))
        if target is not None:
            _hand_over(inst, target)

    __mp_clone__.__modpy_safe_default__ = True  # type: ignore[attr-defined]
    return __mp_clone__


def _default_purge(inst: _Instance) -> Any:
    def __mp_purge__() -> None:
        """Close this instance's resources once its last request has ended."""
        # Retirement already closes everything no current module references, so
        # the default only makes sure this instance is retired.
        if not inst.retired and inst.entry.instance is not inst:
            _sweeper.retire(inst)

    __mp_purge__.__modpy_safe_default__ = True  # type: ignore[attr-defined]
    return __mp_purge__


def _hand_over(old: _Instance, new: _Instance) -> dict[int, tuple[str, Any]]:
    """Place ``old``'s resources in ``new``'s namespace under the same names."""
    found = _resources.collect(old.namespace)
    for name, obj in found.values():
        new.namespace.setdefault(name, obj)
    return found


def _run_user_clone(old: _Instance, new: _Instance) -> bool:
    """Call a file's own ``__mp_clone__``; on failure purge ``old``, reset ``new``, return False."""
    hook = old.namespace.get("__mp_clone__")
    if not callable(hook) or getattr(hook, "__modpy_safe_default__", False):
        return True
    try:
        hook(new.module)
        return True
    except Exception:
        log.exception("__mp_clone__ of generation %d of %s failed; purging it and starting "
                      "generation %d fresh", old.generation, old.entry.path, new.generation)
    purge = old.namespace.get("__mp_purge__")
    if callable(purge):
        try:
            purge()
        except Exception:
            log.exception("__mp_purge__ of generation %d of %s failed",
                          old.generation, old.entry.path)
    identity = ("__name__", "__doc__", "__package__", "__loader__", "__spec__")
    keep: dict[str, Any] = {k: new.namespace[k] for k in identity if k in new.namespace}
    new.namespace.clear()
    new.namespace.update(keep)
    _prepare(new)
    return False


def _discard(inst: _Instance, handed: dict[int, tuple[str, Any]]) -> None:
    """Close what a failed version opened (not what it was handed, not what is current)."""
    keep = set(handed)
    for entry in list(_entries.values()):
        for node in (entry.instance.tree() if entry.instance is not None else []):
            keep.update(_resources.collect(node.namespace))
    opened = [obj for key, (_, obj) in _resources.collect(inst.namespace).items()
              if key not in keep]
    count = sum(1 for obj in opened if _resources.close(obj))
    if count:
        log.info("closed %d connection(s) opened by failed generation %d of %s",
                 count, inst.generation, inst.entry.path)


def _describe(path: str, exc: BaseException) -> ReloadError:
    """Find the file and line where loading ``path`` failed."""
    file, line = path, 0
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = exc.filename, exc.lineno or 0
    else:
        managed = {e.path for e in list(_entries.values())}
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


def _owner_of(namespace: dict[str, Any]) -> _Instance | None:
    own = namespace.get("__builtins__")
    if isinstance(own, dict):
        owner = own.get(_OWNER_KEY)
        if isinstance(owner, _Instance):
            return owner
    return None


_NEVER = frozenset(sys.stdlib_module_names) | frozenset(sys.builtin_module_names)


def _import_hook(inst: _Instance, real_import: Any) -> Any:
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
                return _import_child(inst, found)
        return real_import(name, globals, locals, fromlist, level)

    return __import__


def _import_child(owner: _Instance | None, path: str) -> types.ModuleType:
    """Return the current instance of ``path`` for ``owner`` and record the dependency."""
    entry = entry_for(path)
    loading = owner is not None and owner.entry.loading is owner
    scope = current_scope()
    if loading or scope is None:
        extra = owner.dirs[1:] if owner is not None else ()
        child = _fresh(entry, extra, 0.0, debug=False, force=True)
    else:
        # At request time (an import inside a function): the interval applies,
        # and the request leases the instance it gets.
        interval = scope.options.get("reload.interval", _AS_INTERVAL, 1.0)
        extra = owner.dirs[1:] if owner is not None else _extra_dirs(scope.options)
        while True:
            child = _fresh(entry, extra, interval, debug=scope.debug, req=scope.req)
            owners = child.tree_cache
            token = _resources.Owner.lease(owners)
            if not child.retired:
                scope.add_cleanup(functools.partial(_release, owners, token))
                break
            _release(owners, token)
    if owner is not None:
        owner.depend_on(child)
    return child.module
