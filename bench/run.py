"""``make bench``: modpy_safe side by side with plain mod_python and the common pools.

One private PostgreSQL serves the whole run; one httpd per MPM serves both
sides of every comparison (see ``bench/site.py``), so a comparison alternates
two URLs of the same server. Row 7 runs in this process. The table is printed
and written to docs/BENCHMARKS.md; a row whose modpy_safe part is not
importable (or does not answer) says "not measured: <reason>" instead.

    .venv/bin/python bench/run.py [--quick] [--rows 1,2,7] [--mpm event] [--out PATH]
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Run as a script (bench/run.py): make the checkout importable as the 'bench' package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import pool_micro, procstat, reload, report, site, wrk
from bench.compare import Comparison, alternate
from modpy_safe.testing import (
    Httpd,
    PostgresServer,
    SetupError,
    make_tempdir,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


@dataclass(frozen=True)
class Timing:
    """How long each kind of measurement runs; FULL must finish in 10 min, QUICK in 2.

    Many short rounds rather than a few long ones: a burst of other load on the
    machine then spoils one or two rounds of a side, which the median ignores.
    """

    seconds: int  # one wrk run of one side
    rounds: int  # A/B alternations per comparison
    warmup: int  # wrk seconds per side before the first round
    reload_seconds: int  # one round of row 8
    reload_rounds: int
    memory_requests: int
    memory_reloads: int
    pool_iterations: int
    pool_rounds: int
    prefork_rows: tuple[int, ...]  # the HTTP rows also run under prefork
    budget: float  # seconds; rows that would start later are not measured


FULL = Timing(seconds=1, rounds=12, warmup=1, reload_seconds=7, reload_rounds=3,
              memory_requests=20_000, memory_reloads=200, pool_iterations=200_000,
              pool_rounds=5, prefork_rows=(1, 2, 3, 4, 6), budget=540)
QUICK = Timing(seconds=1, rounds=3, warmup=1, reload_seconds=2, reload_rounds=3,
               memory_requests=2_000, memory_reloads=20, pool_iterations=30_000,
               pool_rounds=3, prefork_rows=(1,), budget=100)


# --------------------------------------------------------------- parts present


def _import_problem(module: str, attr: str | None = None) -> str | None:
    """Return why ``module[.attr]`` cannot be had in this checkout, or None."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:
        return f"{module} is not importable yet ({type(exc).__name__}: {exc})"
    if attr is not None and not hasattr(mod, attr):
        return f"{module}.{attr} does not exist yet"
    return None


PARTS: dict[str, Callable[[], str | None]] = {
    "dispatch": lambda: _import_problem("modpy_safe.dispatch"),
    "Handler": lambda: _import_problem("modpy_safe", "Handler"),
    "publisher": lambda: _import_problem("modpy_safe.publisher"),
    "Database": lambda: _import_problem("modpy_safe", "Database"),
    "pool": lambda: _import_problem("modpy_safe.db.pool", "Pool"),
}


def missing(parts: Sequence[str]) -> str | None:
    """Return the first reason one of ``parts`` is missing, or None when all are there."""
    for part in parts:
        problem = PARTS[part]()
        if problem:
            return problem
    return None


# ------------------------------------------------------------------ HTTP rows


@dataclass(frozen=True)
class HttpRow:
    """A comparison of two endpoints of the same httpd, by throughput."""

    num: int
    title: str
    a: str
    b: str
    target: float | None  # minimum A/B of requests per second; None: report only
    needs: tuple[str, ...]
    mpms: tuple[str, ...] = ("prefork", "event")
    expect: str = ""  # what to say instead of a target
    query: str = ""  # appended to both URLs
    label: str = ""  # the row's number as shown, when it differs from num

    @property
    def shown(self) -> str:
        """The row's number in the table."""
        return self.label or str(self.num)

    @property
    def target_text(self) -> str:
        return f"≥ {self.target:g}" if self.target is not None else self.expect


