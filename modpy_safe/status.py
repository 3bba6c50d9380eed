"""``PythonHandler modpy_safe.status``: what this httpd process and interpreter hold.

The report covers the process that answered (each child has its own modules and
connections, and mod_python gives each virtual host its own interpreter): pid,
MPM and thread limits, the default connection mode, every file the importer has
loaded (generation, reloads, children, last load error), every ``Database``
(mode, settings with the password masked, statistics) and the connections
closed on behalf of old module versions. It is HTML, or JSON for
``?format=json`` or a request that accepts ``application/json``. Nothing is
cached: reloading the page shows the current state.

Only loopback clients may read it, unless ``PythonOption modpy_safe.status.allow``
lists the addresses or networks that may (it then replaces the loopback
default); others get 403. Every string in it is passed through
:func:`~modpy_safe._redact.scrub` with the DSNs of the known Databases, so no
password can appear even inside a quoted error message.
"""
from __future__ import annotations

import datetime
import html
import ipaddress
import os
import sys
import time
from typing import Any

from . import _apache
from ._apache import Request
from ._options import STATUS_ALLOW, Network, as_networks, options_for
from ._redact import scrub
from .db import database as _database
from .reload import importer as _importer
from .web import forms as _forms
from .web import response as _response

__all__ = ["handler", "report", "as_networks", "DEFAULT_ALLOW"]

DEFAULT_ALLOW = STATUS_ALLOW.default_doc


def client_allowed(address: str, networks: tuple[Network, ...]) -> bool:
    """Return True when ``address`` lies in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack listener
    return any(ip in net for net in networks)


def handler(req: Request) -> int:
    """Serve the status page (the entry point mod_python calls)."""
    _apache.install_logging()
    debug = _apache.debug_enabled(req)
    try:
        networks = options_for(req.get_options()).value(STATUS_ALLOW)
        address = _apache.client_ip(req)
        if not client_allowed(address, networks):
            return _response.send_error(
                req, 403, "The status page is not available to this address. Allow it "
                          "with 'PythonOption modpy_safe.status.allow'.")
        data = report(req)
        req.headers_out["Cache-Control"] = "no-store"
        if _wants_json(req):
            return _response.render(req, data)
        req.content_type = "text/html; charset=utf-8"
        return _response.render(req, to_html(data))
    except Exception as exc:
        return _response.handle_error(req, exc, debug=debug)


def _wants_json(req: Request) -> bool:
    for name, value in _forms.parse_query(req.args):
        if name == "format":
            return value == "json"
    return "application/json" in (req.headers_in.get("accept") or "")


def _iso(epoch: float) -> str | None:
    if not epoch:
        return None
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(
        timespec="seconds")


def _section(build: Any) -> Any:
    # One broken part must not hide the rest of the report.
    try:
        return build()
    except Exception as exc:
        return {"unavailable": f"{type(exc).__name__}: {exc}"}


def _server() -> dict[str, Any]:
    facts = _apache.server_facts()
    return {
        "mpm": facts.mpm, "threaded": facts.threaded, "forked": facts.forked,
        "threads_per_child": facts.threads_per_child, "max_processes": facts.max_processes,
        "max_workers": facts.max_workers,
        # What Database(mode="auto") picks in this process.
        "connection_mode": "pooled" if facts.threaded else "persistent",
    }


def _modules() -> list[dict[str, Any]]:
    out = []
    for rec in _importer.records():
        error = None
        if rec.error is not None:
            error = {"file": rec.error.file, "line": rec.error.line,
                     "message": rec.error.message, "at": _iso(rec.error.at),
                     "traceback": rec.error.traceback}
        out.append({
            "path": rec.path, "label": rec.label, "generation": rec.generation,
            "reloads": rec.reloads, "loaded_at": _iso(rec.loaded_at),
            "children": list(rec.children), "failing": rec.failing,
            "active_requests": rec.active, "old_versions_pending": rec.pending_old,
            "closed_for_old_versions": rec.closed_for_old, "last_error": error,
        })
    return out


def report(req: Request) -> dict[str, Any]:
    """Return the report for this process and interpreter (passwords masked)."""
    modules = _section(_modules)
    databases = _section(lambda: [db.describe() for db in _database.databases()])
    closed = (sum(m["closed_for_old_versions"] for m in modules)
              if isinstance(modules, list) else None)
    data = {
        "pid": os.getpid(),
        "interpreter": _apache.interpreter_name(req),
        "python": sys.version.split()[0],
        "generated_at": _iso(time.time()),
        "server": _section(_server),
        "modules": modules,
        "databases": databases,
        "connections_closed_for_old_versions": closed,
    }
    scrubbed: dict[str, Any] = _scrubbed(data, _response.known_dsns())
    return scrubbed


def _scrubbed(value: Any, dsns: list[str]) -> Any:
    if isinstance(value, str):
        return scrub(value, *dsns)
    if isinstance(value, dict):
        return {str(k): _scrubbed(v, dsns) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v, dsns) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub(repr(value), *dsns)


# ------------------------------------------------------------------- HTML

_STYLE = ("body{font:14px sans-serif;margin:1.5em}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
          "pre{margin:0;white-space:pre-wrap}.bad{color:#a00}")


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return "<br>".join(f"{html.escape(str(k))}: {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "<br>".join(_cell(v) for v in value) or "-"
    if value is None:
        return "-"
    text = html.escape(str(value))
    return f"<pre>{text}</pre>" if "\n" in text else text


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def to_html(data: dict[str, Any]) -> str:
    """Render the report as a small self-contained HTML page."""
    server = data["server"]
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>modpy_safe status, "
             f"pid {data['pid']}</title><style>{_STYLE}</style></head><body>",
             f"<h1>modpy_safe status: pid {data['pid']}</h1>",
             _table([{"interpreter": data["interpreter"], "python": data["python"],
                      "generated at": data["generated_at"],
                      "connections closed for old versions":
                          data["connections_closed_for_old_versions"]}],
                    ["interpreter", "python", "generated at",
                     "connections closed for old versions"]),
             "<h2>Server</h2>", _table([server], list(server))]
    parts.append("<h2>Modules</h2>")
    modules = data["modules"]
    if isinstance(modules, list):
        parts.append(_table(modules, ["path", "generation", "reloads", "loaded_at", "children",
                                      "active_requests", "old_versions_pending",
                                      "closed_for_old_versions", "failing", "last_error"])
                     if modules else "<p>No module loaded yet in this process.</p>")
    else:
        parts.append(f"<p class='bad'>{_cell(modules)}</p>")
    parts.append("<h2>Databases</h2>")
    dbs = data["databases"]
    if isinstance(dbs, list):
        parts.append(_table(dbs, ["name", "mode", "settings", "stats", "closed"])
                     if dbs else "<p>No Database declared in this process.</p>")
    else:
        parts.append(f"<p class='bad'>{_cell(dbs)}</p>")
    parts.append("</body></html>\n")
    return "".join(parts)
