"""Find every resource a module version can reach: a bounded walk of its objects.

:func:`walk` starts at a module namespace and follows what the version's own
code keeps: instance attributes (``__dict__`` and ``__slots__``), dicts, lists,
tuples, sets and deques, every thread's value of a ``threading.local``, the
dicts of classes defined by managed code, the defaults, keyword defaults,
closure cells and attributes of functions defined by managed code, the cached
values of ``functools.lru_cache`` wrappers, bound methods, ``functools.partial``
objects, properties, and a cursor's connection. A resource (see
:mod:`.kinds`) is recorded and not entered: a pool's connections are the pool's.

It never enters a module, a class or a function of code outside the importer
(site-packages and the standard library keep their own objects), a weak
reference, a frame or a generator. ``gc.get_referents`` is used only to read
what a C object holds (a ``threading.local``'s per-thread dicts, an lru_cache's
values); nothing here asks the collector to free anything.

The walk is bounded: at most ``max_objects`` objects and ``max_items``
container slots per namespace. Slots holding atoms (str, int, …) are skipped
at C speed, so a dict of a million numbers costs a few tens of milliseconds.
When a bound is hit, :attr:`Reach.unexamined` says what was left out, per
top-level name.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import gc
import itertools
import threading
import types
import weakref
from collections.abc import Callable, Collection, Container, Mapping
from typing import Any

from . import kinds

__all__ = ["Reach", "walk", "local_dicts", "MAX_OBJECTS", "MAX_ITEMS"]

#: Objects examined per namespace before the walk stops.
MAX_OBJECTS = 50_000
#: Container slots (dict keys and values, list items…) looked at per namespace.
MAX_ITEMS = 5_000_000

# Values that never hold anything: skipped without a look.
_ATOMS = frozenset({
    type(None), bool, int, float, complex, str, bytes, bytearray, range, slice,
    type(Ellipsis), type(NotImplemented), memoryview, types.CodeType,
    weakref.ReferenceType, weakref.ProxyType, weakref.CallableProxyType,
    types.FrameType, types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType,
    types.ModuleType, types.BuiltinFunctionType, types.WrapperDescriptorType,
    types.MethodWrapperType, types.MethodDescriptorType, types.ClassMethodDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType, type(object()),
    threading.Lock().__class__, threading.RLock().__class__,
})
_SEQUENCES = (list, tuple, set, frozenset, collections.deque)
_LOCALS = (threading.local,)
_LRU = type(functools.lru_cache(maxsize=None)(lambda: None))
_CELL = types.CellType
_WEAKREF_TYPES = (weakref.ReferenceType, weakref.ProxyType, weakref.CallableProxyType)


@dataclasses.dataclass
class Reach:
    """What one walk found.

    ``resources`` maps ``id`` to ``(top-level name it was reached through,
    object, kind)``; ``unexamined`` maps a top-level name to a description of
    what was left out there when a bound was hit; ``examined`` counts objects.
    """

    resources: dict[int, tuple[str, Any, kinds.Kind]] = dataclasses.field(default_factory=dict)
    unexamined: dict[str, str] = dataclasses.field(default_factory=dict)
    examined: int = 0

    @property
    def complete(self) -> bool:
        """Return True when no bound was hit."""
        return not self.unexamined


def local_dicts(obj: Any) -> list[dict[str, Any]]:
    """Return every thread's attribute dict of a ``threading.local`` ``obj`` (any thread).

    CPython's ``_thread._local`` keeps each thread's dict as a value of an
    internal dict keyed by weak references; the pure-Python
    ``_threading_local.local`` keeps them in ``_local__impl.dicts``.
    """
    found: list[dict[str, Any]] = []
    if isinstance(obj, threading.local):
        for ref in gc.get_referents(obj):
            if type(ref) is dict and all(isinstance(k, _WEAKREF_TYPES) for k in list(ref)):
                found.extend(v for v in list(ref.values()) if type(v) is dict)
        return found
    try:
        impl = object.__getattribute__(obj, "_local__impl")
        for _thread_ref, values in list(impl.dicts.values()):
            found.append(values)
    except Exception:  # not a _threading_local.local
        pass
    return found


def _slot_descriptors(cls: type) -> tuple[Any, ...]:
    """Return the member descriptors of ``cls``'s ``__slots__``, of every base."""
    found = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            descriptor = klass.__dict__.get(name)
            if isinstance(descriptor, types.MemberDescriptorType):
                found.append(descriptor)
    return tuple(found)


