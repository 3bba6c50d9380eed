"""Publish this child's state: a JSON file and the metric files, at most once a second.

One thread per interpreter wakes every second and writes only when the state
changed since the last write, so an idle child costs nothing but the wake-up
and a busy one writes one small file a second. The file is removed, and the
child's gauges forgotten, when the child exits. Nothing here runs on the
request path: :func:`modpy_safe.ops.counters.count_request` only counts.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from .. import _apache
from .._options import STATUS_DIRECTORY, Options
from . import metrics, snapshot, state

__all__ = ["Publisher", "start", "current", "INTERVAL", "OPTION"]

log = logging.getLogger("modpy_safe.status")

INTERVAL = 1.0  # seconds between two writes of one child's state, at most one per interval
OPTION = STATUS_DIRECTORY.full_name


class Publisher:
    """This interpreter's state file and metric files in ``directory``."""

    def __init__(self, directory: Path, interpreter: str) -> None:
        self.directory = directory
        self.interpreter = interpreter
        self.me = state.identity()
        # Two interpreters of one process publish separately; '_' is kept out of the
        # tag because prometheus_client splits metric file names on it.
        self.tag = hashlib.sha1(interpreter.encode("utf-8", "replace")).hexdigest()[:8]
        self.ident = f"{self.me.pid}-{self.me.started}-{self.tag}"
        self.path = state.state_path(directory, self.me, self.tag)
        self.metrics_dir = state.metrics_directory(directory, self.me)
        self.writer = metrics.Writer(self.metrics_dir, self.ident)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._written: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._offsets: dict[tuple[str, str], float] = {}
        self._seen: dict[tuple[str, str], float] = {}

    def document(self) -> dict[str, Any]:
        """Return this interpreter's current state with its identity fields."""
        doc = snapshot.process_document(self.interpreter)
        doc.update(self.me.as_dict())
        doc["ident"] = self.ident
        return doc

    def tick(self) -> dict[str, Any]:
        """Publish the current state if it changed; return it."""
        with self._lock:
            doc = self.document()
            compared = dict(doc, generated_at=None)
            if compared != self._written:
                state.write_state(self.path, doc)
                self._written = compared
            self._push(doc)
            return doc

    def _total(self, what: str, label: str, value: float) -> float:
        # A Database replaced by a new one starts counting from 0 again: keep the
        # sum this process reports from going down (Prometheus counters never do).
        key = (what, label)
        last = self._seen.get(key, 0.0)
        if value < last:
            self._offsets[key] = self._offsets.get(key, 0.0) + last
        self._seen[key] = value
        return self._offsets.get(key, 0.0) + value

    def _push(self, doc: dict[str, Any]) -> None:
        w = self.writer
        modules = doc["modules"] if isinstance(doc["modules"], list) else []
        w.counter("requests", self._total("requests", "", doc["requests"]))
        w.counter("reload_failures", self._total("failures", "", doc["reload_failures"]))
        w.counter("reloads", self._total("reloads", "", sum(m["reloads"] for m in modules)))
        w.counter("resources_closed", self._total(
            "closed", "", sum(m["closed_for_old_versions"] for m in modules)))
        w.gauge("processes", 1)
        w.gauge("failing", sum(1 for m in modules if m["failing"]))
        per_db: dict[str, dict[str, float]] = {}
        for db in doc["databases"] if isinstance(doc["databases"], list) else []:
            sums = per_db.setdefault(str(db["name"]), {})
            for key, value in (db.get("stats") or {}).items():
                sums[key] = sums.get(key, 0) + float(value)
        for name, stats in per_db.items():
            label = (name,)
            w.counter("checkouts", self._total("checkouts", name, stats.get("requests", 0)), label)
            for what in ("waits", "timeouts", "connect_failures"):
                w.counter(what, self._total(what, name, stats.get(what, 0)), label)
            w.gauge("open", stats.get("size", 0), label)
            w.gauge("in_use", stats.get("in_use", 0), label)
            w.gauge("idle", stats.get("idle", 0), label)

    def run(self) -> None:
        """Publish every :data:`INTERVAL` seconds until :meth:`close`."""
        while not self._stop.wait(INTERVAL):
            try:
                self.tick()
            except Exception:  # a full disk must not end the thread for good
                log.exception("could not publish the state of process %d to %s",
                              self.me.pid, self.path)

    def start(self) -> None:
        """Publish now and start the thread."""
        self.tick()
        self._thread = threading.Thread(target=self.run, name="modpy_safe-status",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop publishing, remove the state file and forget this process's gauges.

        The counters are written one last time first: what this child counted
        since its last tick stays in the server's sum.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(INTERVAL * 2)
        with self._lock:
            try:
                self._push(self.document())
            except Exception:
                log.exception("could not write the last counts of process %d", self.me.pid)
            state.remove_state(self.path)
            metrics.forget(self.metrics_dir, self.ident)
            self.writer.close()


_publisher: Publisher | None = None
_problem: str | None = None  # why this interpreter does not publish
_start_lock = threading.Lock()


def start() -> Publisher | None:
    """Start publishing in this interpreter (once); return the publisher, None when it cannot."""
    if _publisher is not None or _problem is not None or not _apache.in_httpd():
        return _publisher
    with _start_lock:
        return _start_locked()


def _start_locked() -> Publisher | None:
    global _publisher, _problem
    if _publisher is not None or _problem is not None:
        return _publisher
    _apache.install_logging()  # the first request may start this before its handler logs
    config = _apache.server_config()
    try:
        chosen = Options(config.options, source="PythonOption").value(STATUS_DIRECTORY)
    except Exception as exc:
        _problem = str(exc)
        log.error("status page: %s; the page shows only the process that answers.", exc)
        return None
    directory, why = state.choose_directory(chosen or None, config.server_root,
                                            config.pidfile)
    try:
        state.ensure_directory(directory)
        publisher = Publisher(directory, config.interpreter)
        publisher.start()
    except Exception as exc:
        _problem = f"the state directory {str(directory)!r} ({why}) cannot be used: {exc}"
        log.error("status page: %s; the page shows only the process that answers. Set "
                  "'PythonOption %s' at server level to a directory httpd's user may "
                  "write.", _problem, OPTION)
        return None
    log.info("process %d publishes its state to %s (%s)", publisher.me.pid, directory, why)
    _apache.on_child_exit(publisher.close)
    _publisher = publisher
    return publisher


def current() -> tuple[Publisher | None, str | None]:
    """Return this interpreter's publisher (starting it) and the problem that stops it, if any."""
    return start(), _problem
