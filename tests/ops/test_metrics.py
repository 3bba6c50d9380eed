"""Metric files of several processes merge into one Prometheus text (plain Python).

Written as the children write them, read with prometheus_client's own
collector and parser: counters add up over live and dead processes, gauges only
over live ones, and a process that reuses an ident continues its counters.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from modpy_safe.ops import metrics, state


def _samples(directory: Path) -> dict[str, float]:
    text = metrics.exposition(directory).decode()
    return {s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counters_add_up_and_gauges_follow_the_live_processes(tmp_path: Path) -> None:
    me = state.identity()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)
    live = metrics.Writer(tmp_path, f"{me.pid}-{me.started}-aaaa")
    gone = metrics.Writer(tmp_path, f"{dead}-1-bbbb")
    for writer, requests in ((live, 5), (gone, 7)):
        writer.counter("requests", requests)
        writer.counter("waits", 2, ("main",))
        writer.gauge("processes", 1)
        writer.gauge("in_use", 1, ("main",))
    found = _samples(tmp_path)
    assert found["modpy_safe_requests_total"] == 12
    assert found["modpy_safe_pool_waits_total{database=main}"] == 4
    assert found["modpy_safe_processes"] == 2
    assert found["modpy_safe_pool_connections_in_use{database=main}"] == 2

    assert metrics.prune(tmp_path) == [f"{dead}-1-bbbb"]
    found = _samples(tmp_path)
    assert found["modpy_safe_requests_total"] == 12  # a dead child's count stays in the sum
    assert found["modpy_safe_processes"] == 1

    # The same ident again (a pid reused by a process started at the same tick):
    # its counter goes on from the file, so the sum never goes down.
    again = metrics.Writer(tmp_path, f"{me.pid}-{me.started}-aaaa")
    again.counter("requests", 1)
    assert _samples(tmp_path)["modpy_safe_requests_total"] == 13
    for writer in (live, gone, again):
        writer.close()


def test_the_content_type_is_prometheus_text_0_0_4() -> None:
    from prometheus_client import CONTENT_TYPE_LATEST

    assert metrics.CONTENT_TYPE == CONTENT_TYPE_LATEST
    assert metrics.CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