def _non_atoms(items: list[Any], limit: int | None = None) -> list[Any]:
    """Return the items worth a look (at most ``limit``); atoms only cost C speed."""
    if len(items) > 16:
        if set(map(type, items)) <= _ATOMS:
            return []
        found = itertools.filterfalse(_is_atom, items)
        return list(found if limit is None else itertools.islice(found, limit))
    return [v for v in items if type(v) not in _ATOMS]


def _is_atom(value: Any, _atoms: frozenset[type] = _ATOMS) -> bool:
    return type(value) in _atoms


Expand = Callable[[Any], list[Any]]


class _Plan:
    """What the walk does with every object of one type, decided once per walk."""

    __slots__ = ("kind", "expand")

    def __init__(self, kind: kinds.Kind | None, expand: Expand | None) -> None:
        self.kind = kind
        self.expand = expand


def walk(namespace: Mapping[str, Any], managed: Container[str], *,
         max_objects: int | None = None, max_items: int | None = None,
         wanted: Collection[int] | None = None) -> Reach:
    """Return the resources reachable from a module ``namespace``.

    ``managed`` holds the module names (``__name__``) of the importer's module
    versions: only classes and functions whose module is one of them are
    entered. Dunder names of the namespace (``__builtins__``, the hooks) are
    skipped. The bounds default to :data:`MAX_OBJECTS` and :data:`MAX_ITEMS`.
    With ``wanted`` (ids of resources), the walk ends as soon as it has found
    them all: the question is then only whether they are reachable.
    """
    max_objects = MAX_OBJECTS if max_objects is None else max_objects
    max_items = MAX_ITEMS if max_items is None else max_items
    result = Reach()
    seen: dict[int, Any] = {}  # id -> object: keeps each alive, so no id is reused meanwhile
    plans: dict[type, _Plan] = {}
    registered = kinds.registered_ids()
    # Breadth first: what a module keeps near its top is examined before the
    # depths of one big structure can use up the bound.
    queue: collections.deque[tuple[Any, str]] = collections.deque()
    items = 0
    for name, value in list(namespace.items()):
        if not (name.startswith("__") and name.endswith("__")) and type(value) not in _ATOMS:
            queue.append((value, name))
    examined = 0
    missing = len(wanted) if wanted is not None else -1
    while queue and missing:
        obj, top = queue.popleft()
        key = id(obj)
        if key in seen:
            continue
        if examined >= max_objects:
            left: dict[str, int] = {top: 1}
            for _, other in queue:
                left[other] = left.get(other, 0) + 1
            for name, count in left.items():
                _note(result, name, f"{count} object(s) and what they hold "
                                    f"(limit {max_objects} objects)")
            break
        seen[key] = obj
        examined += 1
        cls = type(obj)
        if cls is dict or cls is list or cls is tuple or cls is set:
            size = len(obj) * 2 if cls is dict else len(obj)
            if items + size > max_items:
                _note(result, top, f"a {cls.__name__} of {len(obj)} item(s) "
                                   f"(limit {max_items} items)")
                continue
            items += size
            # A plain container is copied in C under the GIL: no thread changes it meanwhile.
            # More than the objects left to examine is never looked at: stop there.
            room = max_objects - examined + 1
            if cls is dict:
                children = _non_atoms(list(dict.values(obj)), room)
                children += _non_atoms(list(dict.keys(obj)), room)
            else:
                children = _non_atoms(list(obj), room)
            if len(children) >= room:
                _note(result, top, f"a {cls.__name__} of {len(obj)} item(s) holding more "
                                   f"objects than are left to examine (limit {max_objects} "
                                   f"objects)")
        else:
            if key in registered:
                kind = kinds.classify(obj)
                if kind is not None:
                    result.resources.setdefault(key, (top, obj, kind))
                    if wanted is not None and key in wanted:
                        missing -= 1
                    continue
            plan = plans.get(cls)
            if plan is None:
                try:
                    plan = _plan_for(cls, managed)
                except Exception:  # a type that will not be inspected is not entered
                    plan = _Plan(None, None)
                plans[cls] = plan
            if plan.kind is not None:
                result.resources.setdefault(key, (top, obj, plan.kind))
                if wanted is not None and key in wanted:
                    missing -= 1
                continue
            if plan.expand is None:
                continue
            try:
                children = plan.expand(obj)
            except Exception:  # an object whose attributes raise is not entered
                continue
            if items + len(children) > max_items:
                _note(result, top, f"a {cls.__name__} of {len(children)} item(s) "
                                   f"(limit {max_items} items)")
                continue
            items += len(children)
        if children:
            queue.extend(zip(children, itertools.repeat(top)))
    result.examined = examined
    return result


