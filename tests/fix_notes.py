"""The example notes board (handlers/) served by a real httpd, for the app, browser and docs tests.

:func:`notes_site` starts the site exactly as ``make run`` configures it (the
config comes from ``apache/serve.py``'s ``site_config``), but on a copy of
``handlers/`` (so a test may edit files without touching the checkout) and
with a fresh database (so the schema is created by the site's first requests).
"""
from __future__ import annotations

import contextlib
import http.client
import importlib.util
import secrets
import shutil
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

from modpy_safe.testing import CHECKOUT, Httpd, PostgresServer, Response, make_tempdir


def load_serve() -> ModuleType:
    """Import ``apache/serve.py`` (a script, not a package module)."""
    path = CHECKOUT / "apache" / "serve.py"
    spec = importlib.util.spec_from_file_location("modpy_safe_serve", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NotesSite:
    """A running notes board: its httpd, its database and how to reach both."""

    def __init__(self, httpd: Httpd, postgres: PostgresServer, dbname: str, app_name: str) -> None:
        self.httpd = httpd
        self.postgres = postgres
        self.dbname = dbname
        self.app_name = app_name

    def connections(self) -> int:
        """Count the site's connections to PostgreSQL (by its application_name)."""
        return self.postgres.count_connections(self.app_name)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` in the site's database as superuser and return the rows."""
        return self.postgres.admin_execute(sql, params, dbname=self.dbname)

    def expect(self, resp: Response, status: int) -> Response:
        """Assert ``resp`` has ``status``; the message shows the body and httpd's log."""
        return expect(resp, status, self.httpd)

    def session(self) -> "Session":
        """A keep-alive HTTP connection: every request goes to the same httpd child."""
        return Session(self.httpd.port)


class Session:
    """One persistent HTTP/1.1 connection to the site.

    Under prefork each child serves one connection at a time, so every request
    sent on a Session is answered by the same process: the status page it
    shows is the process that served the other requests.
    """

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: Mapping[str, str] | None = None) -> Response:
        data = body.encode() if isinstance(body, str) else body
        self.conn.request(method, path, body=data, headers=dict(headers or {}))
        resp = self.conn.getresponse()
        payload = resp.read()
        pairs = list(resp.getheaders())
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()  # http.client reconnects on the next request
        return Response(resp.status, {k.lower(): v for k, v in pairs}, payload, resp.reason, pairs)

    def get(self, path: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post_form(self, path: str, fields: Mapping[str, str]) -> Response:
        return self.request("POST", path, urlencode(fields),
                            {"Content-Type": "application/x-www-form-urlencoded"})

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def expect(resp: Response, status: int, httpd: Httpd | None = None) -> Response:
    """Assert ``resp`` has ``status``; the message shows the body (and httpd's log)."""
    if resp.status != status:
        log = httpd.log_tail(30) if httpd is not None else ""
        raise AssertionError(f"expected {status}, got {resp.status} {resp.reason}: "
                             f"{resp.text[:800]}\n{log}")
    return resp


def copy_handlers(docroot: Path) -> None:
    """Copy the example application's files into ``docroot`` (readable by httpd)."""
    docroot.mkdir(parents=True, exist_ok=True)
    for source in sorted((CHECKOUT / "handlers").glob("*.py")):
        target = docroot / source.name
        shutil.copyfile(source, target)
        target.chmod(0o644)


@contextlib.contextmanager
def notes_site(postgres: PostgresServer, mpm: str, request: Any = None,
               **httpd_args: Any) -> Iterator[NotesSite]:
    """Serve the notes board under ``mpm`` with a fresh database; stop and drop it after.

    httpd's error log is printed (and its directory kept) when the block raises or,
    given the fixture's pytest ``request``, when a test failed while it ran.
    """
    serve = load_serve()
    tag = f"{mpm}_{secrets.token_hex(3)}"
    dbname, app_name = f"notes_{tag}", f"notes-test-{tag}"
    postgres.admin_execute(f"CREATE DATABASE {dbname} OWNER {postgres.role}")
    root = make_tempdir(f"modpy_safe-notes-{mpm}-")
    docroot = root / "handlers"
    copy_handlers(docroot)
    dsn = (f"host=127.0.0.1 port={postgres.port} dbname={dbname} user={postgres.role} "
           f"password={postgres.password} application_name={app_name}")
    directory, options, extra = serve.site_config(docroot, dsn)
    httpd = Httpd(root / "httpd", mpm=mpm, docroot=docroot, directory=directory, preload=False,
                  options=options, extra=extra, debug=True, purpose=f"the notes board ({mpm})",
                  **httpd_args)
    failed_before = request.session.testsfailed if request is not None else 0
    failed = False
    try:
        httpd.start()
        yield NotesSite(httpd, postgres, dbname, app_name)
    except BaseException:
        failed = True
        raise
    finally:
        httpd.stop()
        if request is not None and request.session.testsfailed > failed_before:
            failed = True
        if failed:
            sys.stderr.write(f"\n{httpd.log_tail(80)}\n")
        _drop_database(postgres, dbname)
        if not failed:
            shutil.rmtree(root, ignore_errors=True)


def _drop_database(postgres: PostgresServer, dbname: str) -> None:
    # httpd has stopped, so its connections are closing; FORCE ends any straggler.
    for _ in range(50):
        try:
            postgres.admin_execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            return
        except Exception:  # the database may still be in use for a moment
            time.sleep(0.1)
    postgres.admin_execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


__all__ = ["NotesSite", "Session", "notes_site", "load_serve", "copy_handlers", "expect"]
