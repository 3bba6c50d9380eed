"""``PythonHandler modpy_safe.publisher``: a drop-in replacement for mod_python.publisher.

A site written for ``mod_python.publisher`` switches by changing that one
directive. URLs map to page files and objects in them, form fields to
parameters, and ``__auth__``/``__access__``/``__auth_realm__`` protect pages,
as mod_python documents; what differs is listed in
``docs/migrating-from-publisher.md``. Pages are loaded through the safe
importer, so editing a page never leaks what its old version held (a
module-level database connection, say), and a page may declare a
``modpy_safe.Database`` like any handler file.

The rules live in ``web/publish.py`` (mapping, traversal, arguments, results)
and ``web/auth.py``; ``web/plan.py`` serves a request; this module opens the
request's scope around it and turns any failure into the HTTP answer.
"""
from __future__ import annotations

from . import _apache
from ._apache import Request
from ._context import RequestScope
from ._options import options_for
from .ops.counters import count_request
from .web import plan as _plan
from .web import response as _response

__all__ = ["handler"]


def handler(req: Request) -> int:
    """Serve one request (the entry point mod_python calls)."""
    count_request()
    if not _apache._logging_installed:
        _apache.install_logging()
    debug, autoreload = _apache.request_flags(req)
    options = options_for(req.get_options())
    with RequestScope(req, options, debug=debug) as scope:
        try:
            return _plan.publisher_plan(options).serve(req, scope, autoreload)
        except Exception as exc:  # every failure becomes an HTTP answer
            return _response.handle_error(req, exc, debug=debug)
