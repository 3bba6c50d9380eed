"""What the rest of modpy_safe tells the operator's view: one cheap call per event.

:func:`count_request` runs on every request, so it is one C-level increment
and one flag test; everything else (writing the state file, the metric files)
happens at most once a second in :mod:`modpy_safe.ops.publish`. The counts
live in ``itertools.count`` objects because ``next()`` on one is atomic under
the GIL: threads of a worker or event child never lose an increment, and no
lock is taken.
"""
from __future__ import annotations

import itertools
import threading

__all__ = ["count_request", "count_reload_failure", "requests", "reload_failures", "tick",
           "start_publishing"]

_requests = itertools.count()
_failures = itertools.count()
# Reading a count is itself one next(): subtract the reads made so far.
_reads = {"requests": 0, "failures": 0}
_read_lock = threading.Lock()
_started = False


def count_request() -> None:
    """Count one request served by a modpy_safe handler (and start publishing in this child)."""
    next(_requests)
    if not _started:
        _start()


#: Count one request with no Python call at all: the request plans of
#: ``web/plan.py`` use it, having called :func:`start_publishing` when built.
tick = _requests.__next__


def start_publishing() -> None:
    """Start publishing this child's counts, if nothing has yet."""
    if not _started:
        _start()


def count_reload_failure() -> None:
    """Count one version of a handler file that failed to load."""
    next(_failures)


def _read(counter: itertools.count[int], name: str) -> int:
    with _read_lock:
        value = next(counter) - _reads[name]
        _reads[name] += 1
    return value


def requests() -> int:
    """Return how many requests this interpreter has counted."""
    return _read(_requests, "requests")


def reload_failures() -> int:
    """Return how many failed loads this interpreter has counted."""
    return _read(_failures, "failures")


def _start() -> None:
    global _started
    _started = True
    from . import publish  # the publisher needs the importer and Database: import late

    publish.start()
