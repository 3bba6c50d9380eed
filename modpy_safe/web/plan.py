"""One plan per configuration: how the dispatcher and the publisher serve a request.

A configuration is what mod_python hands a request in one section: its
``PythonOption`` table, its directive table (``PythonDebug``,
``PythonAutoReload``...) and the section that named the handler. The first
request of a configuration builds its plan, which settles everything the
configuration fixes: the :class:`~modpy_safe._options.Options`, the two flags,
the target named by ``modpy_safe.handler`` and the importer's entry for its
file, the reload interval and directories. Every later request is
:func:`for_dispatch` (or :func:`for_publisher`) and the plan's ``serve``.

The key is the two tables' contents and the section's directory, read from
the request: mod_python merges the per-directory configuration into new
tables for every request, so nothing cheaper identifies one (two sections can
differ only in their options, and ``req.hlist`` is copied per request too).

``serve`` is the whole per-request path, kept here and nowhere else:

* the request is counted (``ops.counters.tick``, no Python call);
* the request's scope is *pending* (see ``_context``): a tuple in the thread's
  slot, made into a :class:`~modpy_safe._context.RequestScope` only when
  something asks for one;
* the file's instance is taken from the entry; within the reload interval that
  is one clock read. The plan remembers, per instance, the callable and how to
  call it (:class:`Site`), so a request is one identity test, one lease, one
  call. The lease is the protocol of ``reload/versions.py`` (an item appended
  to each owner's ``leases``, then ``retired`` read), written out here because
  it runs on every request; anything unusual takes ``importer.take``;
* the result is rendered by ``web/response.py`` (``None`` and ``int`` need
  nothing) or, for the publisher, ``web/publish.py`` and ``web/output.py``;
* every exception becomes the HTTP answer (``response.handle_error``).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .. import _apache
from .._apache import Request
from .._context import _local, end_pending
from .._errors import HTTPError
from .._options import RELOAD_INTERVAL, Options, options_for
from ..ops import counters
from ..reload import importer
from ..reload.path import root_of, search_path
from ..reload.versions import Entry, Instance, lease
from . import output, publish, response, routing
from .handler import Handler, run

__all__ = ["Plan", "FixedPlan", "UrlPlan", "PublisherPlan", "Site", "for_dispatch",
           "for_publisher", "entry_point", "dispatch_plans", "publisher_plans", "clear"]

_NOT_FOUND = "There is no page at this address."
_LIMIT = 1024  # plans kept; configurations are few, the bound is for safety only
_tick = counters.tick
_monotonic = time.monotonic
_release = importer.release
_lease = lease
OK = response.OK


class Site:
    """What serving one loaded version of one file needs: the callable and how to call it."""

    __slots__ = ("inst", "owners", "call", "is_handler", "target")

    def __init__(self, inst: Instance, owners: list[Any], target: routing.Target) -> None:
        self.inst = inst
        self.owners = owners  # leased with every request on inst
        self.target = target
        self.call: Any = routing.find(inst.module, target)
        self.is_handler = isinstance(self.call, type) and issubclass(self.call, Handler)


class Plan:
    """What a configuration fixes for all its requests, and how to serve one."""

    __slots__ = ("options", "interval", "extra", "debug", "autoreload")

    def __init__(self, options: Options, flags: tuple[bool, bool], root: str | None = None) -> None:
        self.options = options
        self.debug, self.autoreload = flags
        self.interval: float = options.value(RELOAD_INTERVAL)
        # reload.path and mod_python.importer.path, '~/' meaning the handler root.
        self.extra: tuple[str, ...] = search_path(options, root)

    def take(self, entry: Entry, req: Request) -> tuple[Instance, list[Any]]:
        """Return ``entry``'s current instance, leased (the slow path); 404 when its file is gone.

        Errors inside the file arrive as :class:`~modpy_safe.ImportFailed`.
        """
        try:
            return importer.take(entry, self.interval, self.extra, autoreload=self.autoreload,
                                 debug=self.debug, req=req)
        except FileNotFoundError:
            raise HTTPError(404, _NOT_FOUND) from None

    def site(self, entry: Entry, target: routing.Target, req: Request) -> Site:
        """Take ``entry``'s current instance (leased) and return its :class:`Site`."""
        inst, owners = self.take(entry, req)
        try:
            return Site(inst, owners, target)
        except BaseException:
            _release(owners)
            raise

    def serve(self, req: Request) -> int:
        """Answer one request; return the status for mod_python."""
        raise NotImplementedError

    def failed(self, req: Request, exc: Exception) -> int:
        """Answer for ``exc``, which ended the request."""
        return response.handle_error(req, exc, debug=self.debug)


