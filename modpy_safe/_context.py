"""Per-thread state: the request being served and the module being loaded.

mod_python serves one request per thread at a time, but an internal redirect
runs a nested request in the same thread, so both are kept as stacks.

* A :class:`RequestScope` is opened by the dispatcher and the publisher around
  each request. Code that must act when the request ends (a per-request
  connection, a lease on a module instance) registers a cleanup with it.
* A :class:`Loading` is pushed by the importer while a new module instance's
  code runs, so a ``Database(...)`` declared at module level can find the
  previous instance's namespace and hand its object over.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable

from ._options import Options

__all__ = ["RequestScope", "Loading", "current_scope", "current_loading", "current_options"]

log = logging.getLogger("modpy_safe.context")

_local = threading.local()


class RequestScope:
    """What the framework knows about the request this thread is serving."""

    __slots__ = ("req", "options", "debug", "_cleanups", "data")

    def __init__(self, req: Any, options: Options, *, debug: bool = False) -> None:
        self.req = req
        self.options = options
        self.debug = debug
        self._cleanups: list[Callable[[], None]] = []
        #: Free slots for framework components (e.g. per-request connections).
        self.data: dict[str, Any] = {}

    def add_cleanup(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` when the request ends, normally or by an exception."""
        self._cleanups.append(fn)

    def close(self) -> None:
        """Run the cleanups, last registered first; one failing never stops the rest."""
        cleanups, self._cleanups = self._cleanups, []
        for fn in reversed(cleanups):
            try:
                fn()
            except Exception:
                log.exception("cleanup %r at the end of a request failed", fn)

    def __enter__(self) -> "RequestScope":
        stack = _scopes()
        stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        finally:
            stack = _scopes()
            if stack and stack[-1] is self:
                stack.pop()


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


def _scopes() -> list[RequestScope]:
    try:
        return _local.scopes  # type: ignore[no-any-return]
    except AttributeError:
        _local.scopes = []
        return _local.scopes  # type: ignore[no-any-return]


def _loadings() -> list[Loading]:
    try:
        return _local.loadings  # type: ignore[no-any-return]
    except AttributeError:
        _local.loadings = []
        return _local.loadings  # type: ignore[no-any-return]


def current_scope() -> RequestScope | None:
    """Return the innermost request scope of this thread, or None."""
    stack = getattr(_local, "scopes", None)
    return stack[-1] if stack else None


def current_loading() -> Loading | None:
    """Return the module load running in this thread, or None."""
    stack = getattr(_local, "loadings", None)
    return stack[-1] if stack else None


def current_options() -> Options | None:
    """Return the options of the request this thread is serving, or None."""
    scope = current_scope()
    return scope.options if scope is not None else None
