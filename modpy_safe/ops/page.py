"""The status page as HTML: a summary of the whole server first, then one section per child.

Written to be read at a glance at 1280 px: problems in a red box at the top,
tables that wrap instead of scrolling sideways, words instead of Python values
(``yes``/``no``, ``-``), and labels instead of the JSON keys.
"""
from __future__ import annotations

import html
import os
import re
from typing import Any

__all__ = ["to_html", "label"]

_STYLE = """
*{box-sizing:border-box}
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;padding:1em 1.5em;max-width:1280px;
color:#222}
h1{font-size:1.5em;margin:.2em 0 .6em}h2{font-size:1.2em;margin:1.6em 0 .4em;
border-bottom:2px solid #ddd}h3{font-size:1em;margin:1em 0 .3em}
table{border-collapse:collapse;width:100%;table-layout:fixed;margin:.3em 0 1em}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}th{background:#f4f4f4;font-weight:600;font-size:13px}
pre{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font-size:12px}
.facts{display:flex;flex-wrap:wrap;gap:.5em 1.5em;margin:.3em 0 .8em;padding:0;list-style:none}
.facts b{font-weight:600}
.problems{background:#fdecea;border:1px solid #e0a0a0;padding:.6em 1em;margin:.6em 0}
.problems li{color:#900}.ok{background:#eaf6ea;border:1px solid #a0d0a0;padding:.6em 1em}
.bad{color:#a00;font-weight:600}.dir{color:#777;font-size:12px}
details summary{cursor:pointer;color:#555}
""".replace("\n", "")

_LABELS = {
    "mpm": "MPM", "dsn": "DSN", "pid": "Process id", "requests": "Requests",
    "in_use": "In use", "size": "Open", "wait_time_total": "Total wait (s)",
    "wait_time_max": "Longest wait (s)", "connect_failures": "Connect failures",
    "returned_in_transaction": "Returned in a transaction", "pool_min": "Pool min",
    "pool_max": "Pool max", "timeout": "Timeout (s)", "max_lifetime": "Max lifetime (s)",
    "max_idle": "Max idle (s)", "ping_after": "Ping after (s)", "threads_per_child":
    "Threads per child", "max_processes": "Max processes", "max_workers": "Max workers",
    "connection_mode": "Connection mode",
}


def label(key: str) -> str:
    """Return the words for a JSON key (``wait_time_max`` -> ``Longest wait (s)``)."""
    if key in _LABELS:
        return _LABELS[key]
    if key.startswith("discarded_"):
        return f"Discarded ({key[len('discarded_'):]})"
    return key.replace("_", " ").capitalize()


_ISO = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)\+00:00$")
# Settings in the order people think of them; others follow in their own order.
_SETTINGS_ORDER = ("dsn", "driver", "mode", "pool_min", "pool_max", "timeout", "max_lifetime",
                   "max_idle", "ping_after", "reset")
_POOL_FIRST = ("size", "in_use", "idle", "requests", "waits", "timeouts", "connect_failures")


