"""Prometheus metrics of the whole server, on prometheus_client's multiprocess mode.

Each child writes its values into its own files in the server run's metrics
directory (the files prometheus_client's multiprocess mode uses:
``counter_<id>.db``, ``gauge_livesum_<id>.db``), and the status page merges all
of them with prometheus_client's own ``MultiProcessCollector`` and renders the
text format with ``generate_latest``.

prometheus_client picks multiprocess mode from ``PROMETHEUS_MULTIPROC_DIR`` when
it is first imported, and reads the directory from the environment again for
every value it creates: one process-wide setting, unknown until the first
request names the server. So the values are not prometheus_client metric
objects: :class:`Writer` writes the same files through ``MmapedDict`` into a
directory given as an argument, and the collector is given the path too. The
environment is never touched, so an application's own prometheus_client use
is unaffected.

Counters keep growing across the children's lives: a child that exits leaves
its counter file, which the merge keeps adding. Gauges are ``livesum``: a
child's gauge file is removed when it exits (:func:`forget`), or by the next
reader when the child died without cleaning up.
"""
from __future__ import annotations

import glob
import importlib
import inspect
import os
from pathlib import Path
from typing import Any, NamedTuple

from . import state

__all__ = ["CONTENT_TYPE", "COUNTERS", "GAUGES", "Writer", "exposition", "forget", "prune"]

# Parts of prometheus_client that carry no type annotations: held as Any.
_client: Any
_mmap: Any
_multi: Any
try:
    _client = importlib.import_module("prometheus_client")
    _mmap = importlib.import_module("prometheus_client.mmap_dict")
    _multi = importlib.import_module("prometheus_client.multiprocess")
except ImportError:  # pragma: no cover - python3-prometheus-client is a dependency
    _client = _mmap = _multi = None

#: The content type of the text that :func:`exposition` returns.
CONTENT_TYPE: str = (_client.CONTENT_TYPE_LATEST if _client is not None
                     else "text/plain; version=0.0.4; charset=utf-8")


class Metric(NamedTuple):
    """One metric family: its name, help text and label names."""

    name: str
    help: str
    labels: tuple[str, ...] = ()


_DB = ("database",)

#: Counters, as (family, help, labels); the sample is ``<family>_total``.
COUNTERS = {
    "requests": Metric("modpy_safe_requests", "Requests served by modpy_safe handlers."),
    "reloads": Metric("modpy_safe_reloads", "Handler files loaded again after an edit."),
    "reload_failures": Metric("modpy_safe_reload_failures",
                              "Versions of handler files that failed to load."),
    "resources_closed": Metric("modpy_safe_resources_closed",
                               "Connections and resources closed for old module versions."),
    "checkouts": Metric("modpy_safe_pool_checkouts", "Connections handed out.", _DB),
    "waits": Metric("modpy_safe_pool_waits", "Checkouts that had to wait for a connection.", _DB),
    "timeouts": Metric("modpy_safe_pool_timeouts",
                       "Checkouts that gave up waiting (answered 503).", _DB),
    "connect_failures": Metric("modpy_safe_pool_connect_failures",
                               "Attempts to open a connection that failed.", _DB),
}

#: Gauges summed over the live children.
GAUGES = {
    "processes": Metric("modpy_safe_processes",
                        "httpd children (and interpreters) publishing their state."),
    "failing": Metric("modpy_safe_files_failing", "Handler files whose last load failed."),
    "open": Metric("modpy_safe_pool_connections_open", "Connections open.", _DB),
    "in_use": Metric("modpy_safe_pool_connections_in_use", "Connections checked out.", _DB),
    "idle": Metric("modpy_safe_pool_connections_idle", "Connections open and free.", _DB),
}


def _writer_of(d: Any) -> Any:
    # prometheus_client 0.16 (Debian 12) writes (key, value); later ones add a timestamp.
    if "timestamp" in inspect.signature(d.write_value).parameters:
        return lambda key, value: d.write_value(key, value, 0.0)
    return d.write_value


class Writer:
    """The metric files of one process (``ident`` is unique among live processes)."""

    def __init__(self, directory: Path, ident: str) -> None:
        if _mmap is None:
            raise RuntimeError("prometheus_client is not installed: apt-get install "
                               "python3-prometheus-client")
        self.directory = directory
        self.ident = ident
        self._counters = _mmap.MmapedDict(str(directory / f"counter_{ident}.db"))
        self._gauges = _mmap.MmapedDict(str(directory / f"gauge_livesum_{ident}.db"))
        self._write_counter = _writer_of(self._counters)
        self._write_gauge = _writer_of(self._gauges)
        # A file left by an earlier process with the same pid is continued, not reset:
        # the sum over all files is the server's count, and it must not go down.
        self._base: dict[str, float] = {}
        self._last: dict[str, float] = {}

    @staticmethod
    def _key(metric: Metric, suffix: str, labels: tuple[str, ...]) -> str:
        return str(_mmap.mmap_key(metric.name, metric.name + suffix, list(metric.labels),
                            list(labels), metric.help))

    def counter(self, what: str, total: float, labels: tuple[str, ...] = ()) -> None:
        """Record that this process's count of ``what`` is now ``total`` (never decreasing)."""
        key = self._key(COUNTERS[what], "_total", labels)
        if key not in self._base:
            self._base[key] = self._counters.read_value(key)
        if self._last.get(key) != total:
            self._last[key] = total
            self._write_counter(key, self._base[key] + total)

    def gauge(self, what: str, value: float, labels: tuple[str, ...] = ()) -> None:
        """Set this process's value of gauge ``what``."""
        key = self._key(GAUGES[what], "", labels)
        if self._last.get(key) != value:
            self._last[key] = value
            self._write_gauge(key, value)

    def close(self) -> None:
        """Close the files (they stay on disk)."""
        self._counters.close()
        self._gauges.close()


def forget(directory: Path, ident: str) -> None:
    """Remove the gauges of a process that ended (its counters stay in the sum)."""
    if _multi is not None:
        _multi.mark_process_dead(ident, str(directory))


def prune(directory: Path) -> list[str]:
    """Forget the gauges of every process that is gone; return the idents forgotten.

    An ident is ``<pid>-<start time>-<tag>`` (see :mod:`modpy_safe.ops.publish`),
    so a pid reused by a new process is not mistaken for the old one.
    """
    gone = []
    for path in glob.glob(os.path.join(str(directory), "gauge_live*_*.db")):
        ident = os.path.basename(path).split("_", 2)[2][:-3]
        try:
            pid, started = (int(x) for x in ident.split("-")[:2])
        except ValueError:
            continue
        if not state.alive(pid, started):
            forget(directory, ident)
            gone.append(ident)
    return gone


def exposition(directory: Path) -> bytes:
    """Return the Prometheus text format of every process's metrics in ``directory``."""
    if _client is None:
        raise RuntimeError("prometheus_client is not installed: apt-get install "
                           "python3-prometheus-client")
    registry = _client.CollectorRegistry(auto_describe=False)
    _multi.MultiProcessCollector(registry, path=str(directory))
    return bytes(_client.generate_latest(registry))
