"""The one module that talks to mod_python.

``mod_python.apache`` can only be imported inside httpd. Everything else in
modpy_safe receives the request and the server facts as arguments, so it can be
tested in plain Python; this adapter turns the embedded interpreter's facts into
plain values and routes the ``modpy_safe.*`` loggers to Apache's error log.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Protocol

from ._errors import NotInHttpdError

__all__ = [
    "in_httpd",
    "require",
    "ServerFacts",
    "server_facts",
    "ServerConfig",
    "server_config",
    "install_logging",
    "on_child_exit",
    "debug_enabled",
    "autoreload_enabled",
    "request_flags",
    "Request",
    "section_directory",
    "section_name",
    "content_type_set",
    "body_sent",
    "bytes_queued",
    "client_ip",
    "handler_suffixes",
    "interpreter_name",
    "route_import_module",
]

try:  # pragma: no cover - only importable inside httpd
    from mod_python import apache as _ap
except ImportError:  # plain Python: tests, tools
    _ap = None


class Request(Protocol):
    """What modpy_safe uses of mod_python's request object (``mp_request``).

    The core is typed against this, so mypy checks every use; a stand-in in a
    plain-Python test needs only what the code under test touches. Reads of
    mod_python's private state go through the functions below instead.
    """

    method: str
    uri: str
    unparsed_uri: str
    args: str | None
    filename: str | None
    path_info: str | None
    content_type: str
    status: int
    user: str | None
    form: Any
    headers_in: Mapping[str, str]
    headers_out: MutableMapping[str, str]
    err_headers_out: MutableMapping[str, str]
    connection: Any
    server: Any
    main: Any  # the request that made this subrequest, or None

    def get_options(self) -> Mapping[str, str]: ...
    def get_config(self) -> Mapping[str, str]: ...
    def write(self, data: bytes | str, flush: int = 1) -> None: ...
    def read(self, size: int = -1) -> bytes: ...
    def set_content_length(self, length: int) -> None: ...
    def allow_methods(self, methods: list[str], reset: int = 0) -> None: ...
    def auth_type(self) -> str | None: ...
    def auth_name(self) -> str | None: ...
    def document_root(self) -> str: ...


def in_httpd() -> bool:
    """Return True when running inside Apache httpd under mod_python."""
    return _ap is not None


def require(what: str = "this") -> Any:
    """Return ``mod_python.apache``, or explain why it cannot be had."""
    if _ap is None:
        raise NotInHttpdError(
            f"{what} runs inside Apache httpd with mod_python: name it in a "
            "'PythonHandler' directive. In plain Python (tests, scripts) use "
            "modpy_safe.testing to start a real httpd instead."
        )
    return _ap


@dataclasses.dataclass(frozen=True)
class ServerFacts:
    """What the MPM says about this httpd child process."""

    mpm: str  # "prefork", "worker", "event" or "unknown"
    threaded: bool
    forked: bool
    threads_per_child: int
    max_processes: int  # the most children the MPM may run at once
    pid: int

    @property
    def max_workers(self) -> int:
        """Return how many requests the whole server may serve at once."""
        return self.threads_per_child * self.max_processes


_facts: ServerFacts | None = None
_facts_pid = 0


def _mpm_name(threaded: bool) -> str:
    # mod_python does not expose the MPM's name; the loaded module tells it.
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            text = maps.read()
    except OSError:
        text = ""
    for name in ("event", "worker", "prefork"):
        if f"mod_mpm_{name}.so" in text:
            return name
    if not threaded:
        return "prefork"
    return "unknown"


def server_facts() -> ServerFacts:
    """Return the MPM facts of this process (cached per process)."""
    global _facts, _facts_pid
    pid = os.getpid()
    if _facts is not None and _facts_pid == pid:
        return _facts
    ap = require("modpy_safe.server_facts()")
    threaded = ap.mpm_query(ap.AP_MPMQ_IS_THREADED) != ap.AP_MPMQ_NOT_SUPPORTED
    forked = ap.mpm_query(ap.AP_MPMQ_IS_FORKED) != ap.AP_MPMQ_NOT_SUPPORTED
    threads = max(1, int(ap.mpm_query(ap.AP_MPMQ_MAX_THREADS) or 1)) if threaded else 1
    daemons = max(1, int(ap.mpm_query(ap.AP_MPMQ_MAX_DAEMONS) or 1))
    _facts = ServerFacts(
        mpm=_mpm_name(threaded),
        threaded=threaded,
        forked=forked,
        threads_per_child=threads,
        max_processes=daemons,
        pid=pid,
    )
    _facts_pid = pid
    return _facts


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """What the main server's configuration says, for the status page and the logs."""

    server_root: str
    pidfile: str | None  # the PidFile directive as written (relative to server_root)
    options: dict[str, str]  # PythonOption at server level, outside every section
    loglevel: int  # the main server's LogLevel as an APLOG_* number
    interpreter: str  # the name of this Python interpreter


