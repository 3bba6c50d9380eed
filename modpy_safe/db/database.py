"""``modpy_safe.Database``: psycopg2 connections handed out the right way for the MPM.

``db = Database(dsn, name="default", mode="auto")`` is declared at module level
and never connects there. At first use it settles its settings (arguments in
code first, then ``PythonOption modpy_safe.db.<name>.<setting>``, then
defaults), picks the mode (auto: prefork → persistent, worker/event → pooled)
and builds a :class:`~modpy_safe.db.pool.Pool` with the psycopg2 hooks defined
first in this module (check, ping, reset, close, abandon after a fork). See
docs/connections.md.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Callable

import psycopg2
import psycopg2.extensions as _ext

from .. import _apache
from .._context import current_loading, current_options, current_scope
from .._errors import ConfigError, DatabaseError, DatabaseUnavailable, PoolClosed
from .._options import as_choice, as_int, as_seconds, check
from .._redact import redact_dsn, scrub
from .pool import COUNTERS, Pool, forsake

__all__ = ["Database", "databases", "close_all", "MODES", "DEFAULTS"]

log = logging.getLogger("modpy_safe.pool")

# ----------------------------------------------------------- psycopg2 hooks
# libpq waits forever for an unreachable host unless told otherwise.
CONNECT_TIMEOUT = 5
_IDLE = _ext.TRANSACTION_STATUS_IDLE
_DIRTY = (_ext.TRANSACTION_STATUS_INTRANS, _ext.TRANSACTION_STATUS_INERROR)


def validate_dsn(raw: str) -> str:
    """Accept a libpq DSN or URI that libpq can parse."""
    if not raw.strip():
        raise ValueError("allowed: a libpq string such as 'host=... dbname=...' or a URI")
    try:
        _ext.parse_dsn(raw)
    except psycopg2.ProgrammingError as exc:
        # libpq quotes the part it choked on, which may be the password.
        reason = scrub(str(exc).strip(), raw)
        raise ValueError(f"allowed: a libpq connection string or URI ({reason})") from None
    return raw


def connect_with_defaults(dsn: str, connect: Callable[[str], Any] | None) -> Any:
    """Open a connection; add connect_timeout unless the DSN or PGCONNECT_TIMEOUT sets it."""
    if "connect_timeout" not in _ext.parse_dsn(dsn) and "PGCONNECT_TIMEOUT" not in os.environ:
        dsn = _ext.make_dsn(dsn, connect_timeout=CONNECT_TIMEOUT)
    return (connect or psycopg2.connect)(dsn)


def check_alive(conn: Any) -> bool | None:
    """Cheap local check: False when closed, None when doubtful (data waiting on an idle socket)."""
    if conn.closed:
        return False
    if conn.get_transaction_status() != _IDLE:
        return None
    # An idle connection has nothing to read; a readable socket means the server
    # closed it (restart, pg_terminate_backend) or sent a notice: ping to know.
    fd = conn.fileno()
    poller = _pollers.get(fd)
    if poller is None:
        # One poll object per descriptor number: it holds only the number, and a
        # checked-out connection's descriptor is used by one thread at a time.
        poller = _pollers[fd] = select.poll()
        poller.register(fd, select.POLLIN)
    return None if poller.poll(0) else True


_pollers: dict[int, Any] = {}


def ping(conn: Any) -> bool:
    """Make one round trip (SELECT 1); return False when the connection is dead."""
    try:
        if conn.closed:
            return False
        if conn.get_transaction_status() != _IDLE:
            conn.rollback()
        autocommit = conn.autocommit
        conn.autocommit = True  # one round trip, no BEGIN/ROLLBACK around it
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.autocommit = autocommit
        return True
    except Exception:
        return False


def reset_rollback(conn: Any) -> bool:
    """Roll back what a request left open; restore psycopg2's session defaults.

    Return True when a transaction had to be rolled back; raise when the
    connection's state is unknown (the pool then closes it).
    """
    if conn.closed:
        raise psycopg2.InterfaceError("connection already closed")
    status = conn.get_transaction_status()
    dirty = status in _DIRTY
    if dirty:
        conn.rollback()
    elif status != _IDLE:  # ACTIVE (a query still running) or UNKNOWN (broken)
        raise psycopg2.InterfaceError(f"connection in state {status} cannot be reused")
    if conn.autocommit or conn.readonly is not None or conn.deferrable is not None or (
        conn.isolation_level is not None
    ):
        conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT", deferrable="DEFAULT",
                         autocommit=False)
    return dirty


def reset_discard(conn: Any) -> bool:
    """Like :func:`reset_rollback`, then DISCARD ALL (which cannot run in a transaction)."""
    dirty = reset_rollback(conn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("DISCARD ALL")
    finally:
        conn.autocommit = False
    return dirty


def close_quietly(conn: Any) -> None:
    """Close ``conn``; a connection that is already broken needs nothing more."""
    with contextlib.suppress(Exception):
        conn.close()


def abandon(conn: Any) -> None:
    """In a forked child: detach ``conn`` from the parent's socket without telling the server.

    The child's copy of the socket is replaced by /dev/null, so nothing the
    child does with the object (a ``close()`` sends libpq's Terminate message)
    can reach the server and end the parent's session; psycopg2 itself skips
    that message when a child merely frees it. The object is kept, never
    closed, in case a thread that no longer exists held its lock at the fork.
    """
    with contextlib.suppress(Exception):
        fd = conn.fileno()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    forsake(conn)


def budget_limit(conn: Any) -> tuple[int, int, int]:
    """Return (usable, max_connections, superuser_reserved_connections) of the server."""
    autocommit = conn.autocommit
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('max_connections')::int, "
                        "current_setting('superuser_reserved_connections')::int")
            max_conn, reserved = cur.fetchone()
    finally:
        conn.autocommit = autocommit
    return max_conn - reserved, max_conn, reserved


MODES = ("auto", "persistent", "pooled", "per-request")

#: Defaults of the settings; pool_max None means "from the MPM" (ThreadsPerChild).
DEFAULTS: dict[str, Any] = {
    "dsn": None, "mode": "auto", "pool_min": 0, "pool_max": None, "timeout": 10.0,
    "max_lifetime": 3600.0, "max_idle": 600.0, "ping_after": 10.0, "reset": "rollback",
}
#: pool_max outside httpd, where there is no ThreadsPerChild to follow.
POOL_MAX_OUTSIDE_HTTPD = 10
# Seconds close() waits for checked-out connections (child exit, retirement).
CLOSE_WAIT = 3.0

_CASTS: dict[str, Callable[[str], Any]] = {
    "dsn": validate_dsn,
    "mode": as_choice(*MODES),
    "pool_min": as_int(minimum=0, maximum=10000),
    "pool_max": as_int(minimum=1, maximum=10000),
    "timeout": as_seconds(minimum=0, maximum=3600),
    "max_lifetime": as_seconds(minimum=0),
    "max_idle": as_seconds(minimum=0),
    "ping_after": as_seconds(minimum=0),
    "reset": as_choice("rollback", "discard"),
}
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

_registry: "weakref.WeakSet[Database]" = weakref.WeakSet()
_exit_hook_pid = 0
_exit_hook_lock = threading.Lock()


def _validate_given(name: object, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check the arguments given in code; return the ones that were given."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"Database argument name has value {name!r}: allowed: letters, digits, '_' and '-' "
            f"(it is part of the option names modpy_safe.db.<name>.<setting>)."
        )
    given: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or (key == "mode" and value == "auto"):
            continue
        label = f"Database(name={name!r}) argument {key}"
        if key == "dsn":
            if not isinstance(value, str):
                raise ConfigError(
                    f"{label} must be a str (a libpq DSN or URI), not {type(value).__name__}."
                )
            given[key] = check(label, value, _CASTS[key], shown=redact_dsn(value))
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{label} has value {value!r}: allowed: a number or a string.")
        else:
            given[key] = check(label, str(value), _CASTS[key])
    return given


class Database:
    """A PostgreSQL database used by a handler module; connects on first use.

    ``dsn`` is a libpq connection string or URI. ``name`` names it in options
    (``PythonOption modpy_safe.db.<name>.<setting>``), errors and the status
    page. ``mode`` is ``auto``, ``persistent``, ``pooled`` or ``per-request``;
    the other settings are described in docs/connections.md. Arguments given
    here win over options. ``connect`` replaces ``psycopg2.connect`` (called
    with the DSN), ``facts`` replaces the MPM facts of httpd (plain Python
    defaults to persistent).

    Declared again while its module is reloaded, with the same name and
    arguments, it is the same object as before, connections included.
    """

    _ready = False
    _identity: tuple[dict[str, Any], Callable[[str], Any] | None, _apache.ServerFacts | None]

    def __new__(cls, dsn: str | None = None, *, name: str = "default", **kwargs: Any) -> "Database":
        connect = kwargs.pop("connect", None)
        facts = kwargs.pop("facts", None)
        unknown = set(kwargs) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"Database() got unexpected arguments: {', '.join(sorted(unknown))}")
        given = _validate_given(name, dict(kwargs, dsn=dsn))
        identity = (given, connect, facts)
        loading = current_loading()
        if loading is not None and loading.predecessor:
            for value in list(loading.predecessor.values()):
                if (type(value) is cls and value.name == name and not value._closed
                        and value._identity == identity):
                    return value  # __init__ sees _ready and leaves it alone
        self = super().__new__(cls)
        self._identity = identity
        return self

    def __init__(
        self,
        dsn: str | None = None,
        *,
        name: str = "default",
        mode: str = "auto",
        pool_min: int | None = None,
        pool_max: int | None = None,
        timeout: float | None = None,
        max_lifetime: float | None = None,
        max_idle: float | None = None,
        ping_after: float | None = None,
        reset: str | None = None,
        connect: Callable[[str], Any] | None = None,
        facts: _apache.ServerFacts | None = None,
    ) -> None:
        if self._ready:
            return
        self.name = name
        self._given, self._connect_fn, self._facts = self._identity
        self._lock = threading.Lock()
        self._pool: Pool[Any] | None = None
        self._settings: dict[str, Any] = {}
        self._mode = ""
        self._closed = False
        self._local = threading.local()
        self._budget_pid = 0
        self._facts_used: _apache.ServerFacts | None = None
        self._key = f"modpy_safe.db.{id(self)}"
        _registry.add(self)
        self._ready = True

    def __repr__(self) -> str:
        mode = self._mode or f"{self._given.get('mode', 'auto')}, not used yet"
        return f"<modpy_safe.Database {self.name!r} ({mode}{', closed' if self._closed else ''})>"

    # ------------------------------------------------------------- settings
    def _resolve(self) -> Pool[Any]:
        """Settle settings and mode and build the pool (first use only)."""
        with self._lock:
            if self._pool is not None:
                return self._pool
            if self._closed:
                raise PoolClosed(f"Database {self.name!r} is closed.")
            _apache.install_logging()
            options = current_options()
            settings = dict(DEFAULTS)
            for key in DEFAULTS:
                if key in self._given:
                    settings[key] = self._given[key]
                elif options is not None:
                    value = options.get(f"db.{self.name}.{key}", _CASTS[key], None)
                    if value is not None:
                        settings[key] = value
            if not settings["dsn"]:
                raise ConfigError(
                    f"Database {self.name!r} has no DSN: pass it as Database(dsn, ...) or set "
                    f"'PythonOption modpy_safe.db.{self.name}.dsn \"host=... dbname=...\"'."
                )
            facts = self._facts
            if facts is None and _apache.in_httpd():
                facts = _apache.server_facts()
            mode = settings["mode"]
            if mode == "auto":
                mode = "pooled" if facts is not None and facts.threaded else "persistent"
            threads = facts.threads_per_child if facts is not None else POOL_MAX_OUTSIDE_HTTPD
            if mode == "persistent":
                size = 1
            else:
                size = settings["pool_max"] or threads
            settings["pool_max"] = size
            if settings["pool_min"] > size:
                raise ConfigError(
                    f"Database {self.name!r}: pool_min ({settings['pool_min']}) is larger than "
                    f"pool_max ({size}); allowed: pool_min at most pool_max."
                )
            dsn = settings["dsn"]
            discard = settings["reset"] == "discard"
            self._pool = Pool(
                lambda: self._open_connection(dsn),
                name=self.name,
                max_size=size,
                min_size=min(settings["pool_min"], size),
                timeout=settings["timeout"],
                max_lifetime=settings["max_lifetime"] or None,
                max_idle=settings["max_idle"] or None,
                ping_after=settings["ping_after"],
                keep=mode != "per-request",
                check=check_alive,
                ping=ping,
                reset=reset_discard if discard else reset_rollback,
                close=close_quietly,
                abandon=abandon,
                describe_error=lambda exc: _describe_error(exc, dsn),
            )
            self._settings, self._mode, self._facts_used = settings, mode, facts
            _register_exit_hook()
            return self._pool

    def _open_connection(self, dsn: str) -> Any:
        conn = connect_with_defaults(dsn, self._connect_fn)
        if self._budget_pid != os.getpid():
            self._budget_pid = os.getpid()
            self._check_budget(conn)
        return conn

    def _check_budget(self, conn: Any) -> None:
        """Warn once if every process opening its maximum could exceed max_connections."""
        facts = self._facts_used
        if facts is None:
            return
        per_process = self._pool.max_size if self._pool is not None else 1
        worst = facts.max_processes * per_process
        try:
            limit, max_conn, reserved = budget_limit(conn)
        except Exception as exc:  # the check must never fail a request
            log.info("database %r: could not read max_connections (%s)", self.name,
                     _describe_error(exc, self._settings.get("dsn")))
            return
        if worst > limit:
            log.warning(
                "database %r (%s) may open up to %d connections (%d processes x %d) but the "
                "server accepts %d (max_connections %d - %d superuser_reserved_connections): "
                "%d too many. Lower pool_max (PythonOption modpy_safe.db.%s.pool_max), lower "
                "MaxRequestWorkers/ServerLimit, or put PgBouncer in transaction mode in between.",
                self.name, self._mode, worst, facts.max_processes, per_process, limit,
                max_conn, reserved, worst - limit, self.name,
            )

    # ------------------------------------------------------------ public API
    @property
    def mode(self) -> str:
        """The mode in use (``persistent``, ``pooled``, ``per-request``); "" before first use."""
        return self._mode

    def connection(self) -> "_Connection":
        """Return a context manager giving a psycopg2 connection for the block.

        ``with db.connection() as conn:`` — the same connection when nested in
        one thread. When the block ends it is given back: an open transaction is
        rolled back (commit explicitly, or use :meth:`transaction`). In
        per-request mode inside a request it stays with the request until the
        request ends.
        """
        return _Connection(self)

    def _lost(self, conn: Any, exc: psycopg2.OperationalError) -> DatabaseUnavailable | None:
        """Return DatabaseUnavailable when ``exc`` broke the connection, else None.

        The server went away in the middle of the request (a restart, a
        shutdown, a killed backend): that is the database being unavailable,
        an HTTP 503, not a bug in the handler (500). The error stays a
        psycopg2.OperationalError, so existing except clauses still catch it.
        """
        if not conn.closed or isinstance(exc, DatabaseError):
            return None
        reason = _describe_error(exc, self._settings.get("dsn"))
        return DatabaseUnavailable(
            f"Database {self.name!r} is unavailable: the connection was lost ({reason})")

    def transaction(self) -> "_Transaction":
        """Return a context manager giving a cursor in a transaction.

        ``with db.transaction() as cur:`` commits when the block ends normally
        and rolls back when it raises.
        """
        return _Transaction(self)

    def stats(self) -> dict[str, float]:
        """Return the counters (requests, waits, opened, discarded_*, in_use, idle, size...)."""
        pool = self._pool
        return pool.stats() if pool is not None else dict.fromkeys(COUNTERS, 0)

    def describe(self) -> dict[str, Any]:
        """Return name, mode, settings (password masked), stats and state, for a status page."""
        settings = dict(self._settings or dict(DEFAULTS, **self._given))
        settings["dsn"] = redact_dsn(settings.get("dsn"))
        return {
            "name": self.name,
            "mode": self._mode or "not used yet",
            "settings": settings,
            "stats": self.stats(),
            "closed": self._closed,
            "pid": os.getpid(),
        }

    def close(self, wait: float = CLOSE_WAIT) -> bool:
        """Refuse new checkouts, wait up to ``wait`` s for checked-out connections, close all.

        Connections still out after the wait are closed when they come back.
        Return True when none was out any more.
        """
        with self._lock:
            already, self._closed = self._closed, True
            pool = self._pool
        if pool is None:
            return True
        done = pool.close(wait)
        if not already:
            stats = pool.stats()
            log.info("database %r closed in process %d: %d connection(s) closed, %d still "
                     "checked out (closed when given back)", self.name, os.getpid(),
                     stats["closed"], stats["in_use"])
        return done

    def __modpy_safe_close__(self) -> None:
        """Close this Database when the importer retires the module that declared it."""
        self.close()


class _Connection:
    """``with db.connection() as conn``: check a connection out, give it back after.

    A class rather than a generator: this runs on every request that uses the
    database, and a generator-based context manager costs several calls more.
    """

    __slots__ = ("db", "entry", "pool", "held")

    def __init__(self, db: Database) -> None:
        self.db = db
        self.entry: Any = None
        self.pool: Pool[Any] | None = None
        self.held = False  # True when this block checked the entry out and gives it back

    def __enter__(self) -> Any:
        db = self.db
        pool = db._pool or db._resolve()
        local = db._local
        entry = getattr(local, "entry", None)
        if entry is not None:  # nested in this thread: the same connection
            self.entry = entry
            return entry.conn
        if db._mode == "per-request":
            scope = current_scope()
            if scope is not None:
                entry = scope.data.get(db._key)
                if entry is None:
                    entry = pool.checkout()
                    scope.data[db._key] = entry
                    key = db._key
                    scope.add_cleanup(lambda: _end_request(pool, scope.data, key))
                self.entry = entry
                return entry.conn
        entry = pool.checkout()
        local.entry = entry
        self.entry, self.pool, self.held = entry, pool, True
        return entry.conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        entry = self.entry
        try:
            if exc is not None and isinstance(exc, psycopg2.OperationalError):
                lost = self.db._lost(entry.conn, exc)
                if lost is not None:
                    raise lost from exc
        finally:
            if self.held:
                self.held = False
                self.db._local.entry = None
                assert self.pool is not None
                self.pool.checkin(entry)


class _Transaction:
    """``with db.transaction() as cur``: commit on success, roll back on error."""

    __slots__ = ("conn_cm", "conn", "cur")

    def __init__(self, db: Database) -> None:
        self.conn_cm = _Connection(db)
        self.conn: Any = None
        self.cur: Any = None

    def __enter__(self) -> Any:
        self.conn = self.conn_cm.__enter__()
        try:
            self.cur = self.conn.cursor()
        except BaseException:
            self.conn_cm.__exit__(*sys.exc_info())
            raise
        return self.cur

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        try:
            try:
                if exc is None:
                    self.conn.commit()
                else:
                    with contextlib.suppress(Exception):
                        self.conn.rollback()
            finally:
                with contextlib.suppress(Exception):
                    self.cur.close()
        except BaseException:
            # The commit failed: the connection block sees that error instead.
            self.conn_cm.__exit__(*sys.exc_info())
            raise
        self.conn_cm.__exit__(exc_type, exc, tb)


def _end_request(pool: Pool[Any], data: dict[str, Any], key: str) -> None:
    entry = data.pop(key, None)
    if entry is not None:
        pool.checkin(entry)


def _describe_error(exc: BaseException, dsn: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = scrub(text, dsn)
    with contextlib.suppress(Exception):
        # A URI's password is percent-encoded; libpq sees (and may quote) it decoded.
        password = _ext.parse_dsn(dsn or "").get("password") or ""
        if len(password) >= 3:
            text = text.replace(password, "***")
    return text


def databases() -> list[Database]:
    """Return every Database of this process and interpreter, sorted by name."""
    return sorted(_registry, key=lambda db: (db.name, id(db)))


def close_all(wait: float = CLOSE_WAIT) -> None:
    """Close every Database (at child exit): checked-out connections get ``wait`` s in all."""
    for db in databases():
        try:
            db.close(wait)
        except Exception:
            log.exception("closing database %r failed", db.name)


def _register_exit_hook() -> None:
    global _exit_hook_pid
    with _exit_hook_lock:
        if _exit_hook_pid == os.getpid():
            return
        _exit_hook_pid = os.getpid()
    scope = current_scope()
    try:
        _apache.on_child_exit(close_all, scope.req if scope is not None else None)
    except Exception:
        log.exception("could not register the child-exit close of the databases")

