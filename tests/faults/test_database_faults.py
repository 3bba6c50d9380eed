"""Database faults through real httpd and the private PostgreSQL.

Already proven elsewhere and not repeated here (see tests/test_connections_httpd.py):
a backend terminated between requests is replaced within the next request
(``test_survives_terminate_restart_and_outage``; here: one killed in
the middle of a request, in each mode), one slow request holding the
only connection makes one extra request time out (``test_exhaustion_...``),
a forgotten transaction is rolled back before the next request on that
connection (``test_open_transaction_is_rolled_back_...``), and ``SET ROLE`` /
``SET search_path`` disappear with ``reset=discard``
(``test_reset_discard_hides_session_state``).

prefork and event are the two MPMs whose connection handling differs
(persistent: one connection per process; pooled: a bounded pool per process);
worker behaves as event here.
"""
from __future__ import annotations

import html
import json
import threading
from typing import Any

import pytest

from modpy_safe.testing import PostgresServer

from .conftest import (
    Clients,
    active_queries,
    assert_no_secret,
    logged_for,
    poll,
    report,
)
from .db_app import ask, committed_rows, serve

pytestmark = pytest.mark.httpd

# ----------------------------------------- database down at start


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_database_down_when_httpd_starts(driver: str, httpd: Any, database_restored: PostgresServer,
                                         mpm: str, record_property: Any) -> None:
    """Modules load, requests get a clear 503, and the database coming up heals it in place."""
    postgres = database_restored
    app = f"fault_down_at_start_{mpm}_{driver}"
    postgres.stop()
    server = serve(httpd, postgres.dsn_for(app), mpm, driver=driver)
    children = set(server.child_pids())

    assert server.get("/x?do=ping").text.startswith("pong ")  # the module loaded
    down = [server.get("/x?do=pid") for _ in range(5)]
    assert {r.status for r in down} == {503}, [(r.status, r.text[:200]) for r in down]
    # The page says 503 and a reference; the reason is in the error log under it.
    text = logged_for(server, down[0].text)
    assert "Database 'f' is unavailable" in text and "Connection refused" in text, text
    assert "Traceback" not in down[0].text and "Connection refused" not in down[0].text
    status_page = server.get("/status?format=json")
    assert status_page.status == 200

    postgres.start()
    after: list[int] = []
    healed = poll(lambda: after.append(server.get("/x?do=pid").status) or after[-1] == 200,
                  tries=100, delay=0.05)
    assert healed, f"never answered 200 after the database came up: {after[-5:]}"
    assert set(server.child_pids()) == children, "httpd's children were replaced"
    assert ask(server, "do=stats")["connect_failures"] >= 1
    connections = postgres.count_connections(app)
    assert connections == 1
    report(record_property, requests=1 + len(down) + len(after), failures_down=len(down),
           failures_after_start=after.count(503), connections_after=connections)
    assert_no_secret(postgres, server, *(r.text for r in down), status_page.text)


# ---------------------------------- database restarted under load


@pytest.mark.parametrize("mpm, processes", [("prefork", 4), ("event", 1)])
@pytest.mark.timeout(240)  # its load may run 90 s around a database restart
def test_database_restarted_under_eight_clients(
        driver: str, httpd: Any, database_restored: PostgresServer, mpm: str, processes: int,
        record_property: Any) -> None:
    """Requests fail only while the database is down; afterwards every one succeeds."""
    postgres = database_restored
    app = f"fault_restart_{mpm}_{driver}"
    server = serve(httpd, postgres.dsn_for(app), mpm, processes=processes, threads=8, driver=driver)
    ask(server, "do=pid")
    per_process = 1 if mpm == "prefork" else 8
    bound = processes * per_process

    with Clients(server, 8, "/x?do=pid", max_requests=30_000, max_seconds=90) as load:
        load.wait(lambda: len(load.outcomes) >= 400, what="400 requests before the restart")
        steady = postgres.count_connections(app)
        load.phase = "down"
        postgres.stop()
        load.wait(lambda: sum(o.status == 503 for o in load.in_phase("down")) >= 16,
                  what="503s while the database is down")
        postgres.start()
        load.phase = "up"
        # Every process must come back, then keep succeeding for a while.
        load.wait(lambda: all(sum(o.status == 200 for o in load.in_phase("up") if o.client == c)
                              >= 50 for c in range(8)),
                  what="50 successes per client after the restart", tries=1500)
    before, after = load.in_phase("before"), load.in_phase("up")
    # Requests that overlapped the outage, including those that straddled its edges.
    during = [o for o in load.outcomes if o.within not in ("before", "up")]
    assert before and all(o.status == 200 for o in before)
    odd = [o for o in during if o.status not in (200, 503)]
    assert not odd, f"around the outage, only 200 or 503 are expected: {odd[:3]}"
    assert all("Traceback" not in o.text for o in during)
    # After the restart each process may answer 503 until its reconnect back-off
    # ends; once every process has served a request again, nothing fails.
    processes_seen = {json.loads(o.text)["pid"] for o in before}
    first_ok: dict[int, int] = {}
    for o in after:
        if o.status == 200:
            pid = json.loads(o.text)["pid"]
            first_ok[pid] = min(first_ok.get(pid, o.finished), o.finished)
    assert set(first_ok) >= processes_seen, "a process never served a request again"
    healed = max(first_ok.values())
    assert all(o.status == 503 for o in after if o.status != 200), after
    late_failures = [o for o in after if o.started > healed and o.status != 200]
    assert late_failures == [], late_failures[:3]
    final = postgres.settled_count(app, at_most=bound)
    assert 1 <= final <= bound, f"{final} connections, at most {bound} expected"
    report(record_property, mpm=mpm, requests=len(load.outcomes),
           failed_down=sum(o.status != 200 for o in during),
           failed_after_restart_until_every_process_healed=sum(o.status != 200 for o in after),
           processes=len(processes_seen),
           connections_before=steady, connections_after=final, bound=bound)
    status_page = server.get("/status?format=json")
    assert_no_secret(postgres, server, *(o.text for o in during), status_page.text)