def server_config() -> ServerConfig:
    """Return the main server's configuration facts (mod_python's config_tree, server_root)."""
    ap = require("modpy_safe.server_config()")
    pidfile = None
    for item in ap.config_tree():
        if isinstance(item, tuple) and len(item) == 2 and str(item[0]).lower() == "pidfile":
            pidfile = str(item[1]).strip().strip('"')
    server = ap.main_server
    return ServerConfig(
        server_root=str(ap.server_root()),
        pidfile=pidfile,
        options={str(k): str(v) for k, v in dict(server.get_options()).items()},
        loglevel=int(server.loglevel),
        interpreter=str(getattr(ap, "interpreter", "") or ""),
    )


class ApacheLogHandler(logging.Handler):
    """Send log records to Apache's error log at the matching level."""

    def emit(self, record: logging.LogRecord) -> None:
        if _ap is None:
            return
        try:
            text = self.format(record)
            level = {
                logging.DEBUG: _ap.APLOG_DEBUG,
                logging.INFO: _ap.APLOG_INFO,
                logging.WARNING: _ap.APLOG_WARNING,
                logging.ERROR: _ap.APLOG_ERR,
                logging.CRITICAL: _ap.APLOG_CRIT,
            }.get(record.levelno, _ap.APLOG_NOTICE)
            # Without a server, Apache filters by its compiled-in default level
            # (warn) and drops INFO whatever 'LogLevel' says; the main server's
            # record applies the configured level.
            server = getattr(_ap, "main_server", None)
            extra = (server,) if server is not None else ()
            # Apache's error log is line oriented: one call per line keeps a
            # traceback readable and greppable.
            for line in text.splitlines() or [""]:
                _ap.log_error(line, level, *extra)
        except Exception:  # never let logging break a request
            self.handleError(record)


_logging_installed = False
_logging_lock = threading.Lock()


def install_logging() -> None:
    """Route logging to Apache's error log (once per interpreter).

    The ``modpy_safe`` loggers keep their own handler; every other logger (the
    application's) reaches the root logger's handler from
    :mod:`modpy_safe.ops.logs`, at the level the main server's ``LogLevel`` shows.
    """
    global _logging_installed
    if _logging_installed or _ap is None:
        return
    with _logging_lock:
        _install_handler()


def _install_handler() -> None:
    global _logging_installed
    if not _logging_installed:
        root = logging.getLogger("modpy_safe")
        handler = ApacheLogHandler()
        handler.setFormatter(logging.Formatter("modpy_safe: %(message)s"))
        root.addHandler(handler)
        # NOTICE is Apache's default threshold; INFO lines ("loaded", "reloaded")
        # are visible with 'LogLevel info' and above and cost nothing otherwise.
        root.setLevel(logging.INFO)
        root.propagate = False
        from .ops import logs  # late: ops imports the request context, which needs _options

        logs.install(_ap, int(getattr(_ap.main_server, "loglevel", 4)))
        _logging_installed = True


_exit_callbacks: list[Callable[[], None]] = []
_exit_registered_pid = 0
_exit_lock = threading.Lock()


def _run_exit_callbacks(_data: object = None) -> None:
    callbacks = list(_exit_callbacks)
    _exit_callbacks.clear()
    for fn in reversed(callbacks):
        try:
            fn()
        except Exception:
            logging.getLogger("modpy_safe").exception("child-exit cleanup %r failed", fn)


def on_child_exit(fn: Callable[[], None], req: Request | None = None) -> None:
    """Run ``fn`` when this httpd child process exits (graceful stop, MaxConnectionsPerChild).

    The callback is tied to the server's memory pool through mod_python, which
    destroys it when the child exits; ``req`` is any request of this process and
    is used for the first registration only.
    """
    global _exit_registered_pid
    with _exit_lock:
        if fn not in _exit_callbacks:
            _exit_callbacks.append(fn)
        pid = os.getpid()
        if _exit_registered_pid == pid or _ap is None:
            return
        if req is not None:
            req.server.register_cleanup(req, _run_exit_callbacks)
        else:
            _ap.register_cleanup(_run_exit_callbacks)
        _exit_registered_pid = pid


