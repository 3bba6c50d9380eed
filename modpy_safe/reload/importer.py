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
``take(entry, interval, extra, *, autoreload, debug, req) -> (instance, owners)``
    The same without a scope: the caller ends the lease with ``release(owners)``.
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

import os
import sys
import time
import types
from typing import Any

from .._context import RequestScope
from .._options import RELOAD_INTERVAL
from .loader import extra_dirs, fresh, import_child
from .resources import Owner
from .versions import (
    Entry,
    FileRecord,
    ImportFailed,
    Instance,
    ReloadError,
    close_all,
    entries,
    entry_for,
    lease,
    owner_of,
    release,
    sweeper,
)

__all__ = ["acquire", "acquire_entry", "take", "release", "entry_for", "import_module",
           "records", "close_all", "ImportFailed", "FileRecord", "ReloadError"]

# ---------------------------------------------------------------- public API


def acquire(path: str, scope: RequestScope, *, autoreload: bool = True) -> types.ModuleType:
    """Return the current instance of ``path`` and lease it until ``scope`` ends."""
    options = scope.options
    interval = options.value(RELOAD_INTERVAL)
    return acquire_entry(entry_for(path), scope, interval, extra_dirs(options, scope),
                         autoreload=autoreload)


def acquire_entry(entry: Entry, scope: RequestScope, interval: float,
                  extra: tuple[str, ...], *, autoreload: bool = True) -> types.ModuleType:
    """:func:`acquire` for callers that keep ``entry``, the interval and the
    ``reload.path`` directories per configuration (the phases, the filters).

    Within the interval it is one clock read and one lease: no lock, no stat.
    """
    inst, owners = take(entry, interval, extra, autoreload=autoreload, debug=scope.debug,
                        req=scope.req)
    scope.hold(owners, release)
    return inst.module


def take(entry: Entry, interval: float, extra: tuple[str, ...], *, autoreload: bool,
         debug: bool, req: Any = None) -> tuple[Instance, list[Owner]]:
    """Return ``entry``'s current instance, leased, and the owners :func:`release` ends it on.

    The caller releases the lease when its request ends (the plans of
    ``web/plan.py`` do it themselves; :func:`acquire_entry` leaves it to a scope).
    """
    while True:
        inst = entry.instance
        if inst is None or (autoreload and time.monotonic() - entry.checked_at >= interval):
            inst = fresh(entry, extra, interval, debug=debug, req=req)
        owners = lease(inst)
        if owners is not None:
            return inst, owners


def import_module(path: str) -> types.ModuleType:
    """Return the current instance of the ``.py`` file ``path`` and record the dependency.

    ``path`` is relative to the directory of the calling module (the ``.py``
    suffix may be left out). When the file changes, it and the caller are
    reloaded on their next request.
    """
    caller = sys._getframe(1).f_globals
    owner = owner_of(caller)
    base = os.path.dirname(str(caller.get("__file__") or "")) or os.getcwd()
    if not path.endswith(".py"):
        path += ".py"
    full = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    return import_child(owner, full)


def records() -> list[FileRecord]:
    """Return one record per loaded (or failed) file of this interpreter, sorted by path."""
    pending: dict[str, int] = {}
    for owner in sweeper.pending():
        if isinstance(owner, Instance):
            pending[owner.entry.path] = pending.get(owner.entry.path, 0) + 1
    out = []
    for entry in sorted(list(entries.values()), key=lambda e: e.path):
        inst = entry.instance
        out.append(FileRecord(
            path=entry.path,
            label=entry.label,
            generation=inst.generation if inst else 0,
            reloads=max(0, entry.generation - 1),
            loaded_at=inst.loaded_at if inst else 0.0,
            children=tuple(sorted(c.entry.path for c in inst.children_instances()))
            if inst else (),
            error=entry.last_error,
            failing=entry.failure is not None,
            closed_for_old=entry.closed_for_old,
            pending_old=pending.get(entry.path, 0),
            active=len(inst.leases) if inst else 0,
        ))
    return out


