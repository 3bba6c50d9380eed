"""The pytest fixtures and hooks: ``postgres``, ``fresh_db``, ``pgbouncer``, ``mpm``, ``httpd``.

The plugin registers its marker (``httpd``, put on every test that uses the
``httpd`` fixture), so a suite with ``--strict-markers`` or
``filterwarnings = error`` accepts it. A server directory is removed when its
tests pass; when one fails it is kept, and the failure report names it and
shows the end of its error log (see docs/testing.md).
"""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

from .base import KEPT, MPMS, SetupError, keep, make_tempdir
from .httpd import Httpd
from .pgbouncer import PgBouncer
from .postgres import FreshDatabase, PostgresServer

try:
    import pytest
except ImportError:  # used without pytest (apache/serve.py)
    pytest = None  # type: ignore[assignment]

#: The markers the plugin registers, name → description.
MARKERS = {
    "httpd": "runs a real Apache httpd with mod_python (the plugin adds it to every test "
             "that uses the httpd fixture)",
}
#: Lines of a failed test's error log shown in its report.
LOG_LINES = 60


def failure_section(servers: list[Httpd]) -> str:
    """Describe the servers of a failed test: where their directories are kept, their logs."""
    parts = []
    for server in servers:
        parts.append(f"httpd ({server.mpm}) kept in {server.root}\n"
                     f"error log: {server.error_log_path}\n"
                     f"{server.log_tail(LOG_LINES)}")
    return "\n\n".join(parts)


if pytest is not None:
    _SERVERS = pytest.StashKey[list[Httpd]]()

    def pytest_configure(config: Any) -> None:
        for name, description in MARKERS.items():
            config.addinivalue_line("markers", f"{name}: {description}")

    def pytest_collection_modifyitems(items: list[Any]) -> None:
        for item in items:
            if "httpd" in getattr(item, "fixturenames", ()):
                item.add_marker("httpd")

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
        outcome: Any = yield
        report = outcome.get_result()
        setattr(item, f"rep_{report.when}", report)
        servers = item.stash.get(_SERVERS, None)
        if report.failed and servers and report.when in ("setup", "call"):
            report.sections.append(("modpy_safe httpd", failure_section(servers)))

    def pytest_terminal_summary(terminalreporter: Any) -> None:
        if KEPT:
            terminalreporter.section("modpy_safe: server directories kept")
            terminalreporter.write_line("Kept because a test that used them failed; remove "
                                        "them when done:")
            for root in KEPT:
                terminalreporter.write_line(f"  {root}")

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

    @pytest.fixture
    def fresh_db(postgres: PostgresServer) -> Iterator[FreshDatabase]:
        """An empty database of the private cluster for this test alone, dropped after it."""
        with postgres.fresh_database() as database:
            yield database

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
        """Factory: ``httpd(mpm=..., directory=..., files=..., options=...)`` → started Httpd.

        Every server is stopped when the test ends. Its directory is removed when
        the test passed and kept, named in the failure report, when it failed.
        """
        servers: list[Httpd] = []
        request.node.stash[_SERVERS] = servers

        def start(mpm: str = "prefork", *, start: bool = True, **kwargs: Any) -> Httpd:
            root = make_tempdir(f"modpy_safe-httpd-{mpm}-")
            try:
                server = Httpd(root, mpm=mpm, **kwargs)
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
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
                    keep(server.root)
                else:
                    shutil.rmtree(server.root, ignore_errors=True)
