"""``PythonHandler modpy_safe.dispatch``: serve handler files through the safe importer.

mod_python calls :func:`handler` for every request of the section. The work is
split so each part can be tested alone: ``_routing`` decides which file and
callable serve the request, ``_importer`` returns the current instance of that
file (reloading it when it changed), and ``_response`` calls the target and
turns its result or its exception into the HTTP answer.

This function runs on every request, so it does only what must be done per
request: options and targets are cached per configuration by the modules it
calls, and no exception is raised on the normal path.
"""
from __future__ import annotations

from typing import Any

from . import _apache, _importer, _response, _routing
from ._context import RequestScope
from ._errors import HTTPError
from ._options import options_for

__all__ = ["handler"]


def handler(req: Any) -> int:
    """Serve one request (the entry point mod_python calls)."""
    _apache.install_logging()
    options = options_for(req.get_options())
    # One config table for both flags (what _apache.debug_enabled and
    # autoreload_enabled read): httpd builds a new table object per call.
    config = req.get_config()
    debug = config.get("PythonDebug", "0") == "1"
    autoreload = config.get("PythonAutoReload", "1") == "1"
    with RequestScope(req, options, debug=debug) as scope:
        try:
            target = _routing.resolve(req, options)
            if target is None:
                return _response.DECLINED
            try:
                module = _importer.acquire(target.path, scope, autoreload=autoreload)
            except FileNotFoundError:
                # Only the handler file itself: errors inside it arrive wrapped.
                raise HTTPError(404, "There is no page at this address.") from None
            return _response.call(req, _routing.find(module, target))
        except Exception as exc:  # every failure becomes an HTTP answer
            if isinstance(exc, UnicodeDecodeError) and _undecodable_url(req):
                exc = HTTPError(400, "The URL is not valid UTF-8 once percent-decoded.")
            return _response.handle_error(req, exc, debug=debug)


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

