"""``modpy_safe.Handler``: one class per resource, one method per HTTP method.

The dispatcher makes one instance per request and calls the method named after
the request's method. Which methods a class answers is worked out once, when the
class is created (``__init_subclass__``), so a request costs one dict lookup and
one call, and the ``Allow`` header is a ready-made string.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from .._apache import Request
from .._errors import HTTPError
from . import forms as _forms

__all__ = ["Handler", "run", "is_handler_class"]

# The methods a subclass may define, in the order the Allow header lists them.
_VERBS = ("get", "head", "post", "put", "patch", "delete")


class _Lazy:
    """A non-data descriptor that computes a value on first access, then caches it.

    ``functools.cached_property`` takes a lock shared by all instances on
    Python < 3.12; a request object is never shared between threads, so this
    one does without.
    """

    def __init__(self, compute: Callable[[Any], Any]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.compute(obj)
        return value


class Handler:
    """Base class of request handlers: subclass it and define ``get``, ``post``, ...

    ``PythonOption modpy_safe.handler notes.py::Notes`` (or a file whose
    ``handler`` is the class) makes the dispatcher create one instance per
    request and call the method for the request's method, without arguments.
    A method returns what a function handler returns (``str``, ``bytes``,
    ``dict``/``list`` for JSON, an iterable, an ``int`` status, or ``None``
    after ``self.req.write``) or raises :class:`~modpy_safe.HTTPError`.

    ``HEAD`` runs ``head`` when defined, else ``get`` (Apache sends no body for
    HEAD); ``OPTIONS`` answers with ``Allow``; any other method gets 405 with
    ``Allow``.

    Attributes: ``req`` (the mod_python request), ``path_info`` (the path
    after the handler file, ``""`` when none), ``args`` (query string and form
    fields as :class:`~modpy_safe.web.forms.FormData`, parsed on first use).
    """

    __module__ = "modpy_safe"

    #: HTTP method → name of the method that serves it (set per subclass).
    routes: ClassVar[dict[str, str]] = {}
    #: The value of the ``Allow`` header for this class (set per subclass).
    allow: ClassVar[str] = "OPTIONS"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        routes: dict[str, str] = {}
        for verb in _VERBS:
            if callable(getattr(cls, verb, None)):
                routes[verb.upper()] = verb
            elif verb == "head" and "GET" in routes:
                routes["HEAD"] = "get"  # Apache drops the body of a HEAD response
        routes["OPTIONS"] = "options"
        cls.routes = routes
        cls.allow = ", ".join(routes)

    def __init__(self, req: Request) -> None:
        self.req = req
        self.path_info: str = req.path_info or ""

    @_Lazy
    def args(self) -> _forms.FormData:
        """The query-string and form fields (the body is read on first access)."""
        return _forms.parse(self.req)

    def options(self) -> str:
        """Answer ``OPTIONS`` with the ``Allow`` header and an empty body."""
        self.req.headers_out["Allow"] = self.allow
        return ""


def is_handler_class(obj: object) -> bool:
    """Return True when ``obj`` is a subclass of :class:`Handler`."""
    return isinstance(obj, type) and issubclass(obj, Handler)


def run(cls: type[Handler], req: Request) -> Any:
    """Create ``cls(req)`` and call the method for ``req.method``; 405 when there is none."""
    name = cls.routes.get(req.method)
    if name is None:
        raise HTTPError(
            405,
            f"{req.method} is not allowed here; allowed: {cls.allow}.",
            headers={"Allow": cls.allow},
        )
    return getattr(cls(req), name)()
