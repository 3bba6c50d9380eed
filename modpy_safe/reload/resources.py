"""What a module version owns, and closing it at the right moment.

A *resource* is any object of a kind :mod:`.kinds` knows (connections,
pools, engines, ``modpy_safe.Database``, registered objects and types).
Two views of a version's resources:

* its *top-level* resources (:func:`collect`): what is handed to the next
  version under the same names, so ``if "conn" not in globals()`` and
  ``Database(...)`` keep their objects;
* everything it can *reach* (:func:`.reach.walk`): attributes,
  containers, thread-locals, closures, defaults, caches, cursors. This is what
  is closed when the version is retired, minus what a current version, a
  module outside the importer or a running request can still reach.

An :class:`Owner` is one version of one file (the importer subclasses it).
Requests *lease* the owners they run on; a replaced owner is *retired*, and
:class:`Sweeper` closes its resources that nothing current still reaches once
its last lease is released. Leasing takes no lock and makes no token: a lease
is one item appended to the owner's ``leases`` list (``list.append`` and
``list.pop`` are single, atomic operations under the GIL, so ``len(leases)``
counts the requests on the owner exactly, whichever thread pops), and
retirement and leasing each write first and read second, so at least one side
always sees the other (see :meth:`Owner.lease`).
"""
from __future__ import annotations

import logging
import sys
import threading
import types
from collections.abc import Callable, Container, Iterable, Mapping
from typing import Any

from . import kinds, reach

__all__ = ["register", "register_type", "is_resource", "collect", "close", "names_used",
           "Owner", "Sweeper", "Closed"]

log = logging.getLogger("modpy_safe.importer")

register = kinds.register
register_type = kinds.register_type

_NEVER = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
          str, bytes, int, float)

#: What was closed: how the resource was described and how it was reached.
Closed = str


def is_resource(obj: Any) -> bool:
    """Return True when ``obj`` is something modpy_safe must close (see :mod:`.kinds`)."""
    if obj is None or isinstance(obj, _NEVER):
        return False
    return kinds.classify(obj) is not None


