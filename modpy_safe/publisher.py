"""``PythonHandler modpy_safe.publisher``: a drop-in replacement for mod_python.publisher.

A site written for ``mod_python.publisher`` switches by changing that one
directive. URLs map to page files and objects in them, form fields to
parameters, and ``__auth__``/``__access__``/``__auth_realm__`` protect pages,
as mod_python documents; what differs is listed in
``docs/migrating-from-publisher.md``. Pages are loaded through the safe
importer, so editing a page never leaks what its old version held (a
module-level database connection, say), and a page may declare a
``modpy_safe.Database`` like any handler file.

The rules themselves live in ``_publish`` (mapping, traversal, arguments,
results) and ``_auth``; this module wires them to a request.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from . import _apache
from ._context import RequestScope
from ._errors import HTTPError
from ._options import Options, as_paths, as_seconds, options_for
from .reload import importer as _importer
from .web import publish as _publish
from .web import response as _response

__all__ = ["handler"]

METHODS = ("GET", "POST", "HEAD")
_interval = as_seconds()
_ALLOW = {"Allow": ", ".join(METHODS)}
_NO_PATHS: tuple[str, ...] = ()

# Per (AddHandler extensions, handler extension): the suffixes a URL may carry.
_suffixes: dict[tuple[str, str], tuple[str, ...]] = {}


def _suffixes_of(req: Any) -> tuple[str, ...]:
    exts = req.get_addhandler_exts() or ""
    extension = getattr(req, "extension", None) or ""
    key = (exts, extension)
    found = _suffixes.get(key)
    if found is None:
        found = tuple(s.lstrip(".") for s in (*exts.split(), extension) if s.lstrip("."))
        _suffixes[key] = found
    return found


# id(Options) -> (the Options, reload.interval, reload.path): read once per configuration.
_Settings = tuple[Options, float, tuple[str, ...]]
_settings: dict[int, _Settings] = {}
_settings_lock = threading.Lock()
_SETTINGS_LIMIT = 1024


def _settings_for(options: Options) -> _Settings:
    found = _settings.get(id(options))
    if found is not None and found[0] is options:
        return found
    found = (options, options.get("reload.interval", _interval, 1.0),
             options.get("reload.path", as_paths, _NO_PATHS))
    with _settings_lock:
        if len(_settings) >= _SETTINGS_LIMIT:
            _settings.clear()
        _settings[id(options)] = found  # the Options is kept: its id is never reused
    return found


def handler(req: Any) -> int:
    """Serve one request (the entry point mod_python calls)."""
    if not _apache._logging_installed:
        _apache.install_logging()
    config = req.get_config()
    debug = config.get("PythonDebug", "0") == "1"
    options = options_for(req.get_options())
    with RequestScope(req, options, debug=debug) as scope:
        try:
            if req.method not in METHODS:
                req.allow_methods(list(METHODS))
                raise HTTPError(405, f"{req.method} is not allowed here", headers=_ALLOW)
            try:
                filename, path_info = req.filename, req.path_info
            except UnicodeDecodeError:
                # mod_python decodes these as UTF-8 on access: '/page.py/%ff' fails here.
                raise HTTPError(400, "the URL is not valid UTF-8 once percent-decoded") from None
            settings = _settings.get(id(options))
            if settings is None or settings[0] is not options:
                settings = _settings_for(options)
            interval = settings[1]
            page = _publish.locate_cached(filename, path_info, _suffixes_of(req),
                                          now=time.monotonic(), ttl=interval)
            if page.path != filename:
                # Pages written for mod_python read req.filename as the page's file.
                req.filename = page.path
            try:
                module = _importer.acquire_entry(
                    _importer.entry_for(page.path), scope, interval, settings[2],
                    autoreload=config.get("PythonAutoReload", "1") == "1")
            except FileNotFoundError:
                # Removed since locate() saw it; errors inside the page arrive wrapped.
                _publish.forget(page)
                raise HTTPError(404, "no page here") from None
            plain = _publish.plain_page(module, page.parts)
            if plain is not None:
                # What resolve() and publish() do for an unprotected plain function.
                func, plan = plain
                if plan.names or plan.var_kw:
                    result = _publish.call(func, req)
                else:
                    req.form = _publish.LazyForm(req)
                    result = func(req=req) if plan.req else func()
                if type(result) is not str:
                    result = _publish.after_call(result, req)
            else:
                obj = _publish.resolve(req, module, page.parts)
                result = _publish.publish(obj, req)
            _publish.write(req, result)
            return _response.OK
        except Exception as exc:  # every failure becomes an HTTP answer
            return _response.handle_error(req, exc, debug=debug)
