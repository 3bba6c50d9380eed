"""Per-thread state: the request being served and the module being loaded.

mod_python serves one request per thread at a time, but an internal redirect
runs a nested request in the same thread, so both are kept as stacks (the
request scopes as a chain of ``outer`` links).

* A :class:`RequestScope` is what code running for a request asks for with
  :func:`current_scope`. Code that must act when the request ends (a
  per-request connection, a lease on a module instance) registers a cleanup
  with it. The dispatcher's and the publisher's plans do not make one per
  request: they put a *pending* scope, the tuple ``(req, options, debug)``,
  in the thread's slot, and :func:`current_scope` turns it into a
  RequestScope the first time something asks (forms, a per-request
  connection, an import at request time, a log line's reference). The plan
  closes that scope, if one was made, when the request ends
  (:func:`end_pending`); most requests never make one.
* A :class:`Loading` is pushed by the importer while a new module instance's
  code runs, so a ``Database(...)`` declared at module level can find the
  previous instance's namespace and hand its object over.
"""
from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ._apache import Request
from ._options import Options

__all__ = ["RequestScope", "Loading", "current_scope", "current_loading", "current_options",
           "end_pending"]

log = logging.getLogger("modpy_safe.context")

class _Local(threading.local):
    # Class attributes are every thread's defaults, so reading them never fails.
    # A RequestScope, a pending scope (req, options, debug), or None.
    scope: "RequestScope | tuple[Any, Options, bool] | None" = None
    loadings: "list[Loading]"  # set on first use in each thread


_local = _Local()


class RequestScope:
    """What the framework knows about the request this thread is serving.

    Scopes of one thread form a chain (``outer`` is the scope an internal
    redirect interrupted), so entering and leaving one is two attribute writes.
    The importer's lease on the instance a request runs on is kept in two
    slots rather than as a cleanup (no object made per request):
    ``lease_release(lease_owners)`` runs after every cleanup, as the first
    cleanup registered would. ``lease_owners`` is None while none is held; a
    scope holds one such lease, further ones go through :meth:`add_cleanup`.
    """

    __slots__ = ("req", "options", "debug", "_cleanups", "data", "outer",
                 "lease_owners", "lease_release")

    def __init__(self, req: Request, options: Options, *, debug: bool = False) -> None:
        self.req = req
        self.options = options
        self.debug = debug
        self._cleanups: list[Callable[[], None]] = []
        #: Free slots for framework components (e.g. per-request connections).
        self.data: dict[str, Any] = {}
        self.outer: RequestScope | tuple[Any, Options, bool] | None = None
        self.lease_owners: Any = None
        self.lease_release: Callable[[Any], None] | None = None

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the request ends, normally or by an exception."""
        self._cleanups.append(fn)

    def hold(self, owners: Any, release: Callable[[Any], None]) -> None:
        """Keep the lease on ``owners`` until the request ends, after its cleanups.

        The first lease fills the two slots (no object made); a further one
        (an instance imported at request time) becomes a cleanup.
        """
        if self.lease_owners is not None:
            self._cleanups.append(functools.partial(release, owners))
        else:
            self.lease_owners, self.lease_release = owners, release

    def close(self) -> None:
        """Run the cleanups, last registered first; one failing never stops the rest.

        The held lease (if any) is released last.
        """
        cleanups, self._cleanups = self._cleanups, []
        try:
            for fn in reversed(cleanups):
                try:
                    fn()
                except Exception:
                    log.exception("cleanup %r at the end of a request failed", fn)
        finally:
            self._end_lease()

    def _end_lease(self) -> None:
        owners = self.lease_owners
        if owners is not None:
            release = self.lease_release
            self.lease_owners, self.lease_release = None, None
            assert release is not None
            release(owners)

    def __enter__(self) -> "RequestScope":
        self.outer = _local.scope
        _local.scope = self
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._cleanups:
                self.close()
            elif self.lease_owners is not None:
                self._end_lease()
        finally:
            if _local.scope is self:
                _local.scope = self.outer


class Loading:
    """The module instance whose code is running now, and the one it replaces.

    ``predecessor`` is the namespace of the instance being replaced (None on a
    first load or after a purge); ``namespace`` is the new instance's own.
    """

    __slots__ = ("path", "label", "namespace", "predecessor", "generation")

    def __init__(
        self,
        path: str,
        label: str,
        namespace: dict[str, Any],
        predecessor: Mapping[str, Any] | None,
        generation: int,
    ) -> None:
        self.path = path
        self.label = label
        self.namespace = namespace
        self.predecessor = predecessor
        self.generation = generation

    def __enter__(self) -> "Loading":
        _loadings().append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        stack = _loadings()
        if stack and stack[-1] is self:
            stack.pop()


def _loadings() -> list[Loading]:
    try:
        return _local.loadings
    except AttributeError:
        _local.loadings = []
        return _local.loadings


def current_scope() -> RequestScope | None:
    """Return the innermost request scope of this thread, or None.

    A pending scope (see the module docstring) becomes a RequestScope here,
    the first time anything asks for it.
    """
    scope = _local.scope
    if scope is None or type(scope) is RequestScope:
        return scope
    return _materialize(scope)


def _materialize(pending: Any) -> RequestScope:
    if isinstance(pending, RequestScope):  # a subclass
        return pending
    req, options, debug = pending
    scope = RequestScope(req, options, debug=debug)
    # The plan that put the pending scope there restores the slot itself.
    _local.scope = scope
    return scope


def end_pending(pending: tuple[Any, Options, bool], outer: Any) -> None:
    """End the request whose pending scope is ``pending``; put ``outer`` back in the slot.

    A scope made from it on the way (see :func:`current_scope`) is closed
    first: its cleanups, then the leases it holds.
    """
    scope = _local.scope
    try:
        if scope is not pending and isinstance(scope, RequestScope):
            scope.close()
    finally:
        _local.scope = outer


def current_loading() -> Loading | None:
    """Return the module load running in this thread, or None."""
    stack = getattr(_local, "loadings", None)
    return stack[-1] if stack else None


def current_options() -> Options | None:
    """Return the options of the request this thread is serving, or None."""
    scope = _local.scope
    if scope is None:
        return None
    return scope.options if isinstance(scope, RequestScope) else scope[1]