def collect(namespace: Mapping[str, Any]) -> dict[int, tuple[str, Any]]:
    """Return the resources among ``namespace``'s top-level names, by ``id``."""
    found: dict[int, tuple[str, Any]] = {}
    # A snapshot: requests may assign module globals while we look.
    for name, value in list(namespace.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if id(value) not in found and is_resource(value):
            found[id(value)] = (name, value)
    return found


def close(obj: Any, kind: kinds.Kind | None = None) -> bool:
    """Release one resource; return True when it was open and is closed now.

    Failures are logged, never raised: closing runs in cleanups that must go on.
    """
    try:
        return kinds.close(obj, kind)
    except Exception:
        log.exception("closing %s failed", kinds.describe(obj, kind))
        return False


def names_used(code: types.CodeType) -> set[str]:
    """Return every name ``code`` (and the code nested in it) reads, writes or spells out.

    String constants count too, so ``globals()["conn"]`` and ``"conn" in
    globals()`` keep a handed-over ``conn``.
    """
    names: set[str] = set()
    todo = [code]
    while todo:
        current = todo.pop()
        names.update(current.co_names)
        names.update(current.co_varnames)
        names.update(current.co_freevars)
        for const in current.co_consts:
            if isinstance(const, types.CodeType):
                todo.append(const)
            elif isinstance(const, str) and const.isidentifier():
                names.add(const)
    return names


def held_outside(candidates: Mapping[int, Any], managed: Container[str]) -> set[int]:
    """Return the ids among ``candidates`` that a module outside the importer keeps.

    Looked for in each such module's globals and, one level down, in the dicts
    among them (a library's registry of engines by name): a library's objects
    are its own to close.
    """
    held: set[int] = set()
    if not candidates:
        return held
    wanted = set(candidates)
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if type(namespace) is not dict or namespace.get("__name__") in managed:
            continue
        values = list(namespace.values())
        held.update(wanted.intersection(map(id, values)))  # C speed: a few ms for all
        for registry in [v for v in values if type(v) is dict and len(v) <= 10_000]:
            held.update(wanted.intersection(map(id, list(registry.values()))))
    return held


class Owner:
    """One module instance as the owner of resources, leased by the requests using it."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        #: One item per request running on this owner (see the module docstring).
        self.leases: list[None] = []
        self.retired = False
        self.swept = False
        self.bound_logged = False  # the walk's bound was hit and said so
        #: Owners this one uses (imported module instances); leased with it.
        self.children: list[Owner] = []

    def describe(self) -> str:
        """Return a short name for log lines."""
        return repr(self)

    def tree(self) -> list[Owner]:
        """Return this owner and every owner it uses, each once."""
        seen: dict[int, Owner] = {}
        todo: list[Owner] = [self]
        while todo:
            owner = todo.pop()
            if id(owner) not in seen:
                seen[id(owner)] = owner
                todo.extend(owner.children)
        return list(seen.values())

    @staticmethod
    def lease(owners: Iterable[Owner]) -> None:
        """Lease every owner in ``owners``; :meth:`Sweeper.release` with the same owners ends it.

        The caller must then check that the owner it wanted is not retired: the
        lease is written before that read, and :meth:`Sweeper.retire` writes
        ``retired`` before it reads the leases, so one of the two sees the other.
        """
        for owner in owners:
            owner.leases.append(None)


class Sweeper:
    """Close what retired owners leave behind once nothing can reach it any more.

    ``current`` returns the owners in use now (each file's current instance);
    ``managed`` the module names of every version the importer loaded (see
    :func:`.reach.walk`); ``report(owner, closed)`` is told what was
    closed for an owner, one description per resource; ``file_of(owner)``
    names the file an owner is a version of.

    What a retired owner reaches is kept open when its *family* still reaches
    it: the current versions of its own file and of the files it imported,
    with what they import. Only these can hold its objects: the next version of
    its file through the hand-over, a helper it shares with them through the
    helper. A version that imports the retired one holds it in its tree, which
    keeps it from being swept at all; so a reload walks the family, not every
    module of the process.
    """

    def __init__(self, current: Callable[[], Iterable[Owner]],
                 report: Callable[[Owner, list[Closed]], None],
                 managed: Callable[[], Container[str]],
                 file_of: Callable[[Owner], object] = lambda owner: owner) -> None:
        self._current = current
        self._report = report
        self._managed = managed
        self._file_of = file_of
        self._pending: list[Owner] = []
        self._left_open: list[Owner] = []  # swept while a current version was too big to see
        self._lock = threading.Lock()

    def pending(self) -> list[Owner]:
        """Return the retired owners whose resources are not closed yet."""
        return list(self._pending)

    def retire(self, owner: Owner) -> None:
        """Mark ``owner`` replaced; close its orphans now or when its last lease ends."""
        owner.retired = True
        with self._lock:
            self._pending.append(owner)
        self.sweep()

    def release(self, owners: Iterable[Owner]) -> None:
        """End one lease on each of ``owners``; sweep if one of them is retired."""
        retired = False
        for owner in owners:
            owner.leases.pop()
            retired = retired or owner.retired
        if retired:
            self.sweep()

    def _walk(self, owner: Owner, managed: Container[str],
              wanted: set[int] | None = None) -> reach.Reach:
        """Walk ``owner``'s namespace; log once per owner when a bound was hit."""
        found = reach.walk(owner.namespace, managed, wanted=wanted)
        if not found.complete and not owner.bound_logged:
            owner.bound_logged = True
            log.warning("%s is too big to examine whole for resources; not examined: %s",
                        owner.describe(),
                        "; ".join(f"{name!r}: {what}" for name, what in found.unexamined.items()))
        return found

    def _keep(self, owners: Iterable[Owner], managed: Container[str],
              wanted: set[int]) -> tuple[set[int], set[int]]:
        """Return which of the resources ``wanted`` ``owners`` reach, and the ids of
        their top-level objects that were too big to examine whole.

        Stops as soon as every wanted resource is found.
        """
        keep: set[int] = set()
        unseen: set[int] = set()
        for owner in owners:
            missing = wanted - keep
            if not missing:
                break
            found = self._walk(owner, managed, missing)
            keep.update(k for k in found.resources if k in wanted)
            unseen.update(id(owner.namespace.get(name)) for name in found.unexamined)
        return keep, unseen

    def _family(self, owners: list[Owner], current: list[Owner]) -> list[Owner]:
        """Return the owners whose reach must stay open while ``owners`` are closed."""
        file_of = self._file_of
        files = {file_of(node) for owner in owners for node in owner.tree()}
        kept: dict[int, Owner] = {}
        for member in current:
            if file_of(member) in files:
                for node in member.tree():
                    kept[id(node)] = node
        for other in self._pending:  # older versions still running requests
            if file_of(other) in files and all(other is not o for o in owners):
                kept[id(other)] = other
        return list(kept.values())

    def sweep(self) -> None:
        """Close the resources of every retired, unleased, unreachable owner.

        Never raises: it runs inside a reload and inside a request's cleanup.
        """
        try:
            self._sweep()
        except Exception:
            log.exception("closing what old module versions left behind failed")

    def _sweep(self) -> None:
        with self._lock:
            if not self._pending:
                return
            reachable: dict[int, Owner] = {}
            for owner in self._current():
                for node in owner.tree():
                    reachable[id(node)] = node
            done = [o for o in self._pending if not o.leases and id(o) not in reachable]
            if not done:
                return
            managed = self._managed()
            # The old versions first: when they hold nothing, nothing current
            # needs a look.
            reached = [(owner, self._walk(owner, managed).resources) for owner in done]
            wanted = {key for _, found in reached for key in found}
            keep, unseen = (self._keep(self._family(done, list(self._current())), managed,
                                       wanted) if wanted else (set(), set()))
            plan: list[tuple[Owner, dict[int, tuple[str, Any, kinds.Kind]]]] = []
            for owner, found in reached:
                self._pending.remove(owner)
                owner.swept = True
                victims = {k: v for k, v in found.items() if k not in keep}
                if victims and unseen and any(id(v) in unseen
                                              for v in list(owner.namespace.values())):
                    # It shares a structure with a current version that was too
                    # big to examine: the current version may use these too, and
                    # closing a live connection is worse than keeping one.
                    log.warning("%s: its resources are left open until the process exits: "
                                "it shares an object with a current version that is too "
                                "big to examine whole", owner.describe())
                    self._left_open.append(owner)
                    continue
                keep.update(victims)  # each closed once
                plan.append((owner, victims))
            everything = {k: v[1] for _, victims in plan for k, v in victims.items()}
            outside = held_outside(everything, managed)
        # Outside the lock: a Database waits for its checked-out connections.
        for owner, victims in plan:
            closed = [f"{kinds.describe(obj, kind)} reached through {top!r}"
                      for key, (top, obj, kind) in victims.items()
                      if key not in outside and close(obj, kind)]
            self._report(owner, closed)

    def discard(self, owner: Owner, handed: Container[int]) -> list[Closed]:
        """Close what a failed version ``owner`` opened, not what it was handed or is current."""
        managed = self._managed()
        found = self._walk(owner, managed).resources
        if not found:
            return []
        with self._lock:
            keep, _ = self._keep(self._family([owner], list(self._current())), managed,
                                 set(found))
        victims = {k: v for k, v in found.items() if k not in keep and k not in handed}
        outside = held_outside({k: v[1] for k, v in victims.items()}, managed)
        return [f"{kinds.describe(obj, kind)} reached through {top!r}"
                for key, (top, obj, kind) in victims.items()
                if key not in outside and close(obj, kind)]

    def close_everything(self, owners: Iterable[Owner]) -> int:
        """Close every resource of ``owners``, the pending ones and every registered object."""
        with self._lock:
            everyone = list(owners) + self._pending + self._left_open
            self._pending.clear()
            self._left_open.clear()
        managed = self._managed()
        seen: dict[int, tuple[Any, kinds.Kind | None]] = {}
        for owner in everyone:
            for key, (_, obj, kind) in reach.walk(owner.namespace, managed).resources.items():
                seen.setdefault(key, (obj, kind))
        for obj in kinds.registered():
            seen.setdefault(id(obj), (obj, None))
        return sum(1 for obj, kind in seen.values() if close(obj, kind))
