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

import time
from typing import Any

from . import _apache, _importer, _publish, _response
from ._context import RequestScope
from ._errors import HTTPError
from ._options import as_seconds, options_for

__all__ = ["handler"]

METHODS = ("GET", "POST", "HEAD")
_interval = as_seconds()
_ALLOW = {"Allow": ", ".join(METHODS)}

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


def handler(req: Any) -> int:
    """Serve one request (the entry point mod_python calls)."""
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
            page = _publish.locate_cached(
                filename, path_info, _suffixes_of(req), now=time.monotonic(),
                ttl=lambda: options.get("reload.interval", _interval, 1.0))
            if page.path != filename:
                # Pages written for mod_python read req.filename as the page's file.
                req.filename = page.path
            try:
                module = _importer.acquire(
                    page.path, scope, autoreload=config.get("PythonAutoReload", "1") == "1"
                )
            except FileNotFoundError:
                # Removed since locate() saw it; errors inside the page arrive wrapped.
                _publish.forget(page)
                raise HTTPError(404, "no page here") from None
            obj = _publish.resolve(req, module, page.parts)
            result = _publish.publish(obj, req)
            _publish.write(req, result)
            return _response.OK
        except Exception as exc:  # every failure becomes an HTTP answer
            return _response.handle_error(req, exc, debug=debug)