HTTP_ROWS = (
    HttpRow(1, "dispatch → function vs the same function under plain PythonHandler",
            "fn_safe", "fn_plain", 0.95, ("dispatch",)),
    HttpRow(2, "dispatch → Handler subclass vs plain PythonHandler function",
            "cls_safe", "fn_plain", 0.90, ("dispatch", "Handler")),
    HttpRow(3, "modpy_safe.publisher vs mod_python.publisher, same page",
            "pub_safe", "pub_plain", 1.5, ("publisher",)),
    HttpRow(3, "the same, URL with a query string of 3 fields (a submitted form)",
            "pub_safe", "pub_plain", 1.5, ("publisher",), mpms=("prefork",),
            query="?name=value&page=2&q=hello+world", label="3q"),
    HttpRow(4, "SELECT 1 via Database (auto) vs module-global psycopg2 connection",
            "db_auto", "db_global", 0.95, ("dispatch", "Database")),
    HttpRow(5, "SELECT 1 via Database (pooled) vs psycopg2 ThreadedConnectionPool",
            "db_pooled", "db_tpool", 1.0, ("dispatch", "Database"), mpms=("event",)),
    HttpRow(6, "SELECT 1 via Database (auto) vs connect per request (TCP, scram)",
            "db_auto", "db_connect", None, ("dispatch", "Database"),
            expect="report (expect ≥ 20)"),
)


@dataclass(frozen=True)
class Measured:
    """One wrk run of one side and the CPU httpd burnt per request meanwhile."""

    result: wrk.WrkResult
    cpu_us: float  # user + system CPU of all httpd processes, per request


def measure(server: Httpd, url: str, seconds: int, connections: int) -> Measured:
    """Run wrk against ``url`` and read the CPU time httpd used for it."""
    pids = [p for p in (server.main_pid(), *server.child_pids()) if p is not None]
    before = procstat.cpu_seconds(pids)
    result = wrk.run(url, seconds=seconds, connections=connections)
    used = procstat.cpu_seconds(pids) - before
    return Measured(result, used / max(result.requests, 1) * 1e6)


def _fmt_wrk(c: Comparison[Measured], side: str) -> str:
    rps = c.median(side)
    p50 = c.median(side, lambda m: m.result.p50_ms)
    p99 = c.median(side, lambda m: m.result.p99_ms)
    cpu = c.median(side, lambda m: m.cpu_us)
    return f"{rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms, {cpu:.0f} µs CPU/req"


def _failures(c: Comparison[Measured]) -> tuple[str, bool]:
    """Describe each side's failed requests; invalid when any side failed more than 0.1 %.

    A few socket errors in a long run are the kernel or wrk, not the handler;
    but a side answering errors must not pass for a fast one.
    """
    notes = []
    invalid = False
    for side, runs in (("A", c.a), ("B", c.b)):
        non2xx = sum(m.result.non2xx for m in runs)
        sock = sum(m.result.socket_errors for m in runs)
        total = sum(m.result.requests for m in runs) or 1
        if non2xx + sock:
            notes.append(f"{side}: {non2xx} non-2xx, {sock} socket errors of {total:,}")
        invalid = invalid or (non2xx + sock) / total > 0.001
    return "; ".join(notes), invalid


def _last_error(server: Httpd, offset: int) -> str:
    """Return '; error log: <last error line>' for lines logged after ``offset``, or ''."""
    lines = [line for line in server.error_log()[offset:].splitlines()
             if ":error]" in line or "Error" in line]
    return f"; error log: {lines[-1].split('] ', 3)[-1][:200]}" if lines else ""


def _probe(server: Httpd, endpoint: str) -> str | None:
    """Return why ``endpoint`` does not answer 200, or None when it does."""
    ep = site.ENDPOINTS[endpoint]
    status, text = site.get(server, ep.path)
    if status == 200:
        return None
    log = [line for line in server.error_log().splitlines()
           if "rror" in line or "Traceback" in line]
    last = log[-1].split("] ")[-1][:200] if log else text.strip()[:200]
    return f"{ep.path} answered {status or 'nothing'} ({last})"


