"""The benchmark site: one httpd per MPM serving every A and B side at once.

Each side is a directory of the document root with its own ``<Directory>``
section, so A and B of a comparison share the httpd build, the MPM, the
children and the interpreter, and switching from A to B is only a different URL.
The handler sources live in ``bench/handlers``; placeholders in them
(``__BENCH_DSN__`` and friends) are filled in when they are copied.
"""
from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modpy_safe.testing import Httpd, PostgresServer

__all__ = ["Endpoint", "ENDPOINTS", "MpmSetup", "MPM_SETUPS", "build_httpd", "get", "app_name"]

HANDLERS = Path(__file__).resolve().parent / "handlers"

# modpy_safe checks a handler file's mtime at most this often by default; the
# reload rows ask for every request so each rewrite is seen at once.
RELOAD_OPTIONS = {"modpy_safe.reload.interval": "0"}


@dataclass(frozen=True)
class Endpoint:
    """One side of a comparison: a directory, its handler file and its section."""

    name: str  # the directory under the document root, and the URL prefix
    source: str  # file in bench/handlers
    section: str  # body of the <Directory> section; {file} is the copied file's name
    mode: str = "auto"  # __BENCH_MODE__ for the Database handlers
    options: Mapping[str, str] | None = None

    @property
    def filename(self) -> str:
        # A module name unique in the interpreter, so plain PythonHandler sides
        # never find each other's module in sys.modules, and unlike the
        # directory's name, which would import as a namespace package.
        return f"{self.name}_app.py"

    @property
    def path(self) -> str:
        return f"/{self.name}/{self.filename}"


# The server-wide PythonPath stops mod_python from adding a section's directory
# to sys.path, so a plain section adds its own (evaluated once per interpreter).
PLAIN = "SetHandler mod_python\nPythonPath \"sys.path + [{directory!r}]\"\nPythonHandler {module}"
DISPATCH = ("SetHandler mod_python\nPythonHandler modpy_safe.dispatch\n"
            "PythonOption modpy_safe.handler {file}::{callable}")


def _plain(name: str, source: str) -> Endpoint:
    return Endpoint(name, source, PLAIN.format(module=f"{name}_app", directory="{directory}"))


def _dispatch(name: str, source: str, callable_: str = "handler", **kw: object) -> Endpoint:
    section = DISPATCH.format(file=f"{name}_app.py", callable=callable_)
    return Endpoint(name, source, section, **kw)  # type: ignore[arg-type]


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (
    _plain("fn_plain", "fn.py"),
    _dispatch("fn_safe", "fn.py"),
    _dispatch("cls_safe", "hello_class.py", "Hello"),
    Endpoint("pub_plain", "page.py", "SetHandler mod_python\nPythonHandler mod_python.publisher"),
    Endpoint("pub_safe", "page.py", "SetHandler mod_python\nPythonHandler modpy_safe.publisher"),
    _dispatch("db_auto", "db_safe.py", mode="auto"),
    _dispatch("db_pooled", "db_safe.py", mode="pooled"),
    _plain("db_global", "db_global.py"),
    _plain("db_tpool", "db_threaded_pool.py"),
    _plain("db_connect", "db_connect.py"),
    _dispatch("reload_safe", "db_safe.py", mode="auto", options=RELOAD_OPTIONS),
    _dispatch("memory_safe", "db_safe.py", mode="auto", options=RELOAD_OPTIONS),
)}


@dataclass(frozen=True)
class MpmSetup:
    """How one MPM is configured and loaded: the same for every row that uses it."""

    mpm: str
    processes: int
    threads: int
    connections: int  # wrk's keep-alive connections

    def describe(self) -> str:
        if self.mpm == "prefork":
            workers = f"{self.processes} single-threaded children"
        else:
            workers = f"{self.processes} children × {self.threads} threads (ThreadsPerChild)"
        return (f"{self.mpm}: {workers}, KeepAlive On, MaxKeepAliveRequests 0; "
                f"wrk 1 thread, {self.connections} keep-alive connections")


# prefork holds a child per keep-alive connection, so wrk must not open more
# connections than there are children or the extra ones starve.
MPM_SETUPS = {
    "prefork": MpmSetup("prefork", processes=4, threads=1, connections=4),
    "event": MpmSetup("event", processes=2, threads=16, connections=8),
}


def app_name(endpoint: str, mpm: str) -> str:
    """The PostgreSQL application_name of one side's connections, to count them."""
    return f"bench_{endpoint}_{mpm}"


def render(endpoint: Endpoint, *, dsn: str, threads: int, version: int = 0) -> str:
    """Return the handler source of ``endpoint`` with its placeholders filled in."""
    text = (HANDLERS / endpoint.source).read_text()
    return (text.replace("__BENCH_DSN__", dsn)
            .replace("__BENCH_MODE__", endpoint.mode)
            .replace("__BENCH_THREADS__", str(threads))
            .replace("__BENCH_VERSION__", str(version)))


PROFILER = "bench_profiler"


def _profiled(section: str, docroot: Path, directory: Path) -> str:
    """Turn a section into its profiling twin: bench_profiler wraps the same handler.

    The twin's PythonPath puts the document root (where bench_profiler lives)
    and its own directory on sys.path; the checkout is there once any normal
    section has been requested, which profile_httpd.py does first.
    """
    lines = []
    for line in section.splitlines():
        if line.startswith("PythonHandler "):
            lines.append(f"PythonHandler {PROFILER}")
            lines.append(f'PythonOption bench.profile.target "{line.split()[1]}"')
        elif not line.startswith("PythonPath "):
            lines.append(line)
    lines.append(f'PythonPath "sys.path + [{str(docroot)!r}, {str(directory)!r}]"')
    return "\n".join(lines)


def build_httpd(root: Path, setup: MpmSetup, postgres: PostgresServer | None, *,
                profiled: tuple[str, ...] = ()) -> Httpd:
    """Create (not start) the httpd for ``setup`` with every endpoint in place.

    Each name in ``profiled`` also gets a twin, ``/prof_<name>/``, whose
    handler runs under cProfile (see bench/handlers/bench_profiler.py).
    """
    sections = []
    server = Httpd(root, mpm=setup.mpm, processes=setup.processes, threads=setup.threads,
                   loglevel="warn", purpose="benchmarks (bench/run.py)")
    twins = [(ep, f"prof_{ep.name}") for ep in ENDPOINTS.values() if ep.name in profiled]
    for ep, directory in [(ep, ep.name) for ep in ENDPOINTS.values()] + twins:
        dsn = postgres.dsn_for(app_name(ep.name, setup.mpm)) if postgres else "postgres-not-running"
        server.write(f"{directory}/{ep.filename}", render(ep, dsn=dsn, threads=setup.threads))
        options = "".join(f'PythonOption {k} "{v}"\n' for k, v in (ep.options or {}).items())
        section = ep.section.replace("{directory}", str(server.docroot / directory))
        if directory != ep.name:
            section = _profiled(section, server.docroot, server.docroot / directory)
        body = "".join(f"    {line}\n" for line in (section + "\n" + options).splitlines() if line)
        sections.append(f'<Directory "{server.docroot / directory}">\n{body}</Directory>\n')
    if twins:
        server.write(f"{PROFILER}.py", (HANDLERS / f"{PROFILER}.py").read_text())
    server.settings["extra"] = "\n".join(sections)
    return server


def get(server: Httpd, path: str, *, timeout: float = 10.0) -> tuple[int, str]:
    """Return the status and text of one GET, or (0, reason) when the server did not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
