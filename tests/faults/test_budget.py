"""The connection budget warning: it fires exactly when it should.

At a Database's first connection in each process, modpy_safe compares the worst
case -- the MPM's process limit times the connections one process may open
(1 persistent, pool_max pooled) -- with what the server accepts
(max_connections minus superuser_reserved_connections: 200 - 3 = 197 on the
test cluster) and warns once when it can be exceeded.

Proven elsewhere: worker with pool_max 250 warns once, naming PgBouncer
(test_connections_httpd ``test_budget_warning_in_the_error_log``). Here: the
boundary under prefork (MaxRequestWorkers 197 is quiet, 198 warns), event with
many processes (warns) and the same fixed by a smaller pool_max (quiet), and
the harness's small servers (quiet).
"""
from __future__ import annotations

import re
from typing import Any

import pytest

from modpy_safe.testing import PostgresServer

from .conftest import assert_no_secret, report
from .db_app import ask, serve

pytestmark = pytest.mark.httpd

WARNING = re.compile(r"database 'f' \((\w+)\) may open up to (\d+) connections "
                     r"\((\d+) processes x (\d+)\) but the server accepts (\d+)")


@pytest.mark.parametrize("mpm, limits, settings, expected", [
    pytest.param("prefork", "ServerLimit 198\nMaxRequestWorkers 198", {}, (198, 198, 1),
                 id="prefork-198-workers-warns"),
    pytest.param("prefork", "ServerLimit 197\nMaxRequestWorkers 197", {}, None,
                 id="prefork-197-workers-quiet"),
    pytest.param("prefork", "", {}, None, id="prefork-2-workers-quiet"),
    pytest.param("event", "ServerLimit 25\nMaxRequestWorkers 200", {}, (200, 25, 8),
                 id="event-25x8-warns"),
    pytest.param("event", "ServerLimit 25\nMaxRequestWorkers 200", {"pool_max": 7}, None,
                 id="event-25x8-pool_max-7-quiet"),
    pytest.param("event", "", {}, None, id="event-1x8-quiet"),
])
def test_budget_warning(driver: str, httpd: Any, postgres: PostgresServer, mpm: str, limits: str,
                        settings: dict[str, Any], expected: tuple[int, int, int] | None,
                        record_property: Any) -> None:
    app = f"fault_budget_{driver}"
    server = serve(httpd, postgres.dsn_for(app), mpm, extra=limits, **settings, driver=driver)
    for _ in range(3):  # several requests, one warning at most per process
        ask(server, "do=pid")
    found = WARNING.findall(server.error_log())
    if expected is None:
        assert found == [], found
    else:
        worst, processes, per_process = expected
        mode = "persistent" if mpm == "prefork" else "pooled"
        assert found and all(f == (mode, str(worst), str(processes), str(per_process), "197")
                             for f in found), found
        # Once per process that connected, however many requests it served.
        assert len(found) <= len(server.child_pids())
        assert "PgBouncer" in server.error_log()
    report(record_property, mpm=mpm, limits=limits.replace("\n", " ") or "harness default",
           warnings=len(found), worst=expected[0] if expected else "within budget")
    assert_no_secret(postgres, server)
