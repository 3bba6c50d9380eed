"""Which records reach Apache and at which level (plain Python, a stand-in for mod_python).

The handler is logging's last resort: records no handler of the application
takes go to Apache, and an application's own configuration keeps its records.
"""
from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from modpy_safe.ops import logs


class Apache:
    """What the handler uses of ``mod_python.apache``: log_error and main_server."""

    main_server = object()

    def __init__(self) -> None:
        self.lines: list[tuple[str, int]] = []

    def log_error(self, line: str, level: int, server: object) -> None:
        assert server is self.main_server
        self.lines.append((line, level))


@pytest.fixture
def apache() -> Iterator[Apache]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    fake = Apache()
    logs.install(fake, 6)  # LogLevel info
    try:
        yield fake
    finally:
        logs.uninstall()
        root.setLevel(level)


def test_levels_map_both_ways() -> None:
    assert [logs.python_level(n) for n in (2, 3, 4, 5, 6, 7, 8, 15)] == [
        logging.CRITICAL, logging.ERROR, logging.WARNING, logging.WARNING, logging.INFO,
        logging.DEBUG, logging.DEBUG, logging.DEBUG]
    assert [logs.apache_level(n) for n in (logging.DEBUG, logging.INFO, logging.WARNING,
                                           logging.ERROR, logging.CRITICAL)] == [7, 6, 4, 3, 2]


# pytest's log capture puts a handler on the root logger: these loggers do not
# propagate to it, so what they log meets no handler, as in httpd.
def _alone(name: str) -> logging.Logger:
    log = logging.getLogger(name)
    log.propagate = False
    return log


def test_unhandled_records_reach_apache_at_its_level(apache: Apache) -> None:
    log = _alone("myapp.test")
    log.info("hello %s", "there")
    log.debug("not at LogLevel info")
    log.error("two\nlines")
    assert apache.lines == [("myapp.test: hello there", 6), ("myapp.test: two", 3),
                            ("lines", 3)]


def test_an_applications_own_configuration_is_kept(apache: Apache) -> None:
    stream = io.StringIO()
    own = _alone("myapp.own")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    own.addHandler(handler)
    own.warning("to my stream")
    assert stream.getvalue() == "myapp.own to my stream\n"
    assert apache.lines == []