def http_row(row: HttpRow, server: Httpd, setup: site.MpmSetup, t: Timing,
             db_ok: str | None) -> report.Row:
    """Measure one HTTP comparison under ``setup.mpm``."""
    target = row.target_text
    reason = missing(row.needs)
    if reason is None and row.num >= 4 and db_ok:
        reason = db_ok
    if reason is None:
        reason = _probe(server, row.a) or _probe(server, row.b)
    if reason:
        return report.Row.skipped(row.shown, row.title, setup.mpm, target, reason)
    a_url = server.url(site.ENDPOINTS[row.a].path + row.query)
    b_url = server.url(site.ENDPOINTS[row.b].path + row.query)

    def run(url: str, seconds: int) -> Measured:
        return measure(server, url, seconds, setup.connections)

    log_start = len(server.error_log())
    run(a_url, t.warmup)
    run(b_url, t.warmup)
    c = alternate(lambda: run(a_url, t.seconds), lambda: run(b_url, t.seconds),
                  rounds=t.rounds, key=lambda m: m.result.rps)
    ratio = c.ratio
    cpu_ratio = c.median("b", lambda m: m.cpu_us) / max(c.median("a", lambda m: m.cpu_us), 1e-9)
    if row.target is None:
        verdict = "reported"
    else:
        verdict = "met" if ratio >= row.target else f"MISSED ({ratio:.2f} < {row.target:g})"
        # On a busy machine throughput and CPU per request can disagree; say so.
        if (ratio >= row.target) != (cpu_ratio >= row.target):
            verdict += (f"; by CPU/req {'met' if cpu_ratio >= row.target else 'missed'} "
                        f"({cpu_ratio:.2f})")
    failures, invalid = _failures(c)
    if failures:
        failures += _last_error(server, log_start)
    if invalid:
        verdict = f"invalid: {failures}"
    elif failures:
        verdict += f" ({failures})"
    a_text = _fmt_wrk(c, "a")
    # The Database handlers say which mode 'auto' chose; the row should show it.
    words = site.get(server, site.ENDPOINTS[row.a].path)[1].split()
    if "mode" in words[:-1]:
        a_text = f"mode {words[words.index('mode') + 1]}: {a_text}"
    return report.Row(row.shown, row.title, setup.mpm, a_text, _fmt_wrk(c, "b"),
                      f"{ratio:.2f} (CPU/req B÷A {cpu_ratio:.2f})", c.spread_text(), target,
                      verdict)


# --------------------------------------------------------------------- row 7


def pool_rows(dsn: str | None, t: Timing) -> list[report.Row]:
    """Row 7: checkout + return in process; 7a–c are the issue's, 7d–e show what Database adds."""
    target = "A ≤ 3 µs (7a–c); ratios reported"
    reason = missing(("pool",))
    if reason:
        return [report.Row.skipped("7", "checkout + return in process vs common pools", "-",
                                   target, reason)]
    timings = pool_micro.measure(dsn, iterations=t.pool_iterations, rounds=t.pool_rounds)
    psycopg2_pool = pool_micro.BASELINES[0]
    pairs = [(f"7{letter}", pool_micro.STAND_IN, b)
             for letter, b in zip("abc", pool_micro.BASELINES, strict=False)]
    pairs += [("7d", pool_micro.HOOKED, psycopg2_pool), ("7e", pool_micro.DATABASE, psycopg2_pool)]
    rows = []
    for num, a_label, b_label in pairs:
        a, b = timings[a_label], timings[b_label]
        title = f"checkout + return in process: {a_label} vs {b_label}"
        if num in ("7a", "7b", "7c"):
            verdict = "met" if a.rounds_us and a.median_us <= 3.0 else "MISSED"
            if a.rounds_us and verdict != "met":
                verdict += f" ({a.median_us:.2f} µs > 3 µs)"
        else:
            verdict = "reported"
            target = "report: what a request pays beyond the bare pool"
        if a.error or b.error:
            side, err = ("A", a.error) if a.error else ("B", b.error)
            rows.append(report.Row.skipped(num, title, "-", target, f"{side}: {err}"))
            continue
        ratio = a.median_us / b.median_us
        spread = (f"A {min(a.rounds_us):.2f}–{max(a.rounds_us):.2f}, "
                  f"B {min(b.rounds_us):.2f}–{max(b.rounds_us):.2f} µs")
        rows.append(report.Row(num, title, "-", f"{a.median_us:.2f} µs", f"{b.median_us:.2f} µs",
                               f"{ratio:.2f} (time; < 1 is faster)", spread, target, verdict))
    return rows


# ----------------------------------------------------------------- rows 8, 9


