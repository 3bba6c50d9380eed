"""``PythonHandler modpy_safe.dispatch``: serve handler files through the safe importer.

mod_python calls :func:`handler` for every request of the section. The work is
split so each part can be tested alone: ``web/plan.py`` holds, per
configuration, which file and callable serve a request (``web/routing.py``
decides) and asks ``reload/importer.py`` for the current version of that file
(reloading it when it changed); ``web/response.py`` calls the target and turns
its result or its exception into the HTTP answer.

This function runs on every request, so it does only what must be done per
request: find the configuration's options and plan (cached per configuration),
open the request's scope, and let the plan serve.
"""
from __future__ import annotations

from . import _apache
from ._apache import Request
from ._context import RequestScope
from ._errors import HTTPError
from ._options import options_for
from .web import plan as _plan
from .web import response as _response

__all__ = ["handler"]


def handler(req: Request) -> int:
    """Serve one request (the entry point mod_python calls)."""
    if not _apache._logging_installed:
        _apache.install_logging()
    debug, autoreload = _apache.request_flags(req)
    options = options_for(req.get_options())
    with RequestScope(req, options, debug=debug) as scope:
        try:
            return _plan.dispatch_plan(req, options).serve(req, scope, autoreload)
        except Exception as exc:  # every failure becomes an HTTP answer
            if isinstance(exc, UnicodeDecodeError) and _undecodable_url(req):
                exc = HTTPError(400, "The URL is not valid UTF-8 once percent-decoded.")
            return _response.handle_error(req, exc, debug=debug)


def _undecodable_url(req: Request) -> bool:
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
