"""Read what the kernel says about httpd's children: resident memory and CPU time.

CPU time per request is a second view of a comparison, steadier than
throughput on a shared machine: other load slows a request down but hardly
changes how much CPU the request itself burns.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

__all__ = ["vm_rss_kb", "cpu_seconds"]

_TICK = os.sysconf("SC_CLK_TCK")


def vm_rss_kb(pid: int) -> int | None:
    """Return the resident set size of ``pid`` in kB, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmRSS:\s+(\d+)\s+kB", text, re.M)
    return int(found.group(1)) if found else None


def cpu_seconds(pids: Iterable[int]) -> float:
    """Return the user + system CPU seconds used so far by ``pids`` (all their threads)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the fields after it are fixed.
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK
