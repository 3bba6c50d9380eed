"""The publisher's rules: URL → page file, traversal, security, arguments, results.

These follow mod_python.publisher (its source, documentation and test suite)
and are kept free of mod_python so they can be tested in plain Python:

* :func:`locate` maps ``req.filename`` + ``req.path_info`` to a ``.py`` file
  and the dotted path of the object to publish in it.
* :func:`resolve` walks that path with getattr, applying the security rules and
  the ``__auth__`` protocol of every object met.
* :func:`call` calls the object with form fields bound to its parameters.
* ``web/output.py`` (:func:`~modpy_safe.web.output.write`) sends the result:
  text, bytes, or an iterable piece by piece.

Work that depends only on a function (its parameters) is done once per function
object and cached, so the per-request path stays short.
"""
from __future__ import annotations

import inspect
import os
import re
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from .._apache import Request
from .._errors import HTTPError
from ..reload import resources as _resources
from . import auth as _auth
from . import forms as _forms

__all__ = [
    "Page", "locate", "locate_cached", "forget", "resolve", "traversable", "publishable", "call",
    "LazyForm", "publish", "plain_page", "after_call", "serve_page",
]


# ------------------------------------------------------------------ URL mapping


class Page(NamedTuple):
    """Where a request leads: the page file and the attribute names to traverse."""

    path: str
    parts: tuple[str, ...]


_suffix_res: dict[tuple[str, ...], re.Pattern[str]] = {}


def _suffix_re(suffixes: tuple[str, ...]) -> re.Pattern[str]:
    found = _suffix_res.get(suffixes)
    if found is None:
        alternatives = "|".join(re.escape("." + s.lstrip(".")) + "$" for s in suffixes if s)
        found = _suffix_res[suffixes] = re.compile(alternatives)
    return found


def locate(filename: str, path_info: str | None, suffixes: tuple[str, ...] = ()) -> Page:
    """Return the page file and object path for a request, as mod_python.publisher maps them.

    ``filename`` is what Apache mapped the URL to (a trailing ``/`` for a
    directory), ``path_info`` the rest of the URL, ``suffixes`` the extensions
    that select this handler (``.py`` is always one). ``/dir/`` serves
    ``dir/index.py``; ``/dir/name/rest`` serves ``dir/name.py`` when it exists,
    else ``dir/index.py`` with ``name`` put in front of the object path; 404
    when neither exists. An empty object path means ``index``.
    """
    directory, module_name = os.path.split(filename)
    if not module_name:
        module_name = "index"
    module_name = _suffix_re(("py", *suffixes)).sub("", module_name, count=1)
    func_path = ""
    if path_info:
        func_path = path_info[1:]
        if func_path.endswith("/"):
            func_path = func_path[:-1]
    path = os.path.join(directory, module_name + ".py")
    if not os.path.isfile(path):
        func_path = f"{module_name}/{func_path}" if func_path else module_name
        path = os.path.join(directory, "index.py")
        if not os.path.isfile(path):
            raise HTTPError(404, "no page here")
    # Slashes and dots both separate attribute names, as in mod_python.
    parts = tuple((func_path or "index").replace("/", ".").split("."))
    return Page(os.path.normpath(path), parts)


# Positive answers of locate(), reused for a short while: the mapping costs a
# stat and some string work on every request, and a page file that appears or
# disappears is noticed within the same interval as an edited one.
_located: dict[tuple[str, str | None, tuple[str, ...]], tuple[Page, float]] = {}
_LOCATED_LIMIT = 4096


def locate_cached(filename: str, path_info: str | None, suffixes: tuple[str, ...],
                  *, now: float, ttl: float) -> Page:
    """Return :func:`locate`'s answer, reusing one found less than ``ttl`` seconds ago."""
    key = (filename, path_info, suffixes)
    found = _located.get(key)
    if found is not None and now < found[1]:
        return found[0]
    page = locate(filename, path_info, suffixes)
    if ttl > 0:
        if len(_located) >= _LOCATED_LIMIT:
            _located.clear()  # URLs are client-chosen: keep the table bounded
        _located[key] = (page, now + ttl)
    return page


def forget(page: Page) -> None:
    """Drop cached answers that lead to ``page`` (its file turned out to be gone)."""
    for key, (cached, _) in list(_located.items()):
        if cached.path == page.path:
            _located.pop(key, None)


# -------------------------------------------------------------------- traversal

# Types of the interpreter's own objects (functions, methods, code, frames...):
# mod_python lets none of them be traversed, so /page.py/index/__code__ and
# /page.py/obj/method/__globals__ are refused even without the underscore rule.
_BUILTIN_TYPES = frozenset(t for t in vars(types).values() if isinstance(t, type))
# Never published: modules, classes (any metaclass), built-in functions and
# bound built-in methods such as {}.keys or (1).__add__.
_UNPUBLISHABLE = (
    types.ModuleType,
    type,
    types.BuiltinFunctionType,
    types.MethodWrapperType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)


def traversable(obj: Any) -> bool:
    """Return True when the attributes of ``obj`` may be reached from a URL."""
    return (type(obj) not in _BUILTIN_TYPES and not isinstance(obj, _UNPUBLISHABLE)
            and not _resources.is_resource(obj))


def publishable(obj: Any) -> bool:
    """Return True when ``obj`` may be the object a URL publishes.

    Never what holds a connection (a ``modpy_safe.Database``, a DB-API
    connection, a pool, a registered object): a page's module-level ``db``
    would otherwise answer ``GET /page.py/db/close`` by closing it, and
    ``/page.py/db/describe`` with where the database is.
    """
    return not isinstance(obj, _UNPUBLISHABLE) and not _resources.is_resource(obj)


def resolve(req: Request, module: Any, parts: tuple[str, ...]) -> Any:
    """Walk ``parts`` from ``module``; return the object to publish or raise 403/404.

    The auth protocol is applied to the module and to every object reached, in
    order, so an object deeper down can narrow (never widen) what is required.
    """
    if len(parts) == 1:
        plain = _plain_function(module, parts[0])
        if plain is not None:
            return plain
    state = _auth.check(req, module, None)
    obj = module
    for i, part in enumerate(parts):
        if not part:
            # '/page.py/index.' or '/page.py/.x': mod_python fails with IndexError (500).
            raise HTTPError(404, "empty name in the object path")
        if part[0] == "_":
            raise HTTPError(403, f"{part!r} starts with an underscore and is never published")
        if i and not traversable(obj):
            raise HTTPError(403, f"cannot traverse into {type(obj).__name__!r} objects")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HTTPError(404, "no such object") from None
        state = _auth.check(req, obj, state)
    if not publishable(obj):
        raise HTTPError(403, f"{type(obj).__name__!r} objects are never published")
    return obj


def _plain_function(module: Any, name: str) -> Any:
    """The common case in a few dict lookups: an unprotected function of an unprotected page.

    Returns None whenever anything needs the full walk (a protection anywhere,
    an underscore, anything but a plain function), which then decides.
    """
    attrs = getattr(module, "__dict__", None)
    if (type(module) is not types.ModuleType or attrs is None or not name or name[0] == "_"
            or "__auth__" in attrs or "__access__" in attrs or "__auth_realm__" in attrs):
        return None
    obj = attrs.get(name)
    if type(obj) is not types.FunctionType or obj.__dict__ or _auth.nests_protection(obj):
        return None
    return obj


_UNSEEN: Any = object()
# Per function that nests no protection in its code: its Plan (None: it does).
_plain_plans: "weakref.WeakKeyDictionary[types.FunctionType, Plan | None]" = (
    weakref.WeakKeyDictionary()
)


