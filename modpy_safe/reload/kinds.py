"""The kinds of resource modpy_safe knows, and how each is closed.

A *kind* is a name and a closer. :func:`classify` tells which kind an object
is (or None), in this order:

1. an object given to :func:`register`, closed with the function given there;
2. an object whose type defines ``__modpy_safe_close__`` (``modpy_safe.Database``);
3. an instance of a type given to :func:`register_type`;
4. a type of a known library: psycopg2 connections and pools, psycopg 3
   connections and ``psycopg_pool`` pools, SQLAlchemy engines and pools,
   DBUtils ``PooledDB``/``PersistentDB``, ``sqlite3`` connections;
5. any DB-API connection: callable ``cursor``, ``commit``, ``rollback`` and ``close``.

Library types are recognised by the module and qualified name of each class
in the object's MRO, so an optional library is never imported to ask.
:func:`link` names what a DB-API cursor holds on to (its connection), which the
walker in :mod:`.reach` follows.
"""
from __future__ import annotations

import dataclasses
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["Kind", "register", "register_type", "classify", "kind_of_type", "close",
           "is_cursor_type", "registered", "registered_ids", "describe"]


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of resource: a name for log lines and the function that closes one.

    ``closer(obj)`` returns True when ``obj`` was open and is closed now.
    """

    name: str
    closer: Callable[[Any], bool]


def _closing(method: str) -> Callable[[Any], bool]:
    """Return a closer that calls ``obj.<method>()`` unless ``obj.closed`` is true."""
    def closer(obj: Any) -> bool:
        if getattr(obj, "closed", False):
            return False
        getattr(obj, method)()
        return True
    return closer


def _dispose(obj: Any) -> bool:
    obj.dispose()
    return True


def _close_persistent(obj: Any) -> bool:
    """Close every thread's connection of a DBUtils PersistentDB (close() ignores them)."""
    from .reach import local_dicts  # the walker's view of a threading.local
    closed = False
    for values in local_dicts(getattr(obj, "thread", None)):
        conn = values.get("connection")
        really = getattr(conn, "_close", None)  # SteadyDBConnection's real close
        if callable(really) and not getattr(conn, "_closed", False):
            really()
            closed = True
    return closed


# (module, qualname) of a class -> its kind. Checked against every class in an
# object's MRO, most derived first, so a subclass gets its base's kind.
_KNOWN: dict[tuple[str, str], Kind] = {
    ("psycopg2.pool", "AbstractConnectionPool"): Kind("psycopg2 pool", _closing("closeall")),
    ("psycopg2.extensions", "connection"): Kind("psycopg2 connection", _closing("close")),
    # psycopg 3 sets __module__ of its public classes to the package name.
    ("psycopg", "Connection"): Kind("psycopg connection", _closing("close")),
    ("psycopg.connection", "Connection"): Kind("psycopg connection", _closing("close")),
    # close() also ends the pool's worker threads.
    ("psycopg_pool.pool", "ConnectionPool"): Kind("psycopg_pool pool", _closing("close")),
    ("psycopg_pool", "ConnectionPool"): Kind("psycopg_pool pool", _closing("close")),
    ("sqlalchemy.engine.base", "Engine"): Kind("SQLAlchemy Engine", _dispose),
    ("sqlalchemy.pool.base", "Pool"): Kind("SQLAlchemy pool", _dispose),
    ("dbutils.pooled_db", "PooledDB"): Kind("DBUtils PooledDB", _closing("close")),
    ("dbutils.persistent_db", "PersistentDB"): Kind("DBUtils PersistentDB", _close_persistent),
    ("sqlite3", "Connection"): Kind("sqlite3 connection", _closing("close")),
}

_DBAPI = Kind("DB-API connection", _closing("close"))
def _hook(obj: Any) -> bool:
    obj.__modpy_safe_close__()
    return True


_HOOK = Kind("modpy_safe resource", _hook)

# (module, qualname) -> kind, from register_type(); a newer call for the same
# name replaces the older one (a handler file registers its class on each load).
_user_types: dict[tuple[str, str], Kind] = {}

# id(obj) -> (obj, close function). Strong references: a registered object stays
# alive until it is closed, so its id can never be reused by another object.
_registered: dict[int, tuple[Any, Callable[[], Any]]] = {}
_lock = threading.Lock()

# type -> its kind (or None), filled on first sight. Weak: types of old module
# versions must not be kept alive by this cache.
_by_type: weakref.WeakKeyDictionary[type, Kind | None] = weakref.WeakKeyDictionary()