def _text(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    if isinstance(value, dict):
        return "; ".join(f"{label(str(k))}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, str) and (when := _ISO.match(value)):
        return f"{when.group(1)} {when.group(2)} UTC"
    return str(value)


def _esc(value: Any) -> str:
    return html.escape(_text(value))


def _facts(pairs: list[tuple[str, Any]]) -> str:
    items = "".join(f"<li>{html.escape(k)}: <b>{_esc(v)}</b></li>" for k, v in pairs)
    return f"<ul class='facts'>{items}</ul>"


def _table(head: list[str], rows: list[list[str]], widths: list[int] | None = None) -> str:
    cols = "".join(f"<col style='width:{w}%'>" for w in widths) if widths else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><colgroup>{cols}</colgroup><tr>{th}</tr>{body}</table>"


def _path(path: str) -> str:
    return (f"<b>{html.escape(os.path.basename(path))}</b><br>"
            f"<span class='dir'>{html.escape(os.path.dirname(path))}</span>")


def _error(err: Any) -> str:
    if not isinstance(err, dict):
        return "-"
    where = f"{os.path.basename(str(err.get('file', '')))}:{err.get('line', '?')}"
    trace = err.get("traceback") or ""
    more = (f"<details><summary>traceback</summary><pre>{html.escape(str(trace))}</pre>"
            f"</details>") if trace else ""
    return (f"<span class='bad'>{html.escape(str(err.get('message', '')))}</span><br>"
            f"{html.escape(where)}, {_esc(err.get('at'))}{more}")


def _modules(mods: Any) -> str:
    if not isinstance(mods, list):
        return f"<p class='bad'>{_esc(mods)}</p>"
    if not mods:
        return "<p>No handler file loaded yet in this process.</p>"
    rows = [[_path(m["path"]), _esc(m["generation"]), _esc(m["reloads"]), _esc(m["loaded_at"]),
             _esc([os.path.basename(c) for c in m["children"]]),
             _esc(m["active_requests"]),
             _esc(m["closed_for_old_versions"]) + (f" ({m['old_versions_pending']} old version(s)"
                                                   f" still in use)"
                                                   if m["old_versions_pending"] else ""),
             "<span class='bad'>failing</span>" if m["failing"] else "loaded",
             _error(m["last_error"])] for m in mods]
    return _table(["File", "Generation", "Reloads", "Loaded at", "Imported files",
                   "Requests running", "Resources closed", "State", "Last error"],
                  rows, [17, 8, 6, 10, 10, 8, 8, 6, 27])


def _databases(dbs: Any) -> str:
    if not isinstance(dbs, list):
        return f"<p class='bad'>{_esc(dbs)}</p>"
    if not dbs:
        return "<p>No Database declared in this process.</p>"
    rows = []
    for db in dbs:
        stats = db.get("stats") or {}
        pool = _facts([(label(k), stats[k]) for k in _POOL_FIRST if k in stats])
        # The other counters only when they say something.
        rest = "; ".join(f"{label(k)}: {_text(v)}" for k, v in stats.items()
                         if k not in _POOL_FIRST and v)
        given = db.get("settings") or {}
        settings = {k: given[k] for k in _SETTINGS_ORDER if k in given}
        settings.update((k, v) for k, v in given.items() if k not in settings)
        state = (f"<span class='bad'>down: {_esc(db['down'])}</span>" if db.get("down")
                 else ("closed" if db.get("closed") else "up"))
        rows.append([f"<b>{_esc(db['name'])}</b>", _esc(db.get("mode")), state,
                     _esc(settings), pool + f"<span class='dir'>{html.escape(rest)}</span>"])
    return _table(["Name", "Mode", "State", "Settings", "Pool"], rows, [12, 9, 14, 31, 34])


def _process(doc: dict[str, Any]) -> str:
    found = doc.get("server")
    server: dict[str, Any] = found if isinstance(found, dict) else {}
    answered = " (answered this request)" if doc.get("answered") else ""
    head = f"<h3 id='pid-{_esc(doc['pid'])}'>Process {_esc(doc['pid'])}{answered}</h3>"
    facts = _facts([("MPM", server.get("mpm")), ("Interpreter", doc.get("interpreter")),
                    ("Python", doc.get("python")), ("Requests", doc.get("requests")),
                    ("Failed loads", doc.get("reload_failures")),
                    ("Resources closed for old versions",
                     doc.get("connections_closed_for_old_versions")),
                    ("State at", doc.get("generated_at"))])
    problems = doc.get("problems") or []
    warn = ("<ul class='problems'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems)
            + "</ul>") if problems else ""
    return (head + facts + warn + "<h3>Handler files</h3>" + _modules(doc.get("modules"))
            + "<h3>Databases</h3>" + _databases(doc.get("databases")))


def to_html(report: dict[str, Any]) -> str:
    """Render the whole server's report as one self-contained page."""
    summary = report["summary"]
    found = report.get("server")
    server: dict[str, Any] = found if isinstance(found, dict) else {}
    problems = summary["problems"]
    box = ("<ul class='problems'>" + "".join(f"<li>{html.escape(p)}</li>" for p in problems)
           + "</ul>") if problems else "<p class='ok'>No problems.</p>"
    pids = ", ".join(f"<a href='#pid-{p}'>{p}</a>" for p in summary["pids"])
    parts = [
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width'>"
        f"<title>modpy_safe status: {summary['children']} children</title>"
        f"<style>{_STYLE}</style></head><body>",
        "<h1>modpy_safe status</h1>",
        _facts([("Children", summary["children"]), ("MPM", summary["mpm"]),
                ("Threads per child", server.get("threads_per_child")),
                ("Files failing to load", len(summary["files_failing"])),
                ("Databases down", len(summary["databases_down"])),
                ("Databases exhausted", len(summary["databases_exhausted"])),
                ("Requests", summary["requests"]), ("Generated at", report["generated_at"])]),
        box,
        f"<p>Processes: {pids or '-'}. JSON: <a href='?format=json'>?format=json</a>, "
        f"Prometheus: <a href='?format=prometheus'>?format=prometheus</a>.</p>",
        "<h2>Processes</h2>",
    ]
    parts.extend(_process(doc) for doc in report["processes"])
    parts.append("</body></html>\n")
    return "".join(parts)