# ------------------------------------- backend killed mid-request


@pytest.mark.parametrize("mode", ["persistent", "pooled", "per-request"])
def test_backend_killed_in_the_middle_of_a_request(driver: str, httpd: Any,
                                                  postgres: PostgresServer, mode: str,
                                                  record_property: Any) -> None:
    """The request whose backend dies under it gets 503 (not 500); the next one succeeds.

    (A backend killed between requests is tested in test_connections_httpd.) This is
    what a database restart does to the requests in flight.
    """
    app = f"fault_killed_{mode}_{driver}"
    server = serve(httpd, postgres.dsn_for(app), "event", mode=mode, driver=driver)
    ask(server, "do=pid")
    answers: list[Any] = []
    runner = threading.Thread(target=lambda: answers.append(server.get("/x?do=slow&for=5")))
    runner.start()
    try:
        assert poll(lambda: active_queries(postgres, app, "fault_slow") == 1, tries=200,
                    delay=0.02), "the slow request never started"
        ((victim,),) = postgres.admin_execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND position('fault_slow' in query) > 0", (app,))
        assert postgres.admin_execute("SELECT pg_terminate_backend(%s)", (victim,)) == [(True,)]
    finally:
        runner.join(30)
    assert answers[0].status == 503, answers[0].text
    text = logged_for(server, answers[0].text)
    assert "Database 'f' is unavailable: the connection was lost" in text
    assert "Traceback" not in answers[0].text
    assert ask(server, "do=pid")["backend"] != victim  # the next request succeeds
    stats = ask(server, "do=stats")
    report(record_property, mode=mode, requests=4, failures=1,
           discarded_error=stats["discarded_error"],
           connections_after=postgres.count_connections(app))
    assert_no_secret(postgres, server, text)


# ------------------------------------------------- pool exhausted


