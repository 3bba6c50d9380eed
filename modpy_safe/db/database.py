"""``modpy_safe.Database``: connections handed out the right way for the MPM.

``db = Database(dsn, name="default", mode="auto")`` is declared at module level
and never connects there. At first use it settles its settings (arguments in
code first, then ``PythonOption modpy_safe.db.<name>.<setting>``, then
defaults), picks the mode (auto: prefork → persistent, worker/event → pooled)
and builds a :class:`~modpy_safe.db.pool.Pool` with the driver it names
(``db/psycopg2.py`` by default; see ``db/driver.py``). Settings and the mode
are settled in ``db/settings.py``. See docs/connections.md.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from .. import _apache
from .._context import current_loading, current_options, current_scope
from .._errors import DatabaseError, DatabaseUnavailable, PoolClosed
from .._redact import redact_dsn
from .driver import driver_class
from .pool import COUNTERS, Pool
from .settings import DEFAULTS, MODES, settle, validate_given, warn_over_budget

__all__ = ["Database", "databases", "close_all", "MODES", "DEFAULTS"]

log = logging.getLogger("modpy_safe.pool")

# Seconds close() waits for checked-out connections (child exit, retirement).
CLOSE_WAIT = 3.0

# A connection given back less than this long ago is handed out again without
# the driver's check (for psycopg2 a poll() system call, which also hands the
# GIL to another thread). Under load that is nearly every checkout. The check
# only ever finds a server that closed the connection while it sat idle; one
# that closed it in these few milliseconds is found by the request's first
# statement instead, exactly as one that dies while a request runs: the
# request answers 503 (DatabaseUnavailable), the broken connection is dropped
# when it is given back, and the next checkout opens a new one. A connection
# idle for longer is checked as before, so a request after a quiet spell (a
# terminated backend, a restarted server) still succeeds at once.
TRUST_FOR = 0.002

_registry: "weakref.WeakSet[Database]" = weakref.WeakSet()
_exit_hook_pid = 0
_exit_hook_lock = threading.Lock()


class Database:
    """A PostgreSQL database used by a handler module; connects on first use.

    ``dsn`` is a libpq connection string or URI. ``name`` names it in options
    (``PythonOption modpy_safe.db.<name>.<setting>``), errors and the status
    page. ``mode`` is ``auto``, ``persistent``, ``pooled`` or ``per-request``;
    ``driver`` names the driver (``psycopg2``, the default); the other settings
    are described in docs/connections.md. Arguments given here win over
    options. ``connect`` replaces the driver's connect function (called with
    the DSN), ``facts`` replaces the MPM facts of httpd (plain Python
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
        given = validate_given(name, dict(kwargs, dsn=dsn))
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
        driver: str | None = None,
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
        self._driver: Any = None
        self._settings: dict[str, Any] = {}
        self._mode = ""
        self._closed = False
        self._local = _Held()
        self._cm = _Connection(self)  # one for all blocks: its state is per thread
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
            facts = self._facts
            if facts is None and _apache.in_httpd():
                facts = _apache.server_facts()
            settings, mode = settle(self.name, self._given, current_options(), facts)
            driver = driver_class(settings["driver"])(
                settings["dsn"], discard=settings["reset"] == "discard",
                connect=self._connect_fn)
            self._driver = driver
            size = settings["pool_max"]
            self._pool = Pool(
                _BudgetedConnect(self, driver),
                name=self.name,
                max_size=size,
                min_size=min(settings["pool_min"], size),
                timeout=settings["timeout"],
                max_lifetime=settings["max_lifetime"] or None,
                max_idle=settings["max_idle"] or None,
                ping_after=settings["ping_after"],
                keep=mode != "per-request",
                trust_for=TRUST_FOR,
            )
            self._settings, self._mode, self._facts_used = settings, mode, facts
            _register_exit_hook()
            return self._pool

    # ------------------------------------------------------------ public API
    @property
    def mode(self) -> str:
        """The mode in use (``persistent``, ``pooled``, ``per-request``); "" before first use."""
        return self._mode

    def connection(self) -> "_Connection":
        """Return a context manager giving a connection of the driver for the block.

        ``with db.connection() as conn:`` — the same connection when nested in
        one thread. When the block ends it is given back: an open transaction is
        rolled back (commit explicitly, or use :meth:`transaction`). In
        per-request mode inside a request it stays with the request until the
        request ends.
        """
        return self._cm

    def _lost(self, conn: Any, exc: BaseException) -> DatabaseUnavailable | None:
        """Return DatabaseUnavailable when ``exc`` broke the connection, else None.

        The server went away in the middle of the request (a restart, a
        shutdown, a killed backend): that is the database being unavailable,
        an HTTP 503, not a bug in the handler (500). The error stays a
        psycopg2.OperationalError, so existing except clauses still catch it.
        """
        if isinstance(exc, DatabaseError) or not self._driver.is_lost(conn, exc):
            return None
        reason = self._driver.describe_error(exc)
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


class _BudgetedConnect:
    """The database's driver, with the connection budget checked at each process's first connect.

    The hooks are the driver's own bound methods, so the pool's calls cost
    nothing more; only ``connect`` is wrapped.
    """

    def __init__(self, db: Database, driver: Any) -> None:
        self.db, self.driver, self.name = db, driver, driver.name
        self.check, self.ping, self.reset = driver.check, driver.ping, driver.reset
        self.close, self.abandon = driver.close, driver.abandon
        self.describe_error = driver.describe_error

    def connect(self) -> Any:
        conn = self.driver.connect()
        db = self.db
        if db._budget_pid != os.getpid():
            db._budget_pid = os.getpid()
            facts, pool = db._facts_used, db._pool
            if facts is not None:
                warn_over_budget(db.name, db._mode, self.driver, conn, facts,
                                 pool.max_size if pool is not None else 1)
        return conn


class _Held(threading.local):
    """What one thread holds of one Database: the entry of its open block, and how deep."""

    entry: Any = None  # class attributes are every thread's defaults
    depth = 0
    scoped = False  # the entry belongs to the request (per-request mode): not given back


class _Connection:
    """``with db.connection() as conn``: check a connection out, give it back after.

    One object per Database serves every block of every thread: what a block
    holds lives in the thread's :class:`_Held`, so ``connection()`` makes
    nothing and nested blocks (counted in ``depth``) share the connection.
    A class rather than a generator: this runs on every request that uses the
    database, and a generator-based context manager costs several calls more.
    """

    __slots__ = ("db",)

    def __init__(self, db: Database) -> None:
        self.db = db

    def __enter__(self) -> Any:
        db = self.db
        held = db._local
        entry = held.entry
        if entry is not None:  # nested in this thread: the same connection
            held.depth += 1
            return entry.conn
        pool = db._pool or db._resolve()
        if db._mode == "per-request":
            scope = current_scope()
            if scope is not None:
                entry = scope.data.get(db._key)
                if entry is None:
                    entry = pool.checkout()
                    scope.data[db._key] = entry
                    key = db._key
                    scope.add_cleanup(lambda: _end_request(pool, scope.data, key))
                held.entry, held.depth, held.scoped = entry, 1, True
                return entry.conn
        entry = pool.checkout()
        held.entry, held.depth = entry, 1
        return entry.conn

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        db = self.db
        held = db._local
        entry = held.entry
        try:
            if exc is not None:
                lost = db._lost(entry.conn, exc)
                if lost is not None:
                    raise lost from exc
        finally:
            depth = held.depth - 1
            if depth:
                held.depth = depth
            else:
                held.entry, held.depth = None, 0
                if held.scoped:
                    held.scoped = False
                else:
                    assert db._pool is not None
                    db._pool.checkin(entry)


class _Transaction:
    """``with db.transaction() as cur``: commit on success, roll back on error."""

    __slots__ = ("conn_cm", "conn", "cur")

    def __init__(self, db: Database) -> None:
        self.conn_cm = db._cm
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