class _Content(Plan):
    """The dispatcher's plans: the target's result becomes the answer (``web/response.py``)."""

    __slots__ = ("target", "entry", "last", "sites")

    def __init__(self, options: Options, flags: tuple[bool, bool], root: str | None,
                 target: routing.Target | None) -> None:
        super().__init__(options, flags, root)
        self.target = target  # None: each request's URL names its own (UrlPlan)
        self.entry = importer.entry_for(target.path) if target is not None else None
        self.last: Site | None = None  # the fixed target's site
        self.sites: dict[str, Site] = {}  # UrlPlan: file -> its last site

    def serve(self, req: Request) -> int:
        _tick()
        local = _local
        outer = local.scope
        pending = local.scope = (req, self.options, self.debug)
        owners: list[Any] | None = None
        try:
            target = self.target
            if target is not None:
                entry, site = self.entry, self.last
            else:
                target = routing.resolve_by_url(req)
                if target is None:
                    return response.DECLINED  # a static file: Apache serves it
                entry, site = importer.entry_for(target.path), self.sites.get(target.path)
            assert entry is not None
            inst = entry.instance
            if site is not None and site.inst is inst and (
                    not self.autoreload or _monotonic() - entry.checked_at < self.interval):
                owners = _lease(inst)  # None: replaced under us, take the new one below
            if owners is None:
                try:
                    site = self.site(entry, target, req)
                except HTTPError as exc:
                    if exc.status == 404 and self.target is not None:
                        # 404 as for a page the URL names, but the configuration is what
                        # names the missing file: the log says which option, section, path.
                        raise routing.MissingHandlerFile(
                            routing.OPTION, _apache.section_name(req), target.path) from None
                    raise
                owners = site.owners
                self._remember(site)
            assert site is not None
            result = run(site.call, req) if site.is_handler else site.call(req)
            if result is None:
                return OK
            if type(result) is int:
                return result
            return response.render(req, result)
        except Exception as exc:  # every failure becomes an HTTP answer
            return self.failed(req, exc)
        finally:
            if local.scope is pending:
                local.scope = outer
            else:
                end_pending(pending, outer)  # cleanups first, then our lease
            if owners is not None:
                _release(owners)

    def _remember(self, site: Site) -> None:
        if self.target is not None:
            self.last = site
            return
        sites = self.sites
        if len(sites) >= _LIMIT:
            sites.clear()
        sites[site.target.path] = site

    def failed(self, req: Request, exc: Exception) -> int:
        if isinstance(exc, UnicodeDecodeError) and _undecodable_url(req):
            exc = HTTPError(400, "The URL is not valid UTF-8 once percent-decoded.")
        return response.handle_error(req, exc, debug=self.debug)


class FixedPlan(_Content):
    """``PythonOption modpy_safe.handler``: one file and callable for the whole section."""

    __slots__ = ()

    def __init__(self, options: Options, flags: tuple[bool, bool], directory: str | None,
                 root: str | None) -> None:
        super().__init__(options, flags, root, routing.fixed_target(options, directory))


class UrlPlan(_Content):
    """No ``modpy_safe.handler``: the request's own file decides (see ``routing``)."""

    __slots__ = ()

    def __init__(self, options: Options, flags: tuple[bool, bool], root: str | None) -> None:
        super().__init__(options, flags, root, None)


def _undecodable_url(req: Request) -> bool:
    """Return True when mod_python cannot decode the request's path as UTF-8.

    mod_python decodes ``req.filename`` and ``req.path_info`` on each access and
    raises UnicodeDecodeError for ``/app.py/%ff``: the client sent a bad URL
    (400), the handler did nothing wrong (500). Checked on the error path only.
    """
    try:
        req.filename, req.path_info  # noqa: B018 - the access is the check
    except UnicodeDecodeError:
        return True
    return False


class _Route:
    """Where one URL of the publisher leads, and the page function last found there."""

    __slots__ = ("page", "entry", "expires", "version")

    def __init__(self, page: publish.Page, expires: float) -> None:
        self.page = page
        self.entry = importer.entry_for(page.path)
        self.expires = expires
        # (instance, its owners, publish.plain_page's answer for it): one tuple,
        # replaced whole, so a thread never mixes two versions' parts.
        self.version: tuple[Instance, list[Any], tuple[Any, publish.Plan] | None] | None = None


class PublisherPlan(Plan):
    """``PythonHandler modpy_safe.publisher``: URLs map to page files and objects in them."""

    __slots__ = ("routes",)

    METHODS = ("GET", "POST", "HEAD")
    _ALLOW = {"Allow": ", ".join(METHODS)}

    def __init__(self, options: Options, flags: tuple[bool, bool]) -> None:
        super().__init__(options, flags)
        # (file, path info, AddHandler extensions, handler extension) -> its route.
        self.routes: dict[tuple[str, str | None, tuple[str, str]], _Route] = {}

    def _route(self, key: tuple[str, str | None, tuple[str, str]], now: float) -> _Route:
        """Map the URL to its page (``publish.locate``); remembered for the reload interval."""
        filename, path_info, (exts, extension) = key
        suffixes = tuple(s.lstrip(".") for s in (*exts.split(), extension) if s.lstrip("."))
        route = _Route(publish.locate(filename, path_info, suffixes), now + self.interval)
        routes = self.routes
        if len(routes) >= 4 * _LIMIT:
            routes.clear()  # URLs are client-chosen: keep the table bounded
        routes[key] = route
        return route

    def serve(self, req: Request) -> int:
        _tick()
        local = _local
        outer = local.scope
        pending = local.scope = (req, self.options, self.debug)
        owners: list[Any] | None = None
        try:
            if req.method not in self.METHODS:
                req.allow_methods(list(self.METHODS))
                raise HTTPError(405, f"{req.method} is not allowed here", headers=self._ALLOW)
            try:
                filename, path_info = req.filename or "", req.path_info
            except UnicodeDecodeError:
                # mod_python decodes these as UTF-8 on access: '/page.py/%ff' fails here.
                raise HTTPError(400, "the URL is not valid UTF-8 once percent-decoded") from None
            key = (filename, path_info, _apache.handler_suffixes(req))
            route = self.routes.get(key)
            now = _monotonic()
            if route is None or now >= route.expires:
                route = self._route(key, now)
            page = route.page
            if page.path != filename:
                # Pages written for mod_python read req.filename as the page's file.
                req.filename = page.path
            entry = route.entry
            inst = entry.instance
            version = route.version
            if version is not None and version[0] is inst and (
                    not self.autoreload or now - entry.checked_at < self.interval):
                inst, _, plain = version
                owners = _lease(inst)  # None: replaced under us, take the new one below
            if owners is None:
                try:
                    inst, owners = self.take(entry, req)
                except HTTPError:
                    self.routes.pop(key, None)  # removed since locate() saw it
                    raise
                plain = publish.plain_page(inst.module, page.parts)
                route.version = (inst, owners, plain)
            assert inst is not None
            if plain is not None:
                result = publish.call_plain(req, *plain)
            else:
                result = publish.serve_page(req, inst.module, page.parts)
            output.write(req, result)
            return OK
        except Exception as exc:
            return self.failed(req, exc)
        finally:
            if local.scope is pending:
                local.scope = outer
            else:
                end_pending(pending, outer)
            if owners is not None:
                _release(owners)


# ------------------------------------------------------------------ lookup

_dispatch_plans: dict[Any, Plan] = {}
_publisher_plans: dict[Any, PublisherPlan] = {}
dispatch_plans, publisher_plans = _dispatch_plans, _publisher_plans  # for entry_point()


def _key(req: Request) -> tuple[Any, ...]:
    """Return what identifies the request's configuration (see the module docstring)."""
    hlist: Any = getattr(req, "hlist", None)
    section = (hlist.directory, hlist.is_location) if hlist is not None else (None, None)
    return (tuple(req.get_options().items()), tuple(req.get_config().items()), *section)


def for_dispatch(req: Request) -> Plan:
    """Return the plan of this request's configuration for ``modpy_safe.dispatch``."""
    key = _key(req)
    plan = _dispatch_plans.get(key)
    if plan is None:
        # Built outside any lock: two threads may both build it, and either is right.
        options, flags = _settle(req)
        directory = _apache.section_directory(req)
        root = os.path.normpath(directory) if directory else root_of(req)
        plan = (FixedPlan(options, flags, directory, root) if routing.is_fixed(options)
                else UrlPlan(options, flags, root))
        _keep(_dispatch_plans, key, plan)
    return plan


def for_publisher(req: Request) -> PublisherPlan:
    """Return the plan of this request's configuration for ``modpy_safe.publisher``."""
    key = _key(req)
    plan = _publisher_plans.get(key)
    if plan is None:
        options, flags = _settle(req)
        plan = PublisherPlan(options, flags)
        _keep(_publisher_plans, key, plan)
    return plan


def entry_point(plans: dict[Any, Any], find: Callable[[Request], Plan],
                other_phase: Callable[[Request, str], int] | None = None,
                ) -> Callable[[Request], int]:
    """Return the function mod_python calls: find the request's plan in ``plans``, serve.

    It is the module's ``handler`` itself (``dispatch.handler``,
    ``publisher.handler``), so a request is two Python calls before the
    target's: this function and the plan's ``serve``. The key is built
    inline, as :func:`_key` builds it; a miss (or a stand-in request without
    ``hlist``) goes to ``find``. ``other_phase(req, phase)`` serves the
    handler named in a phase other than ``PythonHandler``.
    """

    def handler(req: Request) -> int:
        """Serve one request (the entry point mod_python calls)."""
        if other_phase is not None:
            try:
                phase = req.phase  # type: ignore[attr-defined]
            except AttributeError:  # a stand-in request (bench, tests) may have none
                phase = "PythonHandler"
            if phase != "PythonHandler":
                return other_phase(req, phase)
        try:
            hlist: Any = req.hlist  # type: ignore[attr-defined]
            plan = plans[(tuple(req.get_options().items()), tuple(req.get_config().items()),
                          hlist.directory, hlist.is_location)]
        except (KeyError, AttributeError):
            plan = find(req)
        return plan.serve(req)  # type: ignore[no-any-return]

    return handler


def _settle(req: Request) -> tuple[Options, tuple[bool, bool]]:
    """Read what a new plan needs from the request; set up what its requests rely on."""
    _apache.install_logging()
    counters.start_publishing()
    return options_for(req.get_options()), _apache.request_flags(req)


def _keep(plans: dict[Any, Any], key: tuple[Any, ...], plan: Plan) -> None:
    if len(plans) >= _LIMIT:
        plans.clear()
    plans[key] = plan


def clear() -> None:
    """Forget every plan (tests that change what a configuration means)."""
    _dispatch_plans.clear()
    _publisher_plans.clear()
