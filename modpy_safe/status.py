"""``PythonHandler modpy_safe.status``: the state of every child of the server it runs in.

Every httpd child (every interpreter in it) publishes a small JSON file of its
state (see :mod:`modpy_safe.ops.publish`); this page reads them all, so it
describes the whole server whichever child answers: a summary first (children,
MPM, files failing to load, databases down or exhausted), then per child its
pid, MPM, every file the importer has loaded (generation, reloads, imported
files, last load error), the resources closed for old versions, and every
``Database`` (mode, settings with the password masked, pool statistics).

Formats: HTML; JSON for ``?format=json`` or a request that accepts
``application/json`` (``"processes"`` holds one entry per live child, and the
top-level fields describe the child that answered, as before); the Prometheus
text format for ``?format=prometheus``, merged across the children with
prometheus_client's multiprocess collector. Nothing is cached: reloading the
page shows the current state (a child's file is at most a second old).

Only loopback clients may read it, unless ``PythonOption modpy_safe.status.allow``
lists the addresses or networks that may (it then replaces the loopback
default); others get 403. Every string in it is passed through
:func:`~modpy_safe._redact.scrub` with the DSNs of the known Databases, so no
password can appear even inside a quoted error message.
"""
from __future__ import annotations

import ipaddress
from typing import Any

from . import _apache
from ._apache import Request
from ._options import STATUS_ALLOW, Network, as_networks, options_for
from .ops import metrics, page, publish, snapshot, state
from .web import forms as _forms
from .web import response as _response

__all__ = ["handler", "report", "as_networks", "client_allowed", "DEFAULT_ALLOW"]

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
    # Not counted as a request: a scrape every few seconds is not the site's traffic.
    _apache.install_logging()
    debug = _apache.debug_enabled(req)
    try:
        networks = options_for(req.get_options()).value(STATUS_ALLOW)
        address = _apache.client_ip(req)
        if not client_allowed(address, networks):
            return _response.send_error(
                req, 403, "The status page is not available to this address. Allow it "
                          "with 'PythonOption modpy_safe.status.allow'.")
        req.headers_out["Cache-Control"] = "no-store"
        wanted = _format(req)
        if wanted == "prometheus":
            return _prometheus(req)
        data = report(req)
        if wanted == "json":
            return _response.render(req, data)
        req.content_type = "text/html; charset=utf-8"
        return _response.render(req, page.to_html(data))
    except Exception as exc:
        return _response.handle_error(req, exc, debug=debug)


def _format(req: Request) -> str:
    for name, value in _forms.parse_query(req.args):
        if name == "format":
            return value if value in ("json", "prometheus") else "html"
    accept = req.headers_in.get("accept") or ""
    return "json" if "application/json" in accept else "html"


def _prometheus(req: Request) -> int:
    publisher, problem = publish.current()
    if publisher is None:
        raise RuntimeError(f"no metrics: {problem or 'the status page runs outside httpd'}")
    publisher.tick()  # this child's numbers as of now; the others' are at most a second old
    metrics.prune(publisher.metrics_dir)
    state.prune_metrics_directories(publisher.directory, publisher.me)
    req.content_type = metrics.CONTENT_TYPE
    return _response.render(req, metrics.exposition(publisher.metrics_dir).decode("utf-8"))


def report(req: Request) -> dict[str, Any]:
    """Return the report of the whole server (passwords masked).

    The top-level fields are those of the child that answered; ``processes``
    has one entry per live child, ``summary`` what an operator reads first.
    """
    publisher, problem = publish.current()
    if publisher is not None:
        own = publisher.tick()
        docs, _pruned = state.read_states(publisher.directory, publisher.me)
        docs = [d for d in docs if d.get("ident") != own["ident"]] + [own]
        docs.sort(key=lambda d: (int(d["pid"]), str(d.get("interpreter") or "")))
    else:
        own = snapshot.process_document(getattr(req, "interpreter", None))
        docs = [own]
    for doc in docs:
        doc["answered"] = doc is own
        doc["problems"] = snapshot.problems_of(doc)
    data = {key: own.get(key) for key in (
        "pid", "interpreter", "python", "generated_at", "server", "modules", "databases",
        "connections_closed_for_old_versions")}
    data["summary"] = _summary(docs, own, problem)
    data["processes"] = docs
    data["state_directory"] = str(publisher.directory) if publisher is not None else None
    scrubbed: dict[str, Any] = snapshot.scrubbed(data, _response.known_dsns())
    return scrubbed


def _summary(docs: list[dict[str, Any]], own: dict[str, Any], problem: str | None
             ) -> dict[str, Any]:
    found = own.get("server")
    server: dict[str, Any] = found if isinstance(found, dict) else {}
    failing = sorted({m["path"] for d in docs if isinstance(d.get("modules"), list)
                      for m in d["modules"] if m.get("failing")})
    down: set[str] = set()
    exhausted: set[str] = set()
    for d in docs:
        for db in d["databases"] if isinstance(d.get("databases"), list) else []:
            if db.get("down"):
                down.add(str(db["name"]))
            size = int((db.get("settings") or {}).get("pool_max") or 0)
            if size and (db.get("stats") or {}).get("in_use", 0) >= size:
                exhausted.add(str(db["name"]))
    problems = [f"process {d['pid']}: {p}" for d in docs for p in d["problems"]]
    if problem:
        problems.insert(0, f"Only the answering process is shown: {problem}")
    pids = sorted({int(d["pid"]) for d in docs})
    return {
        "children": len(pids), "pids": pids, "mpm": server.get("mpm"),
        "files_failing": failing, "databases_down": sorted(down),
        "databases_exhausted": sorted(exhausted),
        "requests": sum(int(d.get("requests") or 0) for d in docs),
        "problems": problems,
    }


# 'PythonImport modpy_safe.status <interpreter>' imports this when a child starts:
# publishing from then on puts children that have not served a request yet on the page.
if _apache.in_httpd():
    publish.start()
