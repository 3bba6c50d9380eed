"""``Python*Filter modpy_safe.dispatch NAME``: one call of a filter's handler, failing closed.

mod_python calls the filter once per part of the body (a brigade) with a
``filter`` object. Each call finds the handler (``web/phases.py``), leases the
current version of its file like a request handler, and calls it with that
object wrapped so what it writes stays alive until the request ends. A filter
that raises never lets the data through unfiltered, as mod_python would: the
rest of the body is read and dropped.
"""
from __future__ import annotations

from typing import Any

from .. import _apache
from .._context import RequestScope
from .._errors import ConfigError
from .._options import options_for
from ..reload import importer as _importer
from ..reload import path as _path
from . import phases as _phases
from . import response as _response
from . import routing as _routing

__all__ = ["serve"]

_FILTER_STATE = "_modpy_safe_filters"  # request attribute: filter name -> _RAN or _FAILED
_RAN, _FAILED = 1, 2
_WRITTEN = "_modpy_safe_filter_writes"  # request attribute: what filters wrote


class _Filter:
    """mod_python's filter object, with what is written kept alive until the request ends.

    mod_python hands Apache a pointer into the written object's memory (an
    "immortal" bucket) and lets Python free it as soon as the caller drops it,
    before the data is sent: the client then gets whatever reused that memory.
    The request object outlives every bucket of its response.
    """

    __slots__ = ("_filter", "_kept")

    def __init__(self, fltr: Any, kept: list[Any]) -> None:
        self._filter = fltr
        self._kept = kept

    def write(self, data: Any) -> None:
        """Write ``data`` (str or bytes) to the next filter."""
        self._kept.append(data)
        self._filter.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._filter, name)


def _kept(req: Any) -> list[Any]:
    kept: list[Any] | None = getattr(req, _WRITTEN, None)
    if kept is None:
        kept = []
        setattr(req, _WRITTEN, kept)
    return kept


def serve(fltr: Any, phase: _phases.Phase) -> None:
    """Call the filter's handler for one brigade; after a failure drop what follows."""
    if not _apache._logging_installed:
        _apache.install_logging()
    req = fltr.req
    debug, autoreload = _apache.request_flags(req)
    states: dict[str, int] | None = getattr(req, _FILTER_STATE, None)
    if states is None:
        states = {}
        setattr(req, _FILTER_STATE, states)
    state = states.get(fltr.name)
    if state == _FAILED:
        _drain(fltr)
        return
    directory = fltr.dir or None
    try:
        options = options_for(req.get_options())
        with RequestScope(req, options, debug=debug) as scope:
            plan = _phases.plan_for(options, directory, req)
            scope.data[_path.ROOT_KEY] = plan.root
            step = plan.steps(phase, fltr.name)[0]
            try:
                module = _importer.acquire_entry(
                    step.entry, scope, plan.interval, plan.extra, autoreload=autoreload)
            except FileNotFoundError:
                raise ConfigError(f"PythonOption {step.option} names {step.target.path!r}, "
                                  "which does not exist") from None
            _routing.find(module, step.target)(_Filter(fltr, _kept(req)))
    except Exception as exc:
        if _response._is_server_return(exc):
            return  # mod_python's FilterDispatch ignores it too
        states[fltr.name] = _FAILED
        _filter_failed(fltr, phase, exc, debug, first=state is None)
        return
    states[fltr.name] = _RAN


def _filter_failed(fltr: Any, phase: _phases.Phase, exc: Exception, debug: bool, *,
                   first: bool) -> None:
    """Log a filter's failure; never let the unfiltered data through in its place.

    mod_python would pass the rest on unfiltered. Here an output filter that
    fails on its first call answers 500 (the headers are not sent yet); one
    that fails later ends the body where it stands. The rest is dropped.
    """
    req = fltr.req
    failure = _response.describe(
        req, exc, debug=debug, where=f"{phase.directive} {fltr.name} for "
                                     f"{req.method} {req.unparsed_uri}")
    if first and not fltr.is_input and not fltr.closed:
        req.status = failure.status
        if "Content-Length" in req.headers_out:
            del req.headers_out["Content-Length"]
        req.content_type = "text/html; charset=utf-8"
        text = _response.page(failure.status, failure.message, reference=failure.reference,
                              detail=failure.detail)
        _Filter(fltr, _kept(req)).write(text)
    _drain(fltr)


def _drain(fltr: Any) -> None:
    """Read and drop what reaches a failed filter; close it at the end of the stream."""
    if fltr.closed:
        return
    data = fltr.read()
    while data:
        data = fltr.read()
    if data is None:  # the end of the stream: pass it on
        fltr.close()
