"""``make bench`` machinery, run for a moment on one row: it must produce a row with numbers.

Only the shape of the output is checked, never a timing: benchmarks are not tests.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.httpd

CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed ('make bench' installs it)")
def test_one_row_produces_numbers(tmp_path, capsys):
    """Row 1 under event, 1-second rounds: the table row has A, B and a ratio."""
    sys.path.insert(0, str(CHECKOUT))
    try:
        from bench import run
    finally:
        sys.path.remove(str(CHECKOUT))
    out = tmp_path / "BENCHMARKS.md"

    assert run.main(["--quick", "--rows", "1", "--mpm", "event", "--out", str(out)]) == 0

    printed = capsys.readouterr().out
    rows = [line for line in out.read_text().splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 1, printed
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    a, b, ratio = cells[3], cells[4], cells[5]
    numbers = r"[\d,]+ req/s, p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ µs CPU/req"
    assert re.search(numbers, a), rows[0]
    assert re.search(numbers, b), rows[0]
    assert re.fullmatch(r"\d+\.\d\d \(CPU/req B÷A \d+\.\d\d\)", ratio), rows[0]
    assert "event" in cells[2]