def test_many_extras_time_out_and_every_thread_comes_back(
        driver: str, httpd: Any, postgres: PostgresServer, record_property: Any) -> None:
    """Eight slow requests on a pool of three: five wait, get 503 after the timeout, are counted.

    (A single extra is tested under worker and event in test_connections_httpd; this
    is the many-waiters case: several threads time out on the same pool at once.)
    """
    app = f"fault_exhaust_event_{driver}"
    pool_max = 3
    server = serve(httpd, postgres.dsn_for(app), "event", threads=10, pool_max=pool_max, timeout=1,
                   driver=driver)
    ask(server, "do=pid")
    results: list[tuple[int, str]] = []

    def slow() -> None:
        answer = server.get("/x?do=slow&for=2.5")
        results.append((answer.status, html.unescape(answer.text)))

    threads = [threading.Thread(target=slow) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * pool_max + [503] * (8 - pool_max), results
    refused = [text for status, text in results if status == 503]
    # Each page has its reference; the pool's advice is in the log under it, not in the page.
    for page in refused:
        logged = logged_for(server, page)
        assert "PoolTimeout" in logged and "database 'f'" in logged, logged
        assert "pool_max" not in page
    stats = ask(server, "do=stats")
    assert stats["timeouts"] == 8 - pool_max and stats["in_use"] == 0, stats
    assert stats["size"] <= pool_max
    # No thread stayed stuck: pool_max slow requests at once still all succeed.
    again: list[int] = []
    threads = [threading.Thread(target=lambda: again.append(server.get("/x?do=slow&for=0.2")
                                                           .status)) for _ in range(pool_max)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert again == [200] * pool_max
    connections = postgres.count_connections(app)
    assert connections <= pool_max
    report(record_property, requests=8 + pool_max + 2, timeouts=stats["timeouts"],
           waits=stats["waits"], wait_time_max=round(stats["wait_time_max"], 2),
           connections_after=connections)
    assert_no_secret(postgres, server, *refused)


# ------------------------------------------------- data integrity


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_data_integrity(driver: str, httpd: Any, postgres: PostgresServer, mpm: str,
                        fault_rows: str, record_property: Any) -> None:
    """Nothing uncommitted is ever seen or kept; transaction() commits exactly once."""
    app = f"fault_integrity_{mpm}_{driver}"
    # prefork: two processes, so the reader is another process and another connection.
    server = serve(httpd, postgres.dsn_for(app), mpm, processes=2 if mpm == "prefork" else 1,
                   driver=driver)
    token = fault_rows

    # A handler raises while its transaction holds an uncommitted row.
    held: list[Any] = []
    writer = threading.Thread(target=lambda: held.append(
        server.get(f"/x?do=insert_raise&token={token}&hold=2")))
    writer.start()
    try:
        assert poll(lambda: active_queries(postgres, app, "fault_hold") == 1, tries=200,
                    delay=0.02), "the writer never reached its pause"
        seen_meanwhile = ask(server, f"do=count&token={token}")["rows"]
    finally:
        writer.join(30)
    assert held and held[0].status == 500 and "Traceback" not in held[0].text
    assert seen_meanwhile == 0, "another request saw an uncommitted row"
    assert committed_rows(postgres, token) == 0, "the failed transaction was committed"

    # A handler that never commits and raises: its row is not committed by anyone later.
    forgot = server.get(f"/x?do=insert_forget&token={token}")
    assert forgot.status == 500
    for _ in range(6):  # whichever connection is reused next, by whichever process
        assert ask(server, f"do=count&token={token}")["rows"] == 0
    assert committed_rows(postgres, token) == 0

    # Success: committed once, before the answer left, and given back idle.
    before = ask(server, "do=stats")
    txid = ask(server, f"do=insert&token={token}")["txid"]
    assert committed_rows(postgres, token) == 1
    (state,) = postgres.admin_execute("SELECT txid_status(%s)", (txid,))[0]
    assert state == "committed"
    assert ask(server, f"do=count&token={token}")["rows"] == 1
    after = ask(server, "do=stats")
    if before["pid"] == after["pid"]:  # the same process's pool: nothing was left open
        assert after["returned_in_transaction"] == before["returned_in_transaction"]
    report(record_property, mpm=mpm, uncommitted_seen=seen_meanwhile,
           rows_after_failures=0, rows_after_success=committed_rows(postgres, token),
           connections=postgres.count_connections(app))


# --------------------------------------- session state and resets


@pytest.mark.parametrize("reset", ["discard", "rollback"])
def test_session_state_with_each_reset(driver: str, httpd: Any, postgres: PostgresServer,
                                       reset: str, record_property: Any) -> None:
    """discard: the next request sees a clean session; rollback: session state stays.

    A temporary table, a prepared statement, a session advisory lock, LISTEN and a
    SET outlive a transaction. ``reset=discard`` runs DISCARD ALL (and a
    RESET-style cleanup), so none of them reaches the next request on the same
    backend; ``reset=rollback`` only ends the transaction, as docs/deploying.md
    says, so all of them do.
    """
    app = f"fault_session_{reset}_{driver}"
    server = serve(httpd, postgres.dsn_for(app), "event", pool_max=1, reset=reset, driver=driver)
    dirtied = ask(server, "do=dirty")["backend"]
    seen = ask(server, "do=look")
    assert seen["backend"] == dirtied, "pool_max=1: the same backend serves both requests"
    state = {k: seen[k] for k in ("temp_table", "prepared", "advisory_locks", "listening",
                                  "statement_timeout")}
    if reset == "discard":
        assert state == {"temp_table": False, "prepared": 0, "advisory_locks": 0,
                         "listening": 0, "statement_timeout": "0"}
    else:
        assert state == {"temp_table": True, "prepared": 1, "advisory_locks": 1,
                         "listening": 1, "statement_timeout": "4321ms"}
    report(record_property, reset=reset, **state)

