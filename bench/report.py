"""Turn benchmark rows into the printed table and docs/BENCHMARKS.md.

Also collects the facts a reader needs to trust or repeat the numbers: date,
CPU, MPM settings and the versions of everything on both sides.
"""
from __future__ import annotations

import datetime
import platform
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Row", "table", "environment", "write_markdown", "refresh_notes"]

CHECKOUT = Path(__file__).resolve().parent.parent
NOTES = Path(__file__).resolve().parent / "notes.md"


@dataclass
class Row:
    """One line of the results table; every cell is already text."""

    num: str
    comparison: str
    mpm: str
    a: str = ""
    b: str = ""
    ratio: str = ""
    spread: str = ""
    target: str = ""
    verdict: str = ""

    @classmethod
    def skipped(cls, num: str, comparison: str, mpm: str, target: str, reason: str) -> "Row":
        """A row whose modpy_safe part (or a baseline) could not be measured."""
        return cls(num, comparison, mpm, target=target, verdict=f"not measured: {reason}")


HEADER = ("#", "comparison (A vs B)", "MPM", "A", "B", "A/B", "spread", "target", "verdict")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Iterable[Row]) -> str:
    """Return the rows as a Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (r.num, r.comparison, r.mpm, r.a, r.b, r.ratio, r.spread, r.target, r.verdict)
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def _command(argv: Sequence[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (proc.stdout or proc.stderr).strip()


def _dpkg(package: str) -> str:
    return _command(["dpkg-query", "-W", "-f=${Version}", package]) or "not installed"


def _py_version(module: str) -> str:
    code = f"import {module} as m; print(getattr(m, '__version__', '?'))"
    return _command(["/usr/bin/python3", "-c", code]).splitlines()[-1] if module else ""


def _venv_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo and the number of CPUs."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    names = re.findall(r"^model name\s*:\s*(.+)$", text, re.M)
    return f"{names[0].strip() if names else 'unknown'} × {len(names) or '?'} CPUs"


def environment(pg_bindir: Path | None) -> dict[str, str]:
    """Return the facts printed above the table, in order."""
    apache = _command(["/usr/sbin/apache2", "-v"])
    found = re.search(r"Apache/(\S+)", apache)
    pg = _command([str(pg_bindir / "postgres"), "--version"]) if pg_bindir else "not found"
    head = _command(["git", "-C", str(CHECKOUT), "rev-parse", "--short", "HEAD"])
    dirty = _command(["git", "-C", str(CHECKOUT), "status", "--porcelain", "--", "modpy_safe"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": cpu_model(),
        "kernel": platform.release(),
        "Apache": found.group(1) if found else apache,
        "mod_python": f"{_dpkg('libapache2-mod-python')} (Debian libapache2-mod-python)",
        "Python": _command(["/usr/bin/python3", "-c", "import sys; print(sys.version.split()[0])"]),
        "PostgreSQL": pg.replace("postgres (PostgreSQL) ", ""),
        "psycopg2": _py_version("psycopg2").split()[0],
        "row 7 pools": (f"DBUtils {_venv_version('DBUtils')}, psycopg {_venv_version('psycopg')}, "
                        f"psycopg-pool {_venv_version('psycopg-pool')}"),
        "wrk": _dpkg("wrk"),
        "modpy_safe": f"{head}" + (" + uncommitted changes in modpy_safe/" if dirty else ""),
    }


def write_markdown(
    path: Path,
    *,
    env: dict[str, str],
    mpm_settings: Sequence[str],
    method: str,
    rows: Sequence[Row],
    summary: Sequence[str],
    elapsed: float,
    quick: bool,
) -> None:
    """Write docs/BENCHMARKS.md: facts, method, table, verdicts, hand-written notes."""
    facts = "\n".join(f"* **{k}**: {v}" for k, v in env.items())
    settings = "\n".join(f"* {s}" for s in mpm_settings)
    verdicts = "\n".join(f"* {s}" for s in summary)
    notes = NOTES.read_text().strip() if NOTES.exists() else ""
    kind = ("`make bench QUICK=1` (short run: numbers are indicative only)" if quick
            else "`make bench`")
    text = f"""# Benchmarks

Written by {kind} in {elapsed / 60:.1f} minutes. Do not edit by hand: run
`make bench` again (`make bench QUICK=1` for a two-minute look); the notes at
the end come from `bench/notes.md`.

## Machine and versions
{facts}

## MPM settings (the same for A and B of every row)
{settings}

## Method
{method}

## Results
{table(rows)}

## Targets
{verdicts}
"""
    if notes:
        text += f"\n{notes}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def refresh_notes(path: Path) -> None:
    """Replace the notes at the end of an existing report with bench/notes.md as it is now.

    The notes interpret the numbers; after a profiling session they can be
    brought up to date without measuring everything again.
    """
    text = path.read_text()
    cut = text.find("\n## Notes")
    body = text if cut < 0 else text[:cut + 1]
    notes = NOTES.read_text().strip() if NOTES.exists() else ""
    path.write_text(body.rstrip("\n") + "\n" + (f"\n{notes}\n" if notes else ""))