def plain_page(module: Any, parts: tuple[str, ...]) -> tuple[Callable[..., Any], Plan] | None:
    """:func:`resolve` and :func:`plan_for` in one step for the common case.

    Returns the function and its plan when ``parts`` names an unprotected plain
    function of an unprotected page (what :func:`_plain_function` accepts),
    else None: the caller then takes the full walk, which decides.
    """
    if len(parts) != 1:
        return None
    name = parts[0]
    attrs = getattr(module, "__dict__", None)
    if (type(module) is not types.ModuleType or attrs is None or not name or name[0] == "_"
            or "__auth__" in attrs or "__access__" in attrs or "__auth_realm__" in attrs):
        return None
    obj = attrs.get(name)
    if type(obj) is not types.FunctionType or obj.__dict__:
        return None
    plan = _plain_plans.get(obj, _UNSEEN)
    if plan is _UNSEEN:
        plan = None if _auth.nests_protection(obj) else _cached(_plans, obj, False)
        _plain_plans[obj] = plan
    if plan is None:
        return None
    return obj, plan


# -------------------------------------------------------------------- arguments


def serve_page(req: Request, module: Any, parts: tuple[str, ...]) -> Any:
    """Find, check and call the object ``parts`` names in ``module``; return its result.

    An unprotected plain page function (the common case) is called with its
    arguments worked out once per function; anything else goes through
    :func:`resolve` and :func:`publish`, with their access checks.
    """
    plain = plain_page(module, parts)
    if plain is None:
        return publish(resolve(req, module, parts), req)
    return call_plain(req, *plain)


def call_plain(req: Request, func: Callable[..., Any], plan: Plan) -> Any:
    """Call a page function :func:`plain_page` accepted, with its ``plan``; return its result."""
    if plan.names or plan.var_kw:
        result = call(func, req)
    else:
        req.form = LazyForm(req)
        result = func(req=req) if plan.req else func()
    return result if type(result) is str else after_call(result, req)


class Plan(NamedTuple):
    """How to call one function: which fields it takes, which it must have."""

    names: tuple[str, ...]  # parameters a form field may fill (not 'req')
    required: tuple[str, ...]  # of those, the ones without a default
    req: bool  # pass the request (a parameter named 'req', or **kwargs)
    var_kw: bool  # takes **kwargs: every field goes in


_plans: "weakref.WeakKeyDictionary[Any, Plan]" = weakref.WeakKeyDictionary()
_method_plans: "weakref.WeakKeyDictionary[Any, Plan]" = weakref.WeakKeyDictionary()
_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _make_plan(func: Callable[..., Any], *, skip_first: bool) -> Plan:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # no signature (some C callables): call with nothing
        return Plan((), (), False, False)
    if skip_first and params and params[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
    ):
        params = params[1:]
    keyword = [p for p in params if p.kind in _KEYWORD]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    names = tuple(p.name for p in keyword if p.name != "req")
    required = tuple(p.name for p in keyword if p.name != "req" and p.default is p.empty)
    wants_req = var_kw or any(p.name == "req" for p in keyword)
    return Plan(names, required, wants_req, var_kw)


def _cached(cache: "weakref.WeakKeyDictionary[Any, Plan]", func: Any, skip_first: bool) -> Plan:
    plan = cache.get(func)
    if plan is None:
        plan = cache[func] = _make_plan(func, skip_first=skip_first)
    return plan


