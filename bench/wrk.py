"""Drive ``wrk`` against 127.0.0.1 and read its report into numbers.

Only loopback URLs are accepted: the load must never leave the machine.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["WrkResult", "WrkError", "run", "parse"]

WRK = "wrk"

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", re.M)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)


class WrkError(RuntimeError):
    """wrk could not run, or printed a report this module cannot read."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles and every kind of failure."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx/3xx answer, counting socket errors."""
        return self.non2xx + self.socket_errors


def parse(text: str) -> WrkResult:
    """Read the report wrk prints with ``--latency``; raise WrkError if it is not one."""
    rps = _RPS.search(text)
    total = _TOTAL.search(text)
    pct = {m.group(1): float(m.group(2)) * _UNITS_MS[m.group(3)]
           for m in _PERCENTILE.finditer(text)}
    if rps is None or total is None or set(pct) != {"50", "99"}:
        raise WrkError(f"wrk printed no report with --latency percentiles:\n{text[-2000:]}")
    non2xx = _NON2XX.search(text)
    sock = _SOCKET.search(text)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=pct["50"],
        p99_ms=pct["99"],
        requests=int(total.group(1)),
        seconds=float(total.group(2)) * _UNITS_MS[total.group(3)] / 1000.0,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(n) for n in sock.groups()) if sock else 0,
    )


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host != "127.0.0.1":
        raise ValueError(f"url must target 127.0.0.1, not {host!r}: the load stays on this machine")


def run(url: str, *, seconds: int, connections: int, threads: int = 1) -> WrkResult:
    """Load ``url`` for ``seconds`` with keep-alive ``connections`` and return the result.

    wrk keeps its connections alive by default (HTTP/1.1), which is what the
    comparisons want: the cost measured is the handler's, not TCP set-up.
    """
    _check_loopback(url)
    if shutil.which(WRK) is None:
        raise WrkError("wrk is not installed: run 'tools/bootstrap.sh bench' as root "
                       "(it runs apt-get install wrk)")
    if seconds < 1 or connections < 1 or threads < 1 or threads > connections:
        raise ValueError(
            f"seconds ({seconds}) and connections ({connections}) must be at least 1, and "
            f"threads ({threads}) between 1 and connections"
        )
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
            "--latency", url]
    # wrk stops by itself after -d; the timeout only guards against a hung server.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if proc.returncode != 0:
        raise WrkError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return parse(proc.stdout)
