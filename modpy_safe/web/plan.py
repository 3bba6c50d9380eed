"""One plan per configuration: how the dispatcher and the publisher serve a request.

A configuration is one distinct set of ``PythonOption`` values (one
:class:`~modpy_safe._options.Options`) in one section directory. The first
request of a configuration builds its plan, which settles everything the
configuration fixes: the target named by ``modpy_safe.handler`` and the
importer's entry for its file, the reload interval and directories. The plan
is kept in ``options.plans``, so it lives exactly as long as its configuration
and needs no cache of its own. Every later request is the plan's ``serve``:
acquire the module (reloading it when it changed), find the callable, call it
through :mod:`~modpy_safe.web.response` or :mod:`~modpy_safe.web.publish`.

The request scope, its lease and the error answer are the entry points' part
(``dispatch.py``, ``publisher.py``): the plan never writes an error itself.
"""
from __future__ import annotations

import os
import time
import types
from typing import Any

from .. import _apache
from .._apache import Request
from .._context import RequestScope
from .._errors import HTTPError
from .._options import RELOAD_INTERVAL, Options
from ..reload import importer
from ..reload.path import root_of, search_path
from . import output, publish, response, routing

__all__ = ["Plan", "FixedPlan", "UrlPlan", "PublisherPlan", "dispatch_plan", "publisher_plan"]

_NOT_FOUND = "There is no page at this address."


class Plan:
    """What a configuration fixes for all its requests, and how to serve one."""

    __slots__ = ("options", "interval", "extra")

    def __init__(self, options: Options, root: str | None = None) -> None:
        self.options = options
        self.interval: float = options.value(RELOAD_INTERVAL)
        # reload.path and mod_python.importer.path, '~/' meaning the handler root.
        self.extra: tuple[str, ...] = search_path(options, root)

    def acquire(self, entry: Any, scope: RequestScope, autoreload: bool) -> types.ModuleType:
        """Return the current version of ``entry``'s file, leased until the request ends.

        A handler file that does not exist is a 404; errors inside it arrive
        as :class:`~modpy_safe.ImportFailed`.
        """
        try:
            return importer.acquire_entry(entry, scope, self.interval, self.extra,
                                          autoreload=autoreload)
        except FileNotFoundError:
            raise HTTPError(404, _NOT_FOUND) from None

    def serve(self, req: Request, scope: RequestScope, autoreload: bool) -> int:
        """Answer one request; return the status for mod_python."""
        raise NotImplementedError


class FixedPlan(Plan):
    """``PythonOption modpy_safe.handler``: one file and callable for the whole section."""

    __slots__ = ("target", "entry")

    def __init__(self, options: Options, directory: str | None, root: str | None) -> None:
        super().__init__(options, root)
        self.target = routing.fixed_target(options, directory)
        self.entry = importer.entry_for(self.target.path)

    def serve(self, req: Request, scope: RequestScope, autoreload: bool) -> int:
        try:
            module = importer.acquire_entry(self.entry, scope, self.interval, self.extra,
                                            autoreload=autoreload)
        except FileNotFoundError:
            # 404 as for a page the URL names, but the configuration is what names the
            # missing file: the log says which option, section and path.
            raise routing.MissingHandlerFile(routing.OPTION, _apache.section_name(req),
                                             self.target.path) from None
        return response.call(req, routing.find(module, self.target))


class UrlPlan(Plan):
    """No ``modpy_safe.handler``: the request's own file decides (see ``routing``)."""

    __slots__ = ()

    def serve(self, req: Request, scope: RequestScope, autoreload: bool) -> int:
        target = routing.resolve_by_url(req)
        if target is None:
            return response.DECLINED  # a static file: Apache serves it
        module = self.acquire(importer.entry_for(target.path), scope, autoreload)
        return response.call(req, routing.find(module, target))


class PublisherPlan(Plan):
    """``PythonHandler modpy_safe.publisher``: URLs map to page files and objects in them."""

    __slots__ = ("suffixes",)

    METHODS = ("GET", "POST", "HEAD")
    _ALLOW = {"Allow": ", ".join(METHODS)}

    def __init__(self, options: Options) -> None:
        super().__init__(options)
        # (AddHandler extensions, handler extension) -> the suffixes a URL may carry.
        self.suffixes: dict[tuple[str, str], tuple[str, ...]] = {}

    def _suffixes_of(self, req: Request) -> tuple[str, ...]:
        key = _apache.handler_suffixes(req)
        found = self.suffixes.get(key)
        if found is None:
            exts, extension = key
            found = tuple(s.lstrip(".") for s in (*exts.split(), extension) if s.lstrip("."))
            self.suffixes[key] = found
        return found

    def serve(self, req: Request, scope: RequestScope, autoreload: bool) -> int:
        if req.method not in self.METHODS:
            req.allow_methods(list(self.METHODS))
            raise HTTPError(405, f"{req.method} is not allowed here", headers=self._ALLOW)
        try:
            filename, path_info = req.filename or "", req.path_info
        except UnicodeDecodeError:
            # mod_python decodes these as UTF-8 on access: '/page.py/%ff' fails here.
            raise HTTPError(400, "the URL is not valid UTF-8 once percent-decoded") from None
        page = publish.locate_cached(filename, path_info, self._suffixes_of(req),
                                     now=time.monotonic(), ttl=self.interval)
        if page.path != filename:
            # Pages written for mod_python read req.filename as the page's file.
            req.filename = page.path
        try:
            module = self.acquire(importer.entry_for(page.path), scope, autoreload)
        except HTTPError:
            publish.forget(page)  # removed since locate() saw it
            raise
        output.write(req, publish.serve_page(req, module, page.parts))
        return response.OK


def dispatch_plan(req: Request, options: Options) -> Plan:
    """Return the plan of this request's configuration for ``modpy_safe.dispatch``."""
    directory = _apache.section_directory(req)
    plan: Plan | None = options.plans.get(directory)
    if plan is None:
        # Built outside any lock: two threads may both build it, and either is right.
        root = os.path.normpath(directory) if directory else root_of(req)
        built: Plan = (FixedPlan(options, directory, root) if routing.is_fixed(options)
                       else UrlPlan(options, root))
        plan = options.plans.setdefault(directory, built)
    return plan


_PUBLISHER = ("publisher",)


def publisher_plan(options: Options) -> PublisherPlan:
    """Return the plan of this configuration for ``modpy_safe.publisher``."""
    plan: PublisherPlan | None = options.plans.get(_PUBLISHER)
    if plan is None:
        plan = options.plans.setdefault(_PUBLISHER, PublisherPlan(options))
    return plan
