"""``PythonHandler modpy_safe.dispatch``: serve handler files through the safe importer.

mod_python calls :func:`handler` for every request of the section. The work is
split so each part can be tested alone: ``_routing`` decides which file and
callable serve the request, ``_importer`` returns the current instance of that
file (reloading it when it changed), and ``_response`` calls the target and
turns its result or its exception into the HTTP answer.

This function runs on every request, so it does only what must be done per
request: options are cached per configuration by ``_options``, and for a
section with ``modpy_safe.handler`` this module keeps a route per
configuration (the target, the importer's entry for its file, the reload
settings). A request then costs a few dict lookups, one clock read, a lease
and the call; no exception is raised on the normal path.
"""
from __future__ import annotations

import threading
import types
from typing import Any

from . import _apache
from ._context import RequestScope, _local
from ._errors import HTTPError
from ._options import Options, as_paths, options_for
from .reload import importer as _importer
from .web import response as _response
from .web import routing as _routing
from .web.handler import Handler

__all__ = ["handler"]

_FUNCTION = types.FunctionType
_OK = _response.OK
_AS_INTERVAL = _importer.AS_INTERVAL
_NO_PATHS: tuple[str, ...] = ()


class _Route:
    """What a configuration (and section directory) fixes for all its requests."""

    __slots__ = ("options", "target", "entry", "interval", "extra")

    def __init__(self, options: Options, target: _routing.Target) -> None:
        self.options = options  # kept so its id, part of the key, is never reused
        self.target = target
        self.entry = _importer.entry_for(target.path)
        self.interval: float = options.get("reload.interval", _AS_INTERVAL, 1.0)
        self.extra: tuple[str, ...] = options.get("reload.path", as_paths, _NO_PATHS)


# (id(options), section directory) -> _Route, for sections with modpy_safe.handler.
_routes: dict[tuple[int, str | None], _Route] = {}
_routes_lock = threading.Lock()
_ROUTES_LIMIT = 1024


def _route_for(req: Any, options: Options) -> _Route | None:
    """Return the fixed route of this request's section, or None when the URL decides."""
    if _routing.OPTION not in options:
        return None
    hlist = req.hlist
    key = (id(options), None if hlist.is_location else (hlist.directory or None))
    target = _routing.resolve(req, options)
    assert target is not None  # a named handler is never left to Apache
    route = _Route(options, target)
    with _routes_lock:
        if len(_routes) >= _ROUTES_LIMIT:
            _routes.clear()
        _routes[key] = route
    return route


def handler(req: Any) -> int:
    """Serve one request (the entry point mod_python calls)."""
    if not _apache._logging_installed:
        _apache.install_logging()
    options = options_for(req.get_options())
    # One config table for both flags (what _apache.debug_enabled and
    # autoreload_enabled read): httpd builds a new table object per call.
    config = req.get_config()
    debug = config.get("PythonDebug", "0") == "1"
    scope = RequestScope(req, options, debug=debug)
    # RequestScope.__enter__ and __exit__ in line: this runs on every request.
    scope.outer = _local.scope
    _local.scope = scope
    try:
        try:
            hlist = req.hlist
            route = _routes.get((id(options), None if hlist.is_location
                                 else (hlist.directory or None)))
            if route is None or route.options is not options:
                route = _route_for(req, options)
            if route is not None:
                target = route.target
                try:
                    module = _importer.acquire_entry(
                        route.entry, scope, route.interval, route.extra,
                        autoreload=config.get("PythonAutoReload", "1") == "1")
                except FileNotFoundError:
                    raise HTTPError(404, "There is no page at this address.") from None
                # The common cases in line (what _response.call and _handler.run do):
                # a plain function, or a Handler class with a method for req.method.
                func = getattr(module, target.name, None)
                if type(func) is _FUNCTION:
                    result = func(req)
                elif (isinstance(func, type) and issubclass(func, Handler)
                      and (verb := func.routes.get(req.method)) is not None):
                    result = getattr(func(req), verb)()
                else:
                    return _response.call(req, _routing.find(module, target))
                if result is None:
                    return _OK
                if type(result) is int:
                    return result
                return _response.render(req, result)
            else:
                by_url = _routing.resolve(req, options)
                if by_url is None:
                    return _response.DECLINED
                target = by_url
                try:
                    module = _importer.acquire(
                        target.path, scope,
                        autoreload=config.get("PythonAutoReload", "1") == "1")
                except FileNotFoundError:
                    # Only the handler file itself: errors inside it arrive wrapped.
                    raise HTTPError(404, "There is no page at this address.") from None
            return _response.call(req, _routing.find(module, target))
        except Exception as exc:  # every failure becomes an HTTP answer
            if isinstance(exc, UnicodeDecodeError) and _undecodable_url(req):
                exc = HTTPError(400, "The URL is not valid UTF-8 once percent-decoded.")
            return _response.handle_error(req, exc, debug=debug)
    finally:
        try:
            if scope._cleanups:
                scope.close()
            else:
                token = scope.lease_token
                if token:
                    release, owners = scope.lease_release, scope.lease_owners
                    scope.lease_token, scope.lease_owners, scope.lease_release = 0, None, None
                    release(owners, token)  # type: ignore[misc]
        finally:
            if _local.scope is scope:
                _local.scope = scope.outer


def _undecodable_url(req: Any) -> bool:
    """Return True when mod_python cannot decode the request's path as UTF-8.

    mod_python decodes ``req.filename`` and ``req.path_info`` on each access and
    raises UnicodeDecodeError for ``/app.py/%ff``: the client sent a bad URL
    (400), the handler did nothing wrong (500). Checked on the error path only.
    """
    try:
        req.filename, req.path_info  # noqa: B018 - the access is the check
    except UnicodeDecodeError:
        return True
    return False