def reload_row(server: Httpd, postgres: PostgresServer | None, setup: site.MpmSetup,
               t: Timing, db_ok: str | None) -> report.Row:
    """Row 8: reload under load."""
    title = (f"reload under load: file rewritten every 0.5 s, {setup.connections} clients "
             f"vs no rewrites")
    target = "0 failed, connections flat, p99 A/B ≤ 2"
    reason = missing(("dispatch", "Database")) or db_ok or _probe(server, "reload_safe")
    if reason:
        return report.Row.skipped("8", title, setup.mpm, target, reason)
    url = server.url(site.ENDPOINTS["reload_safe"].path)
    wrk.run(url, seconds=t.warmup, connections=setup.connections)
    c, rewriter = reload.run_reload_rounds(server, postgres, setup, seconds=t.reload_seconds,
                                           rounds=t.reload_rounds)
    failed_a = sum(r.result.failed for r in c.a)
    failed_b = sum(r.result.failed for r in c.b)
    conns_a = [n for r in c.a for n in r.connections]
    conns_b = [n for r in c.b for n in r.connections]
    rewrites = sum(r.rewrites for r in c.a)
    status, text = site.get(server, site.ENDPOINTS["reload_safe"].path)
    words = text.split()
    served = words[1] if status == 200 and len(words) > 1 else f"status {status}"
    p99_ratio = c.ratio
    flat = bool(conns_a) and bool(conns_b) and max(conns_a) <= max(conns_b)
    bound = setup.processes * setup.threads
    problems = []
    if failed_a:
        problems.append(f"{failed_a} failed requests")
    if not flat:
        problems.append("connections grew")
    if max(conns_a, default=0) > bound:
        problems.append(f"more than {bound} connections")
    if p99_ratio > 2:
        problems.append(f"p99 ratio {p99_ratio:.2f} > 2")
    if served != str(rewriter.version):
        problems.append(f"last version {rewriter.version} not served (got {served})")
    verdict = "met" if not problems else "MISSED: " + ", ".join(problems)

    def rng(xs: list[int]) -> str:
        return f"{min(xs)}–{max(xs)}" if xs else "-"

    a_text = (f"{rewrites} rewrites in {t.reload_rounds}×{t.reload_seconds} s, "
              f"{failed_a} failed, connections {rng(conns_a)}, "
              f"p99 {c.median('a'):.2f} ms, {c.median('a', lambda r: r.result.rps):,.0f} req/s")
    b_text = (f"{failed_b} failed, connections {rng(conns_b)}, p99 {c.median('b'):.2f} ms, "
              f"{c.median('b', lambda r: r.result.rps):,.0f} req/s")
    return report.Row("8", title, setup.mpm, a_text, b_text, f"p99 {p99_ratio:.2f}",
                      c.spread_text(), target, verdict)


def memory_row(server: Httpd, postgres: PostgresServer | None, setup: site.MpmSetup,
               t: Timing, db_ok: str | None, deadline: float) -> report.Row:
    """Row 9: RSS growth of each child."""
    title = (f"RSS of each child after {t.memory_requests:,} requests and after "
             f"{t.memory_reloads} reloads vs after warm-up")
    target = "growth ≤ 2 MB"
    reason = missing(("dispatch", "Database")) or db_ok or _probe(server, "memory_safe")
    if reason:
        return report.Row.skipped("9", title, setup.mpm, target, reason)
    m = reload.run_memory(server, postgres, setup, requests=t.memory_requests,
                          reloads=t.memory_reloads, warm_seconds=t.warmup, deadline=deadline)

    def mb(kb: int) -> str:
        return f"{kb / 1024:.1f}"

    def deltas(later: dict[int, int]) -> str:
        return ", ".join(f"{(later[p] - m.warm[p]) / 1024:+.1f}" for p in m.warm if p in later)

    a_text = (f"after {m.requests:,} requests: {deltas(m.after_requests)} MB; after "
              f"{m.reloads} reloads ({m.reloads_seen_by_all} seen by every child): "
              f"{deltas(m.after_reloads)} MB")
    b_text = "RSS after warm-up: " + ", ".join(f"{mb(v)}" for v in m.warm.values()) + " MB"
    growth = m.growth_kb() / 1024
    problems = list(m.notes)
    if growth > 2:
        problems.insert(0, f"growth {growth:.1f} MB > 2 MB")
    if m.requests < t.memory_requests:
        problems.append(f"only {m.requests:,} requests")
    if m.reloads_seen_by_all < t.memory_reloads:
        problems.append(f"only {m.reloads_seen_by_all} of {t.memory_reloads} reloads seen")
    verdict = "met" if not problems else "MISSED: " + "; ".join(problems)
    return report.Row("9", title, setup.mpm, a_text, b_text, f"max growth {growth:.1f} MB",
                      f"{len(m.warm)} children", target, verdict)


# ---------------------------------------------------------------------- main


