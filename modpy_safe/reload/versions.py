"""What the importer knows: one entry per file, one instance per loaded version.

The records and the registry every other part of ``reload/`` shares: the
:class:`Entry` of each file path (kept for the process's life), the
:class:`Instance` of each loaded version, the one load lock, and the sweeper
that closes what retired versions leave behind.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import threading
import time
import types
from typing import Any

from .._errors import ModpySafeError
from . import resources as _resources

__all__ = ["ImportFailed", "ReloadError", "FileRecord", "Entry", "Instance", "Stamp",
           "entries", "entry_for", "load_lock", "sweeper", "lease", "release", "owner_of",
           "close_all", "stat_file"]

log = logging.getLogger("modpy_safe.importer")

OWNER_KEY = "__modpy_safe_owner__"  # kept in each instance's private builtins


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


# What identifies a version of a file on disk: mtime, size and inode. The mtime
# alone misses a file finished within the same tick of the file system's clock
# as the half-written copy a request loaded (and a rename of a file with an
# equal mtime): the finished file would then never be loaded.
Stamp = tuple[int, int, int]


def stat_file(path: str) -> Stamp:
    try:
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except FileNotFoundError:
        raise FileNotFoundError(2, "handler file not found", path) from None


class Instance(_resources.Owner):
    """One loaded version of one file."""

    def __init__(self, entry: Entry, module: types.ModuleType, generation: int,
                 mtime: Stamp, dirs: tuple[str, ...]) -> None:
        super().__init__(module.__dict__)
        self.entry = entry
        self.module = module
        self.generation = generation
        self.mtime = mtime
        self.dirs = dirs  # where its plain imports look for managed files
        self.loaded_at = time.time()
        self.tree_cache: list[_resources.Owner] = [self]
        self.import_cache: dict[str, str | None] = {}

    def depend_on(self, child: Instance) -> None:
        """Record that this version imported ``child`` (the one import graph: ``children``)."""
        if child is not self and all(c.entry is not child.entry
                                     for c in self.children_instances()):
            self.children.append(child)

    def children_instances(self) -> list[Instance]:
        """Return the instances this version imported, one per file."""
        return [c for c in self.children if isinstance(c, Instance)]

    def describe(self) -> str:
        return f"generation {self.generation} of {self.entry.path}"


class Entry:
    """Everything known about one file path."""

    def __init__(self, path: str) -> None:
        self.path = path
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        # Not a name a real module can have, so sys.modules never clashes.
        self.label = f"_mps_{stem}_{digest}"
        self.instance: Instance | None = None
        self.loading: Instance | None = None
        self.loading_thread = 0
        self.generation = 0
        self.checked_at = -1e18  # monotonic time of the last stat
        self.failed_key: tuple[Any, ...] | None = None
        self.failure: tuple[ReloadError, BaseException] | None = None
        self.last_error: ReloadError | None = None
        self.closed_for_old = 0


entries: dict[str, Entry] = {}
load_lock = threading.RLock()
sweeper = _resources.Sweeper(
    lambda: [e.instance for e in list(entries.values()) if e.instance is not None],
    lambda owner, what: closed(owner, what),
    lambda: {e.label for e in list(entries.values())},
    lambda owner: owner.entry if isinstance(owner, Instance) else owner,
)


release = sweeper.release  # one bound method, not one per request


def lease(inst: Instance) -> list[_resources.Owner] | None:
    """Lease ``inst`` and the instances it imported; return the owners for :func:`release`.

    Return None when ``inst`` was replaced between the caller's read and the
    lease: the caller takes the new current instance. The lease (one item
    appended to each owner's ``leases``) is written before ``retired`` is
    read, and retirement writes ``retired`` before it reads the leases, so one
    of the two always sees the other.
    """
    owners = inst.tree_cache
    if len(owners) == 1:
        inst.leases.append(None)  # no imported instances: one write
    else:
        for owner in owners:
            owner.leases.append(None)
    if not inst.retired:
        return owners
    release(owners)
    return None


def closed(owner: _resources.Owner, what: list[str]) -> None:
    if isinstance(owner, Instance):
        owner.entry.closed_for_old += len(what)
        for one in what:  # one line per resource: what, which generation, which file
            log.info("closed %s left by generation %d of %s", one, owner.generation,
                     owner.entry.path)



def entry_for(path: str) -> Entry:
    """Return the record of the file at absolute ``path`` (kept for the process's life)."""
    entry = entries.get(path)
    if entry is None:
        with load_lock:
            entry = entries.setdefault(path, Entry(path))
    return entry


def owner_of(namespace: dict[str, Any]) -> Instance | None:
    own = namespace.get("__builtins__")
    if isinstance(own, dict):
        owner = own.get(OWNER_KEY)
        if isinstance(owner, Instance):
            return owner
    return None



def close_all() -> int:
    """Close every resource held by any loaded module (the child process is exiting)."""
    owners = [e.instance for e in list(entries.values()) if e.instance is not None]
    count = sweeper.close_everything(owners)
    if count:
        log.info("closed %d connection(s) held by loaded modules at process exit (pid %d)",
                 count, os.getpid())
    return count


def _close_all_at_exit() -> None:
    close_all()