def _note(result: Reach, top: str, what: str) -> None:
    result.unexamined.setdefault(top, what)


def _plan_for(cls: type, managed: Container[str]) -> _Plan:
    """Decide how to treat every object of type ``cls`` (see the module doc)."""
    if issubclass(cls, type):
        return _Plan(None, lambda c: _class_children(c, managed))
    kind = kinds.kind_of_type(cls)
    if kind is not None:
        return _Plan(kind, None)
    if cls is types.FunctionType:
        return _Plan(None, lambda f: _function_children(f, managed))
    if cls is types.MethodType:
        return _Plan(None, lambda m: [m.__self__, m.__func__])
    if cls is _LRU:
        # The wrapped function, the cache dict (or the cached results) and the
        # wrapper's __dict__; the wrapper's own types are of no interest.
        return _Plan(None, lambda w: [r for r in gc.get_referents(w)
                                      if not isinstance(r, type)])
    if cls is _CELL:
        return _Plan(None, _cell_children)
    if issubclass(cls, (staticmethod, classmethod)):
        return _Plan(None, lambda d: [d.__func__])
    if issubclass(cls, property):
        return _Plan(None, lambda p: [f for f in (p.fget, p.fset, p.fdel) if f is not None])
    if kinds.is_cursor_type(cls):
        return _Plan(None, _cursor_children)
    extra: list[Expand] = []
    if issubclass(cls, functools.partial):
        extra.append(lambda p: [p.func, *p.args, *p.keywords.values()])
    if issubclass(cls, threading.local) or cls.__module__ == "_threading_local":
        extra.append(local_dicts)
    if issubclass(cls, dict):
        extra.append(lambda d: [*dict.values(d), *dict.keys(d)])
    elif issubclass(cls, _SEQUENCES):
        extra.append(list)
    slots = _slot_descriptors(cls)
    has_dict = any("__dict__" in k.__dict__ for k in cls.__mro__)

    def expand(obj: Any) -> list[Any]:
        out: list[Any] = []
        for more in extra:
            out += more(obj)
        if has_dict:
            try:
                state = object.__getattribute__(obj, "__dict__")
            except Exception:
                state = None
            if type(state) is dict:
                out += dict.values(state)
        for descriptor in slots:
            try:
                out.append(descriptor.__get__(obj, cls))
            except AttributeError:  # an unset slot
                pass
        return _non_atoms(out)

    if not extra and not slots and not has_dict:
        return _Plan(None, None)  # a C object with nothing to look at
    return _Plan(None, expand)


def _class_children(cls: type, managed: Container[str]) -> list[Any]:
    if getattr(cls, "__module__", None) not in managed:
        return []  # a library's class keeps its own attributes
    out = _non_atoms(list(cls.__dict__.values()))
    out += [b for b in cls.__bases__ if getattr(b, "__module__", None) in managed]
    return out


def _function_children(fn: types.FunctionType, managed: Container[str]) -> list[Any]:
    if fn.__globals__.get("__name__") not in managed:
        return []  # a library's function: its defaults and closures are its own
    out: list[Any] = list(fn.__defaults__ or ())
    out += (fn.__kwdefaults__ or {}).values()
    for cell in fn.__closure__ or ():
        try:
            out.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    out += fn.__dict__.values()
    return _non_atoms(out)


def _cell_children(cell: Any) -> list[Any]:
    try:
        return [cell.cell_contents]
    except ValueError:
        return []


def _cursor_children(cursor: Any) -> list[Any]:
    """A cursor: what matters is the connection it belongs to."""
    try:
        connection = cursor.connection
    except Exception:
        return []
    return [] if connection is None else [connection]
