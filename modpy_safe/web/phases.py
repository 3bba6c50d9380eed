"""Every mod_python phase and filter: its name, which handlers serve it, its return codes.

``PythonXxxHandler modpy_safe.dispatch`` calls the function mod_python would call
for that phase (``authenhandler`` for ``PythonAuthenHandler``, ``inputfilter`` and
``outputfilter`` for the filters) in the file named by ``PythonOption
modpy_safe.handler``. ``PythonOption modpy_safe.<function name>`` names other
handlers for one phase: ``file[::callable]``, several separated by spaces (quote a
path with spaces), which run in order as stacked ``Python*Handler`` lines do. A
filter can also be named per filter: ``modpy_safe.outputfilter.<FILTER NAME>``.

Return codes follow mod_python: a stacked handler's result either lets the next
one run (``proceed``: DECLINED, and OK in phases where every module has its say)
or ends the phase with that result. ``None`` means OK where OK proceeds; in the
phases where OK decides (trans, authen, authz, type) it is an error, so a
function that forgets its ``return`` never lets a request through.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from .._apache import Request
from .._errors import ConfigError
from .._options import (
    FILTER_HANDLERS,
    HANDLER,
    PHASE_HANDLERS,
    RELOAD_INTERVAL,
    Options,
    as_handler_spec,
)
from ..reload import importer as _importer
from ..reload import path as _path
from . import routing as _routing

__all__ = ["Phase", "PHASES", "BY_DIRECTIVE", "INPUT", "OUTPUT", "PhasePlan", "plan_for",
           "outcome", "OK", "DECLINED", "DONE"]

OK = 0
DECLINED = -1
DONE = -2


@dataclasses.dataclass(frozen=True)
class Phase:
    """One request phase (or filter kind) as mod_python names it."""

    name: str  # the function called in the handler file, and the option's name
    directive: str  # the Apache directive, which mod_python puts in req.phase
    proceed: frozenset[int]  # results after which the next stacked handler runs
    refuses: bool  # before content: an error ends the request, nothing is served
    none: int | None  # what a handler returning None means (None: an error)


def _phase(directive: str, proceed: tuple[int, ...], refuses: bool) -> Phase:
    name = directive[len("Python"):].lower()
    return Phase(name, directive, frozenset(proceed), refuses, OK if OK in proceed else None)


#: In the order Apache runs them, with mod_python's continuation values.
PHASES: dict[str, Phase] = {p.name: p for p in (
    _phase("PythonPostReadRequestHandler", (DECLINED, OK), True),
    _phase("PythonTransHandler", (DECLINED,), True),
    _phase("PythonHeaderParserHandler", (DECLINED, OK), True),
    _phase("PythonInitHandler", (DECLINED, OK), True),
    _phase("PythonAccessHandler", (DECLINED, OK), True),
    _phase("PythonAuthenHandler", (DECLINED,), True),
    _phase("PythonAuthzHandler", (DECLINED,), True),
    _phase("PythonTypeHandler", (DECLINED,), True),
    _phase("PythonFixupHandler", (DECLINED, OK), True),
    dataclasses.replace(_phase("PythonHandler", (OK,), False), none=OK),
    _phase("PythonLogHandler", (DECLINED, OK), False),
    dataclasses.replace(_phase("PythonCleanupHandler", (OK,), False), none=OK),
)}
BY_DIRECTIVE: dict[str, Phase] = {p.directive: p for p in PHASES.values()}
INPUT = Phase("inputfilter", "PythonInputFilter", frozenset(), False, OK)
OUTPUT = Phase("outputfilter", "PythonOutputFilter", frozenset(), False, OK)
CONTENT = PHASES["handler"]


def outcome(phase: Phase, result: Any) -> int:
    """Return the status for mod_python from what a handler of ``phase`` returned."""
    if type(result) is int:
        return result
    if result is None:
        if phase.none is not None:
            return phase.none
        raise TypeError(
            f"{phase.name}() returned None; in {phase.directive} say what happened: return "
            "apache.OK (done), apache.DECLINED (let the next one decide) or an HTTP status")
    if isinstance(result, int) and not isinstance(result, bool):
        return int(result)
    raise TypeError(f"{phase.name}() returned {type(result).__name__} {result!r:.80}; a "
                    f"{phase.directive} returns apache.OK, apache.DECLINED or an HTTP status")


@dataclasses.dataclass(frozen=True)
class Step:
    """One handler of a phase: its file's importer entry and the callable's name."""

    target: _routing.Target
    entry: Any  # the importer's record of target.path
    option: str  # the option that named it, for messages


class PhasePlan:
    """What one configuration and section fix for every phase but content: handlers, paths.

    Kept in ``options.plans`` beside the content phase's plan (``web/plan.py``),
    so it lives as long as its configuration; the handlers of a phase are
    worked out the first time that phase runs.
    """

    __slots__ = ("options", "directory", "root", "interval", "extra", "_steps")

    def __init__(self, options: Options, directory: str | None, root: str | None) -> None:
        self.options = options
        self.directory = directory
        self.root = root
        self.interval: float = options.value(RELOAD_INTERVAL)
        self.extra = _path.search_path(options, root)
        self._steps: dict[str, tuple[Step, ...]] = {}

    def steps(self, phase: Phase, filter_name: str | None = None) -> tuple[Step, ...]:
        """Return the handlers that serve ``phase`` here, in the order they run."""
        key = phase.name if filter_name is None else f"{phase.name}.{filter_name.lower()}"
        found = self._steps.get(key)
        if found is None:
            # Two threads may both resolve it; either answer is right.
            found = self._steps.setdefault(key, self._resolve(phase, filter_name))
        return found

    def _resolve(self, phase: Phase, filter_name: str | None) -> tuple[Step, ...]:
        options = self.options
        if filter_name is not None:
            # modpy_safe.outputfilter.<NAME> first; Apache's filter names ignore case.
            for name in options.names(phase.name + "."):
                if name.split(".", 1)[1].lower() == filter_name.lower():
                    param = name.split(".", 1)[1]
                    return self._steps_of(options.value(FILTER_HANDLERS[phase.name], param),
                                          phase, f"modpy_safe.{name}")
        if phase is not CONTENT and options.is_set(PHASE_HANDLERS[phase.name]):
            return self._steps_of(options.value(PHASE_HANDLERS[phase.name]), phase,
                                  f"modpy_safe.{phase.name}")
        if not options.is_set(HANDLER):
            raise ConfigError(
                f"{phase.directive} modpy_safe.dispatch needs to know which file defines "
                f"{phase.name}(): set PythonOption modpy_safe.handler (the file that serves "
                f"the section) or PythonOption modpy_safe.{phase.name} file.py[::callable]")
        path, name = options.value(HANDLER)
        # The content phase calls the name modpy_safe.handler gives; the others their own.
        return (self._make(path, name if phase is CONTENT else phase.name, HANDLER.full_name),)

    def _steps_of(self, specs: tuple[str, ...], phase: Phase, option: str) -> tuple[Step, ...]:
        steps = []
        for spec in specs:
            path, name = as_handler_spec(spec)
            steps.append(self._make(path, name if "::" in spec else phase.name, option))
        return tuple(steps)

    def _make(self, path: str, name: str, option: str) -> Step:
        target = _routing.Target(_routing.locate(path, self.directory, option), name, True)
        return Step(target, _importer.entry_for(target.path), option)


def plan_for(options: Options, directory: str | None, req: Request) -> PhasePlan:
    """Return the phases' plan of this configuration and section (made on its first request)."""
    key = ("phases", directory)
    plan: PhasePlan | None = options.plans.get(key)
    if plan is None:
        root = os.path.normpath(directory) if directory else _path.root_of(req)
        plan = options.plans.setdefault(key, PhasePlan(options, directory, root))
    return plan