def request_flags(req: Request) -> tuple[bool, bool]:
    """Return (``PythonDebug`` is On, ``PythonAutoReload`` is On) for this request.

    One read of the directive table: httpd builds a new one on every call.
    """
    config = req.get_config()
    return config.get("PythonDebug", "0") == "1", config.get("PythonAutoReload", "1") == "1"


def section_directory(req: Request) -> str | None:
    """Return the ``<Directory>`` of the section whose handler runs (None for a Location)."""
    hlist: Any = getattr(req, "hlist", None)
    if hlist is None or hlist.is_location:
        return None
    return hlist.directory or None


def section_name(req: Request) -> str:
    """Name the section whose handler runs as httpd.conf writes it: ``<Directory "/srv/app/">``."""
    hlist: Any = getattr(req, "hlist", None)
    directory = getattr(hlist, "directory", None) if hlist is not None else None
    if not directory:
        return "the server configuration"
    kind = "Location" if hlist.is_location else "Directory"
    return f'<{kind} "{directory}">'


def content_type_set(req: Request) -> bool:
    """Return True when the handler set ``req.content_type`` itself."""
    return bool(getattr(req, "_content_type_set", 0))


def body_sent(req: Request) -> bool:
    """Return True once Apache has sent the headers and part of the body."""
    return bool(getattr(req, "sent_bodyct", 0))


def bytes_queued(req: Request) -> int:
    """Return how many body bytes mod_python holds unsent (written without a flush)."""
    return int(getattr(req, "_bytes_queued", 0) or 0)


def client_ip(req: Request) -> str:
    """Return the client's address (the one mod_remoteip settled on, when it runs)."""
    return str(getattr(req, "useragent_ip", None) or req.connection.client_ip)


def handler_suffixes(req: Request) -> tuple[str, str]:
    """Return the ``AddHandler`` extensions of this section and the handler's own extension."""
    get: Any = getattr(req, "get_addhandler_exts", None)
    exts = (get() if get is not None else "") or ""
    return str(exts), str(getattr(req, "extension", None) or "")


def interpreter_name(req: Request) -> str | None:
    """Return the name of the Python interpreter serving this request."""
    name = getattr(req, "interpreter", None)
    return None if name is None else str(name)


def debug_enabled(req: Request) -> bool:
    """Return True when ``PythonDebug On`` applies to this request."""
    return bool(req.get_config().get("PythonDebug", "0") == "1")


def autoreload_enabled(req: Request) -> bool:
    """Return True unless ``PythonAutoReload Off`` applies to this request."""
    return bool(req.get_config().get("PythonAutoReload", "1") == "1")


# Asked first by the wrapped apache.import_module: (caller's globals, name,
# autoreload, log, path) -> the module, or None to let mod_python answer.
ImportRouter = Callable[[dict[str, Any], str, Any, Any, Any], Any]
_import_router: ImportRouter | None = None


def route_import_module(router: ImportRouter) -> None:
    """Make ``apache.import_module`` ask ``router`` first (once per interpreter).

    mod_python's own dispatcher calls the same function, so the wrapper is
    replaced in ``mod_python.apache`` itself; ``router`` returns None for any
    caller that is not a module modpy_safe loaded, and mod_python's original
    then answers as before.
    """
    global _import_router
    _import_router = router
    if _ap is None or getattr(_ap.import_module, "__modpy_safe__", False):
        return
    original = _ap.import_module

    def import_module(module_name: str, autoreload: Any = None, log: Any = None,
                      path: Any = None) -> Any:
        """Import ``module_name``: through modpy_safe's importer when a module it loaded asks."""
        route = _import_router
        if route is not None:
            found = route(sys._getframe(1).f_globals, module_name, autoreload, log, path)
            if found is not None:
                return found
        return original(module_name, autoreload=1 if autoreload is None else autoreload,
                        log=log or 0, path=path)

    import_module.__modpy_safe__ = True  # type: ignore[attr-defined]
    import_module.__wrapped__ = original  # type: ignore[attr-defined]
    _ap.import_module = import_module
