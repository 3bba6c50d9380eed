"""What one httpd child (one interpreter in it) holds, as plain JSON-ready values.

This is the document each child publishes and the status page merges: pid,
MPM facts, every file the importer has loaded, every ``Database`` with its
settings (password masked) and pool statistics, and the counters. Every
string is passed through :func:`~modpy_safe._redact.scrub` with the DSNs of
the known Databases, so no password can appear even inside an error message.
"""
from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import _apache
from .._redact import scrub
from ..db import database as _db
from ..reload import importer as _importer
from ..web import response as _response
from . import counters

__all__ = ["process_document", "server_section", "modules_section", "databases_section",
           "scrubbed", "iso", "problems_of"]


def iso(epoch: float) -> str | None:
    """Return ``epoch`` as an ISO 8601 UTC time to the second, None for 0."""
    if not epoch:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(
        timespec="seconds")


def section(build: Callable[[], Any]) -> Any:
    """Return ``build()``, or a note saying why it failed.

    One broken part must not hide the rest of the report.
    """
    try:
        return build()
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def server_section() -> dict[str, Any]:
    """Return the MPM facts of this process."""
    facts = _apache.server_facts()
    return {
        "mpm": facts.mpm, "threaded": facts.threaded, "forked": facts.forked,
        "threads_per_child": facts.threads_per_child, "max_processes": facts.max_processes,
        "max_workers": facts.max_workers,
        # What Database(mode="auto") picks in this process.
        "connection_mode": "pooled" if facts.threaded else "persistent",
    }


def modules_section() -> list[dict[str, Any]]:
    """Return one entry per file the importer has loaded (or failed to load)."""
    out = []
    for rec in _importer.records():
        error = None
        if rec.error is not None:
            error = {"file": rec.error.file, "line": rec.error.line,
                     "message": rec.error.message, "at": iso(rec.error.at),
                     "traceback": rec.error.traceback}
        out.append({
            "path": rec.path, "label": rec.label, "generation": rec.generation,
            "reloads": rec.reloads, "loaded_at": iso(rec.loaded_at),
            "children": list(rec.children), "failing": rec.failing,
            "active_requests": rec.active, "old_versions_pending": rec.pending_old,
            "closed_for_old_versions": rec.closed_for_old, "last_error": error,
        })
    return out


def _database(db: _db.Database) -> dict[str, Any]:
    doc = db.describe()
    pool = getattr(db, "_pool", None)
    # Why the last connect failed, while it is still failing ("" once one succeeded).
    doc["down"] = str(getattr(pool, "_down_reason", "") or "") or None
    return doc


def databases_section() -> list[dict[str, Any]]:
    """Return one entry per ``Database`` of this interpreter."""
    return [_database(db) for db in _db.databases()]


def process_document(interpreter: str | None) -> dict[str, Any]:
    """Return this interpreter's state (without the identity fields the publisher adds)."""
    modules = section(modules_section)
    databases = section(databases_section)
    closed = (sum(m["closed_for_old_versions"] for m in modules)
              if isinstance(modules, list) else None)
    doc = {
        "pid": os.getpid(),
        "interpreter": interpreter,
        "python": sys.version.split()[0],
        "generated_at": iso(time.time()),
        "server": section(server_section),
        "modules": modules,
        "databases": databases,
        "connections_closed_for_old_versions": closed,
        "requests": counters.requests(),
        "reload_failures": counters.reload_failures(),
    }
    global _memo
    dsns = tuple(_response.known_dsns())
    key, memo = _memo
    if key != dsns or len(memo) > _MEMO_LIMIT:
        # A new dict, not a cleared one: a thread still scrubbing with the old DSNs
        # fills the old dict, never one that a new DSN's password must be kept out of.
        memo = {}
        _memo = (dsns, memo)
    clean: dict[str, Any] = scrubbed(doc, list(dsns), memo)
    return clean


# The same strings (paths, settings, errors) come back every second: scrub each once
# for one set of DSNs (the publisher thread and the status page share it).
_memo: tuple[tuple[str, ...], dict[str, str]] = ((), {})
_MEMO_LIMIT = 4096


def scrubbed(value: Any, dsns: list[str], memo: dict[str, str] | None = None) -> Any:
    """Return ``value`` with every string scrubbed and anything else made JSON-ready.

    ``memo`` keeps strings already scrubbed with these ``dsns``.
    """
    if isinstance(value, str):
        if memo is None:
            return scrub(value, *dsns)
        found = memo.get(value)
        if found is None:
            found = memo[value] = scrub(value, *dsns)
        return found
    if isinstance(value, dict):
        return {str(k): scrubbed(v, dsns, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrubbed(v, dsns, memo) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrubbed(str(value), dsns, memo)


def _pool_max(db: dict[str, Any]) -> int:
    try:
        return int(db.get("settings", {}).get("pool_max") or 0)
    except (TypeError, ValueError):
        return 0


def problems_of(doc: dict[str, Any]) -> list[str]:
    """Return one sentence per problem in a process document (failing files, databases)."""
    found = []
    for key in ("server", "modules", "databases"):
        part = doc.get(key)
        if isinstance(part, dict) and "unavailable" in part:
            found.append(f"{key} could not be read: {part['unavailable']}")
    modules = doc.get("modules")
    for mod in modules if isinstance(modules, list) else []:
        if mod.get("failing"):
            err = mod.get("last_error") or {}
            found.append(f"{mod['path']} fails to load: {err.get('message', 'error')} "
                         f"({os.path.basename(str(err.get('file', '')))}:{err.get('line', '?')})")
    databases = doc.get("databases")
    for db in databases if isinstance(databases, list) else []:
        stats = db.get("stats") or {}
        if db.get("down"):
            found.append(f"database {db['name']} is down: {db['down']}")
        size = _pool_max(db)
        if size and stats.get("in_use", 0) >= size:
            found.append(f"database {db['name']} is exhausted: all {size} connection(s) "
                         f"in use")
        if stats.get("timeouts"):
            found.append(f"database {db['name']}: {int(stats['timeouts'])} checkout(s) "
                         f"timed out waiting for a connection")
    return found
