"""What a module instance owns, and closing it at the right moment.

A *resource* is an object found among a module's top-level names that holds
something outside the process:

* any object with a callable ``__modpy_safe_close__`` (``modpy_safe.Database``
  defines it), closed by calling it;
* a DB-API connection (callable ``cursor``, ``commit``, ``rollback`` and
  ``close``; classes and modules excluded), closed with ``close()``;
* a psycopg2 pool (``psycopg2.pool.AbstractConnectionPool``), closed with
  ``closeall()``;
* an object given to :func:`register`, closed with the function given there.

An :class:`Owner` is one instance of one file (the importer subclasses it).
Requests *lease* the owners they run on; a replaced owner is *retired*, and
:class:`Sweeper` closes its resources that nothing current still references
once its last lease is released. Leasing takes no lock: a lease is a token in a
set, and retirement and leasing each write first and read second, so at least
one side always sees the other (see :meth:`Owner.lease`).
"""
from __future__ import annotations

import itertools
import logging
import threading
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["register", "is_resource", "collect", "close", "Owner", "Sweeper"]

log = logging.getLogger("modpy_safe.importer")

# id(obj) -> (obj, close function). Strong references: a registered object stays
# alive until it is closed, so its id can never be reused by another object.
_registered: dict[int, tuple[Any, Callable[[], Any]]] = {}
_registered_lock = threading.Lock()


def register(obj: Any, close: Callable[[], Any] | None = None) -> Any:
    """Declare ``obj`` a resource that modpy_safe closes when no module uses it any more.

    ``close`` is called with no arguments to release it; by default
    ``obj.close``. Return ``obj``, so a module can write
    ``client = modpy_safe.register(make_client())``.
    """
    if close is None:
        close = getattr(obj, "close", None)
        if not callable(close):
            raise TypeError(
                f"modpy_safe.register({obj!r}): the object has no close() method; "
                "pass the function that releases it as close=..."
            )
    elif not callable(close):
        raise TypeError(f"modpy_safe.register(): close must be callable, not {close!r}")
    with _registered_lock:
        _registered[id(obj)] = (obj, close)
    return obj


def _is_pool(obj: Any) -> bool:
    try:
        from psycopg2.pool import AbstractConnectionPool
    except ImportError:  # pragma: no cover - psycopg2 is a dependency
        return False
    return isinstance(obj, AbstractConnectionPool)


def is_resource(obj: Any) -> bool:
    """Return True when ``obj`` is something modpy_safe must close (see the module doc)."""
    if obj is None or isinstance(obj, (type, types.ModuleType, types.FunctionType,
                                       types.BuiltinFunctionType, str, bytes, int, float)):
        return False
    if id(obj) in _registered and _registered[id(obj)][0] is obj:
        return True
    try:
        if callable(getattr(obj, "__modpy_safe_close__", None)):
            return True
        if _is_pool(obj):
            return True
        return all(callable(getattr(obj, name, None))
                   for name in ("cursor", "commit", "rollback", "close"))
    except Exception:  # a property that raises is not a resource we can handle
        return False


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


def close(obj: Any) -> bool:
    """Release one resource; return True when it was open and is closed now.

    Failures are logged, never raised: closing runs in cleanups that must go on.
    """
    try:
        entry = _registered.get(id(obj))
        if entry is not None and entry[0] is obj:
            with _registered_lock:
                _registered.pop(id(obj), None)
            entry[1]()
            return True
        hook = getattr(obj, "__modpy_safe_close__", None)
        if callable(hook):
            hook()
            return True
        if _is_pool(obj):
            if getattr(obj, "closed", False):
                return False
            obj.closeall()
            return True
        if getattr(obj, "closed", False):
            return False
        obj.close()
        return True
    except Exception:
        log.exception("closing %r failed", obj)
        return False


_tokens = itertools.count(1)
#: The source of lease tokens, for callers that lease one owner inline.
tokens = _tokens


class Owner:
    """One module instance as the owner of resources, leased by the requests using it."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace
        self.leases: set[int] = set()
        self.retired = False
        self.swept = False
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
    def lease(owners: Iterable[Owner]) -> int:
        """Lease every owner in ``owners`` and return the token that releases them.

        The caller must then check that the owner it wanted is not retired: the
        lease is written before that read, and :meth:`Sweeper.retire` writes
        ``retired`` before it reads the leases, so one of the two sees the other.
        """
        token = next(_tokens)  # atomic in CPython
        for owner in owners:
            owner.leases.add(token)
        return token


class Sweeper:
    """Close what retired owners leave behind once nothing can reach it any more.

    ``current`` returns the owners in use now (each file's current instance);
    ``report(owner, count)`` is told how many resources were closed for an owner.
    """

    def __init__(self, current: Callable[[], Iterable[Owner]],
                 report: Callable[[Owner, int], None]) -> None:
        self._current = current
        self._report = report
        self._pending: list[Owner] = []
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

    def release(self, owners: Iterable[Owner], token: int) -> None:
        """End the lease ``token`` on ``owners``; sweep if one of them is retired."""
        retired = False
        for owner in owners:
            owner.leases.discard(token)
            retired = retired or owner.retired
        if retired:
            self.sweep()

    def sweep(self) -> None:
        """Close the resources of every retired, unleased, unreachable owner."""
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
            keep: set[int] = set()
            for owner in list(reachable.values()) + [o for o in self._pending if o not in done]:
                keep.update(collect(owner.namespace))
            plan: list[tuple[Owner, list[Any]]] = []
            for owner in done:
                self._pending.remove(owner)
                owner.swept = True
                victims = [obj for key, (_, obj) in collect(owner.namespace).items()
                           if key not in keep]
                keep.update(id(obj) for obj in victims)  # each closed once
                plan.append((owner, victims))
        # Outside the lock: a Database waits for its checked-out connections.
        for owner, victims in plan:
            count = sum(1 for obj in victims if close(obj))
            self._report(owner, count)

    def close_everything(self, owners: Iterable[Owner]) -> int:
        """Close every resource of ``owners``, the pending ones and every registered object."""
        with self._lock:
            everyone = list(owners) + self._pending
            self._pending.clear()
        seen: dict[int, Any] = {}
        for owner in everyone:
            for key, (_, obj) in collect(owner.namespace).items():
                seen.setdefault(key, obj)
        for key, (obj, _) in list(_registered.items()):
            seen.setdefault(key, obj)
        return sum(1 for obj in seen.values() if close(obj))
