"""Split httpd's CPU time per request by library: Python, kernel, Apache, libpq, ...

For each endpoint, wrk loads it while ``perf record`` samples httpd's children
(on-CPU time only, so other load on the machine is not counted), and the
samples are divided by the requests served meanwhile. Two endpoints side by
side show whether a difference is Python code (libpython), system calls and
scheduling (kernel), or the driver (libpq, _psycopg).

    .venv/bin/python bench/cpu_split.py db_pooled db_tpool [--mpm event] [--seconds 6]

Needs ``perf`` (Debian package linux-perf) and root, or a permissive
kernel.perf_event_paranoid.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import site, wrk
from modpy_safe.testing import Httpd, PostgresServer, make_tempdir

FREQUENCY = 1999  # samples per second per CPU; odd, so it does not beat with timers
_DSO_LINE = re.compile(r"^\s*[\d.]+%\s+(\d+)\s+(\S+)\s*$")


def split(server: Httpd, endpoint: str, setup: site.MpmSetup, seconds: int,
          workdir: Path) -> tuple[int, dict[str, float]]:
    """Return (requests, {library: µs per request}) for one endpoint."""
    url = server.url(site.ENDPOINTS[endpoint].path)
    wrk.run(url, seconds=1, connections=setup.connections)  # warm-up
    data = workdir / f"{endpoint}.data"
    pids = ",".join(str(p) for p in server.child_pids())
    result: list[wrk.WrkResult] = []
    # perf samples for exactly as long as wrk loads, so the requests wrk counts
    # are the requests the samples belong to.
    load = threading.Thread(target=lambda: result.append(
        wrk.run(url, seconds=seconds, connections=setup.connections)))
    perf = subprocess.Popen(["perf", "record", "-q", "-F", str(FREQUENCY), "-p", pids,
                             "-o", str(data)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    load.start()
    load.join(seconds + 40)
    perf.send_signal(2)  # SIGINT: perf writes its file and exits
    perf.wait(timeout=30)
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort",
                             "dso", "--stdio", "-n"], capture_output=True, text=True,
                            timeout=120).stdout
    requests = result[0].requests if result else 0
    per_request = {}
    for line in report.splitlines():
        found = _DSO_LINE.match(line)
        if found and requests:
            samples = int(found.group(1))
            per_request[found.group(2)] = samples / FREQUENCY / requests * 1e6
    return requests, per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoints", nargs="+", choices=sorted(site.ENDPOINTS))
    parser.add_argument("--mpm", default="event", choices=tuple(site.MPM_SETUPS))
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the endpoints")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed: apt-get install linux-perf", file=sys.stderr)
        return 2
    root = make_tempdir("modpy_safe-cpusplit-")
    postgres: PostgresServer | None = None
    setup = site.MPM_SETUPS[args.mpm]
    try:
        postgres = PostgresServer(root / "pg")
        postgres.init()
        postgres.start()
        server = site.build_httpd(root / "httpd", setup, postgres)
        server.start()
        try:
            for name in args.endpoints:
                for _ in range(10 * setup.processes):
                    site.get(server, site.ENDPOINTS[name].path)
            with tempfile.TemporaryDirectory() as tmp:
                for r in range(args.rounds):
                    for name in args.endpoints:
                        requests, split_us = split(server, name, setup, args.seconds, Path(tmp))
                        total = sum(split_us.values())
                        top = ", ".join(f"{dso} {us:.1f}" for dso, us in
                                        sorted(split_us.items(), key=lambda kv: -kv[1])[:7])
                        print(f"round {r + 1} {name:10} {requests:7,} req  {total:6.1f} µs/req "
                              f"on CPU: {top}", flush=True)
        finally:
            server.stop()
    finally:
        if postgres is not None:
            postgres.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
