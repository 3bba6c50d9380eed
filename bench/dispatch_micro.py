"""Diagnose rows 1–2: what ``modpy_safe.dispatch`` costs per request, in plain Python.

Calls ``modpy_safe.dispatch.handler`` with a stand-in request (what mod_python
would pass: options and config tables copied afresh each call, as httpd does)
and the same handler function directly, alternating, and prints microseconds
per request; ``--profile`` adds a cProfile listing of the dispatch path, so a
missed target in rows 1–2 can be traced to file:function without httpd.

    .venv/bin/python bench/dispatch_micro.py [--class] [--breakdown] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FUNCTION = '''\
def handler(req):
    req.content_type = "text/plain"
    req.write(b"hello from a handler\\n")
    return 0
'''

CLASS = '''\
import modpy_safe


class Hello(modpy_safe.Handler):
    def get(self):
        return "hello from a handler\\n"
'''


class _HList:
    is_location = False

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.handler = "modpy_safe.dispatch"


class StandInRequest:
    """The parts of mod_python's request object that a dispatch touches."""

    def __init__(self, directory: str, filename: str, options: dict[str, str]) -> None:
        self._options = options
        self._config = {"PythonDebug": "0", "PythonAutoReload": "1"}
        self.phase = "PythonHandler"
        self.hlist = _HList(directory)
        self.filename = filename
        self.uri = "/bench/" + os.path.basename(filename)
        self.unparsed_uri = self.uri
        self.path_info = ""
        self.args = None
        self.method = "GET"
        self.method_number = 0
        self.headers_in: dict[str, str] = {}
        self.headers_out: dict[str, str] = {}
        self.err_headers_out: dict[str, str] = {}
        self._content_type = ""
        self._content_type_set = 0
        self.status = 200
        self.written = 0
        self.sent_bodyct = 0

    @property
    def content_type(self) -> str:
        return self._content_type

    @content_type.setter
    def content_type(self, value: str) -> None:
        # mod_python remembers that a handler chose the type.
        self._content_type = value
        self._content_type_set = 1

    # httpd builds a new table object for each call; a dict copy is the nearest cost.
    def get_options(self) -> dict[str, str]:
        return dict(self._options)

    def get_config(self) -> dict[str, str]:
        return dict(self._config)

    def write(self, data: bytes | str, flush: int = 1) -> None:
        self.written += len(data)

    def set_content_length(self, n: int) -> None:
        pass

    def register_cleanup(self, *_args: Any) -> None:
        pass


def _timed(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n / 1000.0


def breakdown(req: StandInRequest, n: int) -> list[tuple[str, float]]:
    """Time each step of the dispatch path alone (µs per call), as dispatch.handler runs them.

    Mirrors modpy_safe/web/plan.py at the time of writing; a step whose
    internal API changed is reported as such instead of timed.
    """
    from modpy_safe.reload import importer as _importer
    from modpy_safe.web import plan as _plan
    from modpy_safe.web import routing as _routing

    plan: Any = _plan.for_dispatch(req)  # type: ignore[arg-type]
    target = plan.target or _routing.resolve_by_url(req)  # type: ignore[arg-type]
    assert target is not None
    entry = _importer.entry_for(target.path)
    inst, owners = _importer.take(entry, 1.0, (), autoreload=True, debug=False)
    _importer.release(owners)
    fn = _routing.find(inst.module, target)

    def key() -> None:
        hlist = req.hlist
        (tuple(req.get_options().items()), tuple(req.get_config().items()),
         hlist.directory, hlist.is_location)

    def lease() -> None:
        for owner in owners:
            owner.leases.append(None)
        for owner in owners:
            owner.leases.pop()

    steps: list[tuple[str, Callable[[], Any]]] = [
        ("the configuration's key (two tables, the section)", key),
        ("_plan.for_dispatch(req)", lambda: _plan.for_dispatch(req)),  # type: ignore[arg-type]
        ("lease + release (one owner)", lease),
        ("plan.serve(req) (incl. fn)", lambda: plan.serve(req)),
        ("fn(req) alone", lambda: fn(req)),
    ]
    out = []
    for label, step in steps:
        try:
            out.append((label, min(_timed(step, n) for _ in range(3))))
        except Exception as exc:  # the internals moved on: say so, time the rest
            out.append((f"{label}: {type(exc).__name__}: {exc}", float("nan")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--class", dest="cls", action="store_true",
                        help="dispatch to a Handler subclass (row 2) instead of a function")
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="print a cProfile listing")
    parser.add_argument("--breakdown", action="store_true",
                        help="time each step of the dispatch path alone")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from modpy_safe import dispatch

    with tempfile.TemporaryDirectory(prefix="modpy_safe-dispatch-") as tmp:
        fn_path = Path(tmp, "fn_app.py")
        fn_path.write_text(FUNCTION)
        name = "handler"
        if args.cls:
            Path(tmp, "cls_app.py").write_text(CLASS)
            name = "Hello"
        target = "cls_app.py" if args.cls else "fn_app.py"
        req = StandInRequest(tmp + "/", str(Path(tmp, target)),
                             {"modpy_safe.handler": f"{target}::{name}"})
        namespace: dict[str, Any] = {}
        exec(compile(FUNCTION, str(fn_path), "exec"), namespace)
        direct = namespace["handler"]

        status = dispatch.handler(req)
        if status != 0 or not req.written:
            print(f"dispatch answered {status} and wrote {req.written} bytes; "
                  f"is modpy_safe.dispatch working?", file=sys.stderr)
            return 1
        gc.disable()
        a: list[float] = []
        b: list[float] = []
        for _ in range(args.rounds):
            a.append(_timed(lambda: dispatch.handler(req), args.iterations))
            b.append(_timed(lambda: direct(req), args.iterations))
        gc.enable()
        ma, mb = statistics.median(a), statistics.median(b)
        kind = "Handler subclass" if args.cls else "function"
        print(f"dispatch → {kind}: {ma:.2f} µs per request; the function called directly: "
              f"{mb:.2f} µs; dispatch adds {ma - mb:.2f} µs")
        if args.breakdown:
            for label, us in breakdown(req, args.iterations):
                print(f"  {us:6.2f} µs  {label}")
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(args.iterations):
                dispatch.handler(req)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