METHOD = """\
* Load: `wrk --latency`, 1 thread, keep-alive connections, against httpd on 127.0.0.1,
  a fixed number of seconds per run.
* Each comparison starts with warm-up runs of both sides (and, before any row, every
  endpoint is requested one at a time until each child has imported it), then
  alternates A and B (the side that goes first swaps every round). The table shows
  the median of each side, the ratio of the medians and the spread: ± half the
  range of each side's rounds relative to its median, and the range of the
  per-round ratios.
* Rows 1–6 also show the CPU time httpd burnt per request (user + system of all
  its processes, from /proc, divided by the requests wrk counted) and the ratio
  of those, B÷A: the same comparison seen from the server, which other load on the
  machine disturbs much less than throughput.
* A and B of rows 1–6 and 8–9 are two directories of the *same* httpd (same build,
  MPM, children and interpreter); see `bench/site.py` and `bench/handlers/`.
* Rows 4–6: both sides run the same statements (cursor, `SELECT 1`, fetch,
  commit) over TCP with scram-sha-256 password authentication; only how the
  connection is obtained differs. A uses `modpy_safe.dispatch`; B is a plain
  `PythonHandler` module, as users write it today (row 5's pool with
  minconn = maxconn = ThreadsPerChild, see `bench/handlers/db_threaded_pool.py`).
* Row 7 runs in the benchmark process (no httpd): modpy_safe's `Pool` with a
  stand-in driver against the common pools on real idle connections (7a–c);
  7d–e show what `Database` adds on a real connection (its psycopg2 hooks; the
  whole `with db.connection():` block).
* Row 8: rounds with the handler file atomically rewritten every 0.5 s (A) alternate
  with rounds without (B), `PythonOption modpy_safe.reload.interval 0` so every
  rewrite is picked up; the handler's connections are counted in
  `pg_stat_activity` every second; failed = non-2xx answers + socket errors.
* Row 9: VmRSS from /proc/<pid>/status of each httpd child (same reload option).
* Other engineers' test suites may share the machine (see the load average above):
  absolute numbers are noisy, the side-by-side ratios are what count.
* Where the time goes: `bench/profile_httpd.py <endpoint>...` (cProfile inside
  httpd, calls and µs per request) and `bench/dispatch_micro.py --breakdown`."""


def _start_postgres(root: Path) -> tuple[PostgresServer | None, str | None]:
    try:
        server = PostgresServer(root / "pg")
        server.init()
        server.start()
        return server, None
    except (SetupError, OSError) as exc:
        return None, f"PostgreSQL did not start ({str(exc).splitlines()[0][:160]})"


def _serial_warmup(server: Httpd, setup: site.MpmSetup) -> None:
    """Request every endpoint one at a time, on new connections, until each child has seen it.

    mod_python 3.5 imports a PythonHandler module without a lock: under a
    threaded MPM, threads of a fresh child that ask for it at once can find it
    half imported and answer 500 ("contains no 'handler'"). Rounds measure the
    steady state, so each child imports everything before the load starts.
    """
    for ep in site.ENDPOINTS.values():
        for _ in range(10 * setup.processes):  # new connections spread over the children
            site.get(server, ep.path)


