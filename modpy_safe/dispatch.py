"""``PythonXxxHandler modpy_safe.dispatch``: serve every phase through the safe importer.

mod_python calls the function named after the phase: :func:`handler` for the
content, :func:`authenhandler` for ``PythonAuthenHandler`` and so on for every
``Python*Handler``, :func:`inputfilter` and :func:`outputfilter` for the filters
(``web/phases.py`` says which file serves which phase and what return codes
mean; ``web/filters.py`` runs a filter). A phase before content fails closed:
whatever goes wrong ends the request with its status, and the resource is
never served.

For the content phase the plan of the request's configuration
(``web/plan.py``) does the whole request: which file and callable serve it
(``web/routing.py`` decides), the current version of that file
(``reload/importer.py``, reloading it when it changed), the call, the answer
(``web/response.py``) and the error page. This function only finds the plan.
"""
from __future__ import annotations

from typing import Any

from . import _apache
from ._apache import Request
from ._context import RequestScope
from ._options import options_for
from .reload import importer as _importer
from .reload import mpimport as _mpimport  # noqa: F401 - routes apache.import_module
from .web import filters as _filters
from .web import phases as _phases
from .web import plan as _plan
from .web import response as _response
from .web import routing as _routing

__all__ = ["handler", "inputfilter", "outputfilter"] + [
    name for name in _phases.PHASES if name != "handler"]


def _other_phase(req: Request, phase: str) -> int:
    # 'PythonAuthenHandler modpy_safe.dispatch::handler': the content target,
    # under that phase's rules (it fails closed).
    return _serve(req, _phases.BY_DIRECTIVE[phase], _phases.CONTENT)


#: Serve one request (the entry point mod_python calls): the plan of the
#: request's configuration serves it (see ``web/plan.py``).
handler = _plan.entry_point(_plan.dispatch_plans, _plan.for_dispatch, _other_phase)


# ------------------------------------------------------------ other phases


def _serve(req: Request, phase: _phases.Phase, named: _phases.Phase | None = None) -> int:
    """Run the handlers of ``phase`` (those of ``named`` if given) as mod_python stacks them."""
    if not _apache._logging_installed:
        _apache.install_logging()
    debug, autoreload = _apache.request_flags(req)
    result = _phases.DECLINED if _phases.DECLINED in phase.proceed else _phases.OK
    options = options_for(req.get_options())
    with RequestScope(req, options, debug=debug) as scope:
        try:
            plan = _phases.plan_for(options, _apache.section_directory(req), req)
            for step in plan.steps(named or phase):
                try:
                    module = _importer.acquire_entry(step.entry, scope, plan.interval,
                                                     plan.extra, autoreload=autoreload)
                except FileNotFoundError:
                    raise _routing.MissingHandlerFile(
                        step.option, _apache.section_name(req), step.target.path,
                        status=500) from None
                try:
                    result = _phases.outcome(phase, _routing.find(module, step.target)(req))
                except Exception as exc:
                    if not _response._is_server_return(exc):
                        raise
                    result = _response.server_return(req, exc)
                if result not in phase.proceed:
                    break
            return result
        except Exception as exc:
            return _failed(req, phase, exc, debug)


def _failed(req: Request, phase: _phases.Phase, exc: Exception, debug: bool) -> int:
    if phase.refuses:
        return _response.refuse(req, exc, debug=debug, phase=phase.directive)
    # After the content: the answer is gone, the log is all there is.
    _response.describe(req, exc, debug=debug,
                       where=f"{phase.directive} for {req.method} {req.unparsed_uri}")
    return _phases.OK


def _entry(phase: _phases.Phase) -> Any:
    def serve(req: Request) -> int:
        return _serve(req, phase)

    serve.__name__ = serve.__qualname__ = phase.name
    serve.__doc__ = (f"Serve {phase.directive}: call {phase.name}(req) of the file named by "
                     f"modpy_safe.{phase.name} or modpy_safe.handler.")
    return serve


postreadrequesthandler = _entry(_phases.PHASES["postreadrequesthandler"])
transhandler = _entry(_phases.PHASES["transhandler"])
headerparserhandler = _entry(_phases.PHASES["headerparserhandler"])
inithandler = _entry(_phases.PHASES["inithandler"])
accesshandler = _entry(_phases.PHASES["accesshandler"])
authenhandler = _entry(_phases.PHASES["authenhandler"])
authzhandler = _entry(_phases.PHASES["authzhandler"])
typehandler = _entry(_phases.PHASES["typehandler"])
fixuphandler = _entry(_phases.PHASES["fixuphandler"])
loghandler = _entry(_phases.PHASES["loghandler"])
cleanuphandler = _entry(_phases.PHASES["cleanuphandler"])


# ----------------------------------------------------------------- filters


def inputfilter(fltr: Any) -> None:
    """Serve ``PythonInputFilter modpy_safe.dispatch NAME``: call ``inputfilter(filter)``."""
    _filters.serve(fltr, _phases.INPUT)


def outputfilter(fltr: Any) -> None:
    """Serve ``PythonOutputFilter modpy_safe.dispatch NAME``: call ``outputfilter(filter)``."""
    _filters.serve(fltr, _phases.OUTPUT)
