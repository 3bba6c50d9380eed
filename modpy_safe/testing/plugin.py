"""The pytest fixtures and hooks: ``postgres``, ``pgbouncer``, ``mpm``, ``httpd``."""
from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .base import MPMS, SetupError, make_tempdir
from .httpd import Httpd
from .pgbouncer import PgBouncer
from .postgres import PostgresServer

try:
    import pytest
except ImportError:  # used without pytest (apache/serve.py)
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
        outcome: Any = yield
        report = outcome.get_result()
        setattr(item, f"rep_{report.when}", report)

    @pytest.fixture(scope="session")
    def postgres() -> Iterator[PostgresServer]:
        """A private PostgreSQL cluster for the whole test session."""
        base = make_tempdir("modpy_safe-pg-")
        server = PostgresServer(base)
        try:
            server.init()
            server.start()
        except SetupError as exc:
            shutil.rmtree(base, ignore_errors=True)
            pytest.exit(f"modpy_safe.testing: the private PostgreSQL could not start: {exc}",
                        returncode=3)
        try:
            yield server
        finally:
            server.stop("immediate")
            shutil.rmtree(base, ignore_errors=True)

    @pytest.fixture(scope="session")
    def pgbouncer(postgres: PostgresServer) -> Iterator[PgBouncer]:
        """PgBouncer in transaction pooling mode in front of the private cluster."""
        base = make_tempdir("modpy_safe-pgbouncer-")
        bouncer = PgBouncer(base, postgres)
        try:
            bouncer.start()
        except SetupError as exc:
            shutil.rmtree(base, ignore_errors=True)
            pytest.fail(str(exc))
        try:
            yield bouncer
        finally:
            bouncer.stop()
            shutil.rmtree(base, ignore_errors=True)

    @pytest.fixture(params=MPMS)
    def mpm(request: Any) -> str:
        """Run the test once under each MPM: prefork, worker, event."""
        return str(request.param)

    @pytest.fixture
    def httpd(request: Any) -> Iterator[Callable[..., Httpd]]:
        """Factory: ``httpd(mpm=..., directory=..., files=..., options=...)`` → started Httpd."""
        servers: list[Httpd] = []
        roots: list[Path] = []

        def start(mpm: str = "prefork", *, start: bool = True, **kwargs: Any) -> Httpd:
            root = make_tempdir(f"modpy_safe-httpd-{mpm}-")
            roots.append(root)
            server = Httpd(root, mpm=mpm, **kwargs)
            servers.append(server)
            return server.start() if start else server

        try:
            yield start
        finally:
            failed = any(
                getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
                for when in ("setup", "call")
            )
            for server in servers:
                server.stop()
                if failed:
                    sys.stderr.write(f"\n{server.log_tail(80)}\n")
            if not failed:
                for root in roots:
                    shutil.rmtree(root, ignore_errors=True)