def run_mpm(mpm: str, root: Path, postgres: PostgresServer | None, db_ok: str | None,
            t: Timing, rows: set[str], deadline: float) -> list[report.Row]:
    """Start one httpd for ``mpm``, run every selected row on it, stop it."""
    setup = site.MPM_SETUPS[mpm]
    selected = [r for r in HTTP_ROWS if str(r.num) in rows and mpm in r.mpms
                and (mpm != "prefork" or r.num in t.prefork_rows)]
    want_reload = mpm == "event" and ("8" in rows or "9" in rows)
    if not selected and not want_reload:
        return []
    server = site.build_httpd(root / f"httpd-{mpm}", setup, postgres)
    out: list[report.Row] = []
    try:
        server.start()
    except SetupError as exc:
        reason = f"httpd did not start ({str(exc).splitlines()[0][:160]})"
        return [report.Row.skipped(r.shown, r.title, mpm, r.target_text, reason)
                for r in selected]
    try:
        _serial_warmup(server, setup)
        for r in selected:
            if time.monotonic() > deadline:
                out.append(report.Row.skipped(r.shown, r.title, mpm, r.target_text,
                                              "time budget used up"))
                continue
            print(f"-- row {r.shown} ({mpm}) ...", flush=True)
            out.append(http_row(r, server, setup, t, db_ok))
            print(report.table([out[-1]]).splitlines()[-1], flush=True)
        if mpm == "event" and "9" in rows:
            print("-- row 9 (event) ...", flush=True)
            out.append(memory_row(server, postgres, setup, t, db_ok, deadline))
        if mpm == "event" and "8" in rows:
            print("-- row 8 (event) ...", flush=True)
            out.append(reload_row(server, postgres, setup, t, db_ok))
    finally:
        server.stop()
    return out


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (< 2 minutes)")
    parser.add_argument("--rows", default="1,2,3,4,5,6,7,8,9",
                        help="comma-separated row numbers to run (default: all)")
    parser.add_argument("--mpm", action="append", choices=tuple(site.MPM_SETUPS),
                        help="run the HTTP rows under this MPM only (repeatable)")
    parser.add_argument("--seconds", type=int, help="override the wrk duration of one side")
    parser.add_argument("--out", type=Path, default=DOC,
                        help="where to write the Markdown report (default: docs/BENCHMARKS.md)")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directory")
    parser.add_argument("--refresh-notes", action="store_true",
                        help="only put the current bench/notes.md into the existing report")
    args = parser.parse_args(argv)
    if args.refresh_notes:
        report.refresh_notes(args.out)
        print(f"notes in {args.out} replaced by bench/notes.md")
        return 0
    # SIGTERM (timeout, a closed terminal) must still reach the finally blocks
    # that stop httpd and PostgreSQL, or their processes outlive the run.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    t = QUICK if args.quick else FULL
    if args.seconds:
        t = Timing(**{**t.__dict__, "seconds": args.seconds})
    rows = {r.strip() for r in args.rows.split(",") if r.strip()}
    mpms = args.mpm or ["prefork", "event"]

    started = time.monotonic()
    load_start = os.getloadavg()[0]
    deadline = started + t.budget
    root = make_tempdir("modpy_safe-bench-")
    postgres: PostgresServer | None = None
    results: list[report.Row] = []
    try:
        db_ok: str | None = "PostgreSQL was not started (no database row selected)"
        if rows & {"4", "5", "6", "7", "8", "9"}:
            postgres, db_ok = _start_postgres(root)
        if "7" in rows:
            print("-- row 7 (in process) ...", flush=True)
            results += pool_rows(postgres.dsn if postgres else None, t)
        for mpm in mpms:
            results += run_mpm(mpm, root, postgres, db_ok, t, rows, deadline)
        env = report.environment(postgres.bindir if postgres else None)
        env["load average (1 min)"] = (f"{load_start:.1f} at the start, "
                                       f"{os.getloadavg()[0]:.1f} at the end, on "
                                       f"{os.cpu_count()} CPUs")
    finally:
        if postgres is not None:
            postgres.stop("immediate")
        if args.keep:
            print(f"servers' files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    results.sort(key=lambda r: (r.num, r.mpm != "prefork"))
    summary = _summary(results)
    elapsed = time.monotonic() - started
    print()
    print(report.table(results))
    print()
    print("\n".join(summary))
    report.write_markdown(
        args.out, env=env, method=METHOD, rows=results, summary=summary, elapsed=elapsed,
        mpm_settings=[site.MPM_SETUPS[m].describe() for m in mpms], quick=args.quick,
    )
    print(f"\nwritten to {args.out} ({elapsed:.0f} s)")
    return 0


def _summary(rows: Sequence[report.Row]) -> list[str]:
    """One plain sentence per row: met, missed (and by how much), reported, not measured."""
    out = []
    for r in rows:
        name = f"row {r.num} ({r.mpm})" if r.mpm != "-" else f"row {r.num}"
        verdict = r.verdict
        if verdict.startswith("met"):
            out.append(f"{name}: met — target {r.target}, A/B {r.ratio}{verdict[3:]}.")
        elif verdict.startswith("MISSED"):
            detail = verdict[len("MISSED"):].lstrip(": ")
            out.append(f"{name}: **missed** — target {r.target}: {detail}.")
        elif verdict.startswith("invalid"):
            out.append(f"{name}: **not valid** — {verdict}.")
        elif verdict.startswith("not measured"):
            out.append(f"{name}: {verdict}.")
        else:
            out.append(f"{name}: A/B {r.ratio} ({r.target}).")
    return out


if __name__ == "__main__":
    sys.exit(main())