def plan_for(obj: Any) -> tuple[Callable[..., Any], Plan]:
    """Return what to call for ``obj`` and how, caching per function object."""
    if isinstance(obj, types.FunctionType):
        return obj, _cached(_plans, obj, False)
    if isinstance(obj, types.MethodType) and isinstance(obj.__func__, types.FunctionType):
        return obj, _cached(_method_plans, obj.__func__, True)
    # Looked up on the class without binding: getattr(cls, "__call__") would
    # find type.__call__, since every class is callable.
    dunder = next((k.__dict__["__call__"] for k in type(obj).__mro__ if "__call__" in k.__dict__),
                  None)
    if isinstance(dunder, types.FunctionType):
        return obj, _cached(_method_plans, dunder, True)
    if dunder is None:
        # An instance given a __call__ attribute of its own: mod_python calls
        # that ("abuse of objects to create hierarchy", its tests rely on it).
        own = getattr(obj, "__call__", None)  # noqa: B004 - the instance attribute is meant
        if own is not None and own is not obj and callable(own):
            return plan_for(own)
    return obj, _make_plan(obj, skip_first=False)


class LazyForm:
    """``req.form`` for a function that takes no form fields: parsed on first use.

    mod_python parses the form before every call; doing it only when a page
    looks at ``req.form`` keeps the common request short and leaves a body of
    another type (JSON, say) for the page to read.
    """

    __slots__ = ("_req", "_form")

    def __init__(self, req: Request) -> None:
        self._req = req
        self._form: _forms.FormData | None = None

    def _parsed(self) -> _forms.FormData:
        if self._form is None:
            self._form = _forms.parse(self._req)
        return self._form

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parsed(), name)

    def __getitem__(self, name: str) -> Any:
        return self._parsed()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._parsed()

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __bool__(self) -> bool:
        return bool(self._parsed())

    def __repr__(self) -> str:
        return repr(self._parsed())


#: How many times a callable result may itself return a callable.
MAX_CALL_DEPTH = 16


def publish(obj: Any, req: Request) -> Any:
    """Return the result of publishing ``obj``: calling it while it is callable.

    As in mod_python, a callable result is called in turn, with the same
    fields bound to its own parameters; a class, module or built-in among the
    results is refused as it would be on the URL.
    """
    return _keep_calling(obj, req, MAX_CALL_DEPTH)


def after_call(result: Any, req: Request) -> Any:
    """Go on as :func:`publish` does with what its first call returned."""
    if type(result) is not str and not publishable(result):
        raise HTTPError(403, f"{type(result).__name__!r} objects are never published")
    return _keep_calling(result, req, MAX_CALL_DEPTH - 1)


def _keep_calling(obj: Any, req: Request, calls: int) -> Any:
    for _ in range(calls):
        if not is_callable(obj):
            return obj
        obj = call(obj, req)
        if type(obj) is not str and not publishable(obj):
            raise HTTPError(403, f"{type(obj).__name__!r} objects are never published")
    raise RuntimeError(f"publishing returned callables {MAX_CALL_DEPTH} times in a row; "
                       "return a result (str, bytes, an iterable) instead of a callable")


def is_callable(obj: Any) -> bool:
    """Return True when publishing ``obj`` means calling it (mod_python's rule)."""
    # callable() looks at the type only; mod_python also calls an instance __call__.
    return callable(obj) or callable(getattr(obj, "__call__", None))  # noqa: B004


def call(obj: Any, req: Request) -> Any:
    """Call ``obj`` with the form fields its parameters name; 400 when one is missing.

    Fields come from :func:`modpy_safe.web.forms.parse`: a repeated field as a
    list, an upload as its Field object. ``req`` goes to a parameter named
    ``req`` and, as in mod_python, into ``**kwargs``. ``req.form`` is set as
    mod_python sets it; for a function that takes no fields it is parsed only
    if the page looks at it.
    """
    func, plan = plan_for(obj)
    kwargs: dict[str, Any] = {}
    if plan.names or plan.var_kw:
        form = req.form = _forms.parse(req)
        if plan.var_kw:
            kwargs.update(form.to_dict())
        else:
            for name in plan.names:
                if name in form:
                    kwargs[name] = form[name]
        for name in plan.required:
            if name not in kwargs:
                raise HTTPError(400, f"the form field {name!r} is required")
    else:
        req.form = LazyForm(req)
    if plan.req:
        kwargs["req"] = req
    return func(**kwargs)
