"""Rows 8 and 9: reloading a handler file under load, and what reloads cost in memory.

Row 8 alternates rounds without rewrites (B) and rounds where the file is
rewritten every 0.5 s (A) while wrk keeps 8 connections busy, and samples the
server's connections of that handler throughout. Row 9 reads each child's
VmRSS after a warm-up, after 20k requests and after 200 reloads.

Rewrites replace the file atomically (write a temporary file, rename it), as
editors and deploy tools do, so a request never reads half a file.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modpy_safe.testing import Httpd, PostgresServer

from . import site, wrk
from .compare import Comparison, alternate
from .procstat import vm_rss_kb

__all__ = ["Rewriter", "ReloadRun", "run_reload_rounds", "MemoryRun", "run_memory"]

REWRITE_EVERY = 0.5  # seconds, from the issue
SAMPLE_EVERY = 1.0  # seconds between connection counts


class Rewriter:
    """Rewrite one endpoint's file with a new version number, atomically."""

    def __init__(self, server: Httpd, endpoint: site.Endpoint, *, dsn: str, threads: int) -> None:
        self.server = server
        self.endpoint = endpoint
        self.dsn = dsn
        self.threads = threads
        self.version = 0
        self.path = server.path(f"{endpoint.name}/{endpoint.filename}")

    def rewrite(self) -> int:
        """Write the next version and return its number."""
        self.version += 1
        text = site.render(self.endpoint, dsn=self.dsn, threads=self.threads, version=self.version)
        before = self.path.stat().st_mtime_ns
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        # A coarse clock must not give the new file the old mtime.
        if tmp.stat().st_mtime_ns <= before:
            os.utime(tmp, ns=(before + 1_000_000, before + 1_000_000))
        os.replace(tmp, self.path)
        return self.version


@dataclass
class ReloadRun:
    """One wrk run of row 8, with or without rewrites, and the connections seen during it."""

    result: wrk.WrkResult
    rewrites: int
    connections: list[int] = field(default_factory=list)


def _background(
    seconds: float,
    *,
    rewrite: Callable[[], int] | None,
    count: Callable[[], int] | None,
    samples: list[int],
    stop: threading.Event,
    done: list[int],
) -> None:
    """Rewrite every 0.5 s (when asked) and count connections every second, for ``seconds``."""
    deadline = time.monotonic() + seconds
    next_sample = time.monotonic()
    # Bounded twice: by the deadline and by a count that the deadline implies.
    for _ in range(int(seconds / REWRITE_EVERY) + 2):
        if stop.wait(REWRITE_EVERY) or time.monotonic() >= deadline:
            break
        if rewrite is not None:
            rewrite()
            done[0] += 1
        if count is not None and time.monotonic() >= next_sample:
            samples.append(count())
            next_sample += SAMPLE_EVERY


def _one_run(
    url: str, seconds: int, connections: int, *,
    rewriter: Rewriter | None, count: Callable[[], int] | None,
) -> ReloadRun:
    samples: list[int] = []
    done = [0]
    stop = threading.Event()
    worker = threading.Thread(
        target=_background, name="bench-rewriter", daemon=True,
        kwargs=dict(seconds=seconds, rewrite=rewriter.rewrite if rewriter else None,
                    count=count, samples=samples, stop=stop, done=done),
    )
    worker.start()
    try:
        result = wrk.run(url, seconds=seconds, connections=connections)
    finally:
        stop.set()
        worker.join(timeout=10)
    if count is not None:
        samples.append(count())
    return ReloadRun(result, done[0], samples)


def run_reload_rounds(
    server: Httpd,
    postgres: PostgresServer | None,
    setup: site.MpmSetup,
    *,
    seconds: int,
    rounds: int,
) -> tuple[Comparison[ReloadRun], Rewriter]:
    """Alternate rounds with rewrites (A) and without (B); return them and the rewriter."""
    ep = site.ENDPOINTS["reload_safe"]
    app = site.app_name(ep.name, setup.mpm)
    dsn = postgres.dsn_for(app) if postgres else "postgres-not-running"
    rewriter = Rewriter(server, ep, dsn=dsn, threads=setup.threads)
    count = (lambda: postgres.count_connections(app)) if postgres else None
    url = server.url(ep.path)

    def a() -> ReloadRun:
        return _one_run(url, seconds, setup.connections, rewriter=rewriter, count=count)

    def b() -> ReloadRun:
        return _one_run(url, seconds, setup.connections, rewriter=None, count=count)

    return alternate(a, b, rounds=rounds, key=lambda r: r.result.p99_ms), rewriter


@dataclass
class MemoryRun:
    """Row 9: VmRSS (kB) of each child at three moments, and what was done in between."""

    warm: dict[int, int]
    after_requests: dict[int, int]
    after_reloads: dict[int, int]
    requests: int
    reloads: int
    reloads_seen_by_all: int
    notes: list[str] = field(default_factory=list)

    def growth_kb(self) -> int:
        """Largest growth of any child over its warm-up RSS, at either later moment."""
        worst = 0
        for pid, base in self.warm.items():
            for later in (self.after_requests, self.after_reloads):
                if pid in later:
                    worst = max(worst, later[pid] - base)
        return worst


def _rss(server: Httpd) -> dict[int, int]:
    out = {}
    for pid in server.child_pids():
        kb = vm_rss_kb(pid)
        if kb is not None:
            out[pid] = kb
    return out


def run_memory(
    server: Httpd,
    postgres: PostgresServer | None,
    setup: site.MpmSetup,
    *,
    requests: int,
    reloads: int,
    warm_seconds: int,
    deadline: float,
) -> MemoryRun:
    """Measure RSS after warm-up, after ``requests`` requests and after ``reloads`` reloads.

    A reload counts once every child has answered with the new version; each
    one is given a bounded number of requests, and the whole step stops at
    ``deadline`` (time.monotonic()) so the run stays inside its budget.
    """
    ep = site.ENDPOINTS["memory_safe"]
    app = site.app_name(ep.name, setup.mpm)
    dsn = postgres.dsn_for(app) if postgres else "postgres-not-running"
    url = server.url(ep.path)
    wrk.run(url, seconds=warm_seconds, connections=setup.connections)
    warm = _rss(server)
    notes: list[str] = []

    done = 0
    # Bounded: each chunk is a few seconds, and there are at most 30 chunks.
    for _ in range(30):
        if done >= requests or time.monotonic() >= deadline:
            break
        done += wrk.run(url, seconds=2, connections=setup.connections).requests
    after_requests = _rss(server)

    rewriter = Rewriter(server, ep, dsn=dsn, threads=setup.threads)
    children = set(warm)
    seen_by_all = 0
    for _ in range(reloads):
        if time.monotonic() >= deadline:
            notes.append(f"stopped after {rewriter.version} reloads: time budget")
            break
        version = rewriter.rewrite()
        answered: set[int] = set()
        for _ in range(200):
            status, text = site.get(server, ep.path)
            words = text.split()
            if status == 200 and len(words) >= 4 and words[1] == str(version):
                answered.add(int(words[3]))
                if answered >= children:
                    seen_by_all += 1
                    break
    after_reloads = _rss(server)
    if set(after_reloads) != children:
        notes.append("the set of children changed during the run (a child was replaced)")
    return MemoryRun(warm, after_requests, after_reloads, done, rewriter.version, seen_by_all,
                     notes)
