"""Profile another PythonHandler inside httpd: bench/profile_httpd.py's wrapper.

``PythonHandler bench_profiler`` with ``PythonOption bench.profile.target
<module>`` calls ``<module>.handler(req)`` under cProfile (its default clock:
a CPU clock costs a system call per function call and would drown what it
measures). ``?bench-profile-stats`` answers the statistics collected since the
last such request (pstats text) with the number of requests, and starts afresh.
"""
import cProfile
import importlib
import io
import os
import pstats

from mod_python import apache

_state = {"profile": cProfile.Profile(), "requests": 0}
STATS_QUERY = "bench-profile-stats"


def handler(req):
    if req.args == STATS_QUERY:
        out = io.StringIO()
        out.write(f"requests {_state['requests']} pid {os.getpid()}\n")
        if _state["requests"]:
            pstats.Stats(_state["profile"], stream=out).sort_stats("tottime").print_stats(40)
        _state.update(profile=cProfile.Profile(), requests=0)
        req.content_type = "text/plain"
        req.write(out.getvalue())
        return apache.OK
    target = importlib.import_module(req.get_options()["bench.profile.target"])
    profile = _state["profile"]
    _state["requests"] += 1
    profile.enable()
    try:
        return target.handler(req)
    finally:
        profile.disable()
