"""Find where a side's time goes inside httpd: cProfile around its handler, per request.

Starts one prefork child (so every request lands in the profiled process),
sends load to the profiling twin of each chosen endpoint over one keep-alive
connection, and prints per request: Python function calls, profiled CPU time
and the functions that take most of it (file:function). Call counts are exact
and do not depend on the machine's load; times are cProfile's wall clock in a
single process, so on a busy machine they carry other processes' time slices.

    .venv/bin/python bench/profile_httpd.py fn_safe fn_plain [--seconds 5] [--top 15]

Endpoint names are those of bench/site.py (fn_plain, fn_safe, cls_safe,
pub_plain, pub_safe, db_auto, db_global, db_pooled, db_tpool, db_connect).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import site, wrk
from modpy_safe.testing import Httpd, PostgresServer, make_tempdir

DB_ENDPOINTS = {"db_auto", "db_pooled", "db_global", "db_tpool", "db_connect"}
_SUMMARY = re.compile(r"(\d+) function calls(?: \((\d+) primitive calls\))? in ([\d.]+) seconds")
_ROW = re.compile(r"^\s*([\d/]+)\s+([\d.]+)\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s+(.+)$")


def profile(server: Httpd, name: str, seconds: int, top: int) -> str:
    """Load one endpoint's twin and return the per-request report."""
    ep = site.ENDPOINTS[name]
    path = f"/prof_{name}/{ep.filename}"
    for _ in range(20):  # load the handler before the profiled requests start
        site.get(server, path)
    site.get(server, f"{path}?bench-profile-stats")  # and forget those requests
    result = wrk.run(server.url(path), seconds=seconds, connections=1)
    status, text = site.get(server, f"{path}?bench-profile-stats")
    if status != 200:
        return f"{name}: the profiler answered {status}: {text[:300]}"
    requests = int(text.split()[1])
    found = _SUMMARY.search(text)
    if not requests or found is None:
        return f"{name}: no profile collected\n{text[:500]}"
    calls, seconds_total = int(found.group(1)), float(found.group(3))
    lines = [f"== {name} ({path}): {requests:,} requests, {result.rps:,.0f} req/s under the "
             f"profiler; per request: {calls / requests:.0f} Python calls, "
             f"{seconds_total / requests * 1e6:.1f} µs profiled",
             "   µs/req (own)  µs/req (incl.)  calls/req  function"]
    rows = 0
    for line in text.splitlines():
        row = _ROW.match(line)
        if row is None or rows >= top:
            continue
        ncalls = int(row.group(1).split("/")[0])
        lines.append(f"   {float(row.group(2)) / requests * 1e6:12.2f}  "
                     f"{float(row.group(3)) / requests * 1e6:14.2f}  "
                     f"{ncalls / requests:9.1f}  {row.group(4)}")
        rows += 1
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", nargs="+", choices=sorted(site.ENDPOINTS))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    root = make_tempdir("modpy_safe-profile-")
    postgres: PostgresServer | None = None
    try:
        if DB_ENDPOINTS & set(args.endpoints):
            postgres = PostgresServer(root / "pg")
            postgres.init()
            postgres.start()
        setup = site.MpmSetup("prefork", processes=1, threads=1, connections=1)
        server = site.build_httpd(root / "httpd", setup, postgres,
                                  profiled=tuple(args.endpoints))
        server.start()
        try:
            # A normal section first: its request puts the checkout on sys.path.
            for name in args.endpoints:
                site.get(server, site.ENDPOINTS[name].path)
            for name in args.endpoints:
                print(profile(server, name, args.seconds, args.top), flush=True)
        finally:
            server.stop()
    finally:
        if postgres is not None:
            postgres.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