def register(obj: Any, close: Callable[[], Any] | None = None) -> Any:
    """Declare ``obj`` a resource that modpy_safe closes when no module uses it any more.

    ``close`` is called with no arguments to release it; by default
    ``obj.close``. Return ``obj``, so a module can write
    ``client = modpy_safe.register(make_client())``.
    """
    if close is None:
        close = getattr(obj, "close", None)
        if not callable(close):
            raise TypeError(
                f"modpy_safe.register({obj!r}): the object has no close() method; "
                "pass the function that releases it as close=..."
            )
    elif not callable(close):
        raise TypeError(f"modpy_safe.register(): close must be callable, not {close!r}")
    with _lock:
        _registered[id(obj)] = (obj, close)
    return obj


def register_type(cls: type | str, close: Callable[[Any], Any]) -> None:
    """Teach modpy_safe a kind of resource: every instance of ``cls`` is closed with ``close(obj)``.

    ``cls`` is a class, or its dotted name (``"redis.client.Redis"``) so the
    library need not be imported to name it. Subclasses count too. A later
    call for the same class replaces the closer.
    """
    if isinstance(cls, type):
        key = (cls.__module__, cls.__qualname__)
    elif isinstance(cls, str) and "." in cls.strip(".") and not cls.endswith("."):
        module, _, qualname = cls.rpartition(".")
        key = (module, qualname)
    else:
        raise TypeError(f"modpy_safe.register_type(): cls must be a class or a dotted name "
                        f"such as 'redis.client.Redis', not {cls!r}")
    if not callable(close):
        raise TypeError(f"modpy_safe.register_type(): close must be callable, not {close!r}")

    def closer(obj: Any) -> bool:
        close(obj)
        return True

    with _lock:
        _user_types[key] = Kind(f"{key[0]}.{key[1]}", closer)
        _by_type.clear()  # an earlier answer for this type may be wrong now


def kind_of_type(cls: type) -> Kind | None:
    """Return the kind every instance of ``cls`` has (registration by object aside)."""
    try:
        return _by_type[cls]
    except (KeyError, TypeError):
        pass
    found: Kind | None = None
    try:
        if callable(getattr(cls, "__modpy_safe_close__", None)):
            found = _HOOK
        else:
            for klass in cls.__mro__:
                key = (getattr(klass, "__module__", ""), getattr(klass, "__qualname__", ""))
                found = _user_types.get(key) or _KNOWN.get(key)
                if found is not None:
                    break
            if found is None and all(callable(getattr(cls, name, None))
                                     for name in ("cursor", "commit", "rollback", "close")):
                found = _DBAPI
    except Exception:  # a metaclass whose attribute access raises is not a resource type
        found = None
    try:
        _by_type[cls] = found
    except TypeError:
        pass
    return found


def classify(obj: Any) -> Kind | None:
    """Return the kind of resource ``obj`` is, or None when it is not one.

    Classes and modules are never resources (a class may well have a ``cursor``
    method); the caller keeps them out.
    """
    entry = _registered.get(id(obj))
    if entry is not None and entry[0] is obj:
        return _REGISTERED
    return kind_of_type(type(obj))


def _close_registered(obj: Any) -> bool:
    entry = _registered.get(id(obj))
    if entry is None or entry[0] is not obj:
        return False  # closed already
    with _lock:
        _registered.pop(id(obj), None)
    entry[1]()
    return True


_REGISTERED = Kind("registered object", _close_registered)


def close(obj: Any, kind: Kind | None = None) -> bool:
    """Release one resource; return True when it was open and is closed now.

    A registered object is forgotten once closed. Failures propagate: the
    caller logs them and goes on.
    """
    kind = kind or classify(obj)
    if kind is None:
        return False
    if kind is not _REGISTERED and id(obj) in _registered and _registered[id(obj)][0] is obj:
        with _lock:  # closed its own way: the registration has served
            _registered.pop(id(obj), None)
    return kind.closer(obj)


def registered() -> list[Any]:
    """Return every object registered and not closed yet."""
    return [obj for obj, _ in list(_registered.values())]


_CURSORS = frozenset({("psycopg2.extensions", "cursor"), ("sqlite3", "Cursor"),
                      ("psycopg.cursor", "BaseCursor"), ("psycopg", "Cursor")})


def is_cursor_type(cls: type) -> bool:
    """Return True when instances of ``cls`` are DB-API cursors (whose connection matters)."""
    try:
        if any((getattr(k, "__module__", ""), getattr(k, "__qualname__", "")) in _CURSORS
               for k in cls.__mro__):
            return True
        return all(callable(getattr(cls, name, None)) for name in ("execute", "fetchone", "close"))
    except Exception:
        return False


def registered_ids() -> dict[int, tuple[Any, Callable[[], Any]]]:
    """Return the registry of objects given to :func:`register`, by ``id`` (read only)."""
    return _registered


def describe(obj: Any, kind: Kind | None = None) -> str:
    """Return what ``obj`` is for a log line: its kind and its type's dotted name."""
    kind = kind or classify(obj)
    cls = type(obj)
    dotted = f"{cls.__module__}.{cls.__qualname__}"
    if kind is None:
        return dotted
    return kind.name if kind.name == dotted else f"{kind.name} ({dotted})"
