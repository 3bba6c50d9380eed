"""Per-thread state: the request being served and the module being loaded.

mod_python serves one request per thread at a time, but an internal redirect
runs a nested request in the same thread, so both are kept as stacks (the
request scopes as a chain of ``outer`` links).

* A :class:`RequestScope` is opened by the dispatcher and the publisher around
  each request. Code that must act when the request ends (a per-request
  connection, a lease on a module instance) registers a cleanup with it.
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

__all__ = ["RequestScope", "Loading", "current_scope", "current_loading", "current_options"]

log = logging.getLogger("modpy_safe.context")

class _Local(threading.local):
    # Class attributes are every thread's defaults, so reading them never fails.
    scope: "RequestScope | None" = None
    loadings: "list[Loading]"  # set on first use in each thread


_local = _Local()


class RequestScope:
    """What the framework knows about the request this thread is serving.

    Scopes of one thread form a chain (``outer`` is the scope an internal
    redirect interrupted), so entering and leaving one is two attribute writes.
    The importer's lease on the instance a request runs on is kept in three
    slots rather than as a cleanup (no object made per request):
    ``lease_release(lease_owners, lease_token)`` runs after every cleanup, as
    the first cleanup registered would. ``lease_token`` is 0 while none is
    held; a scope holds one such lease, further ones go through
    :meth:`add_cleanup`.
    """

    __slots__ = ("req", "options", "debug", "_cleanups", "data", "outer",
                 "lease_owners", "lease_token", "lease_release")

    def __init__(self, req: Request, options: Options, *, debug: bool = False) -> None:
        self.req = req
        self.options = options
        self.debug = debug
        self._cleanups: list[Callable[[], None]] = []
        #: Free slots for framework components (e.g. per-request connections).
        self.data: dict[str, Any] = {}
        self.outer: RequestScope | None = None
        self.lease_token = 0
        self.lease_owners: Any = None
        self.lease_release: Callable[[Any, int], None] | None = None

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the request ends, normally or by an exception."""
        self._cleanups.append(fn)

    def hold(self, owners: Any, token: int, release: Callable[[Any, int], None]) -> None:
        """Keep the lease ``token`` on ``owners`` until the request ends, after its cleanups.

        The first lease fills the three slots (no object made); a further one
        (an instance imported at request time) becomes a cleanup.
        """
        if self.lease_token:
            self._cleanups.append(functools.partial(release, owners, token))
        else:
            self.lease_owners, self.lease_token, self.lease_release = owners, token, release

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
        token = self.lease_token
        if token:
            release, owners = self.lease_release, self.lease_owners
            self.lease_token, self.lease_owners, self.lease_release = 0, None, None
            assert release is not None
            release(owners, token)

    def __enter__(self) -> "RequestScope":
        self.outer = _local.scope
        _local.scope = self
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._cleanups:
                self.close()
            elif self.lease_token:
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
    """Return the innermost request scope of this thread, or None."""
    return _local.scope


def current_loading() -> Loading | None:
    """Return the module load running in this thread, or None."""
    stack = getattr(_local, "loadings", None)
    return stack[-1] if stack else None


def current_options() -> Options | None:
    """Return the options of the request this thread is serving, or None."""
    scope = _local.scope
    return scope.options if scope is not None else None
