"""modpy_safe.Database through a real httpd, under each MPM, against the private PostgreSQL.

The handler files declare ``db = modpy_safe.Database(name="t")`` at module level
and take the DSN and every other setting from ``PythonOption modpy_safe.db.t.*``.
"""
from __future__ import annotations

import html
import re
import threading
from typing import Any

import psycopg2
import pytest

pytestmark = pytest.mark.httpd

DISPATCH = "SetHandler mod_python\nPythonHandler modpy_safe.dispatch"

APP = """\
import os
import time
from urllib.parse import parse_qs

import modpy_safe

db = modpy_safe.Database(name="t")


def handler(req):
    args = {k: v[0] for k, v in parse_qs(req.args or "").items()}
    action = args.get("do", "pid")
    if action == "info":
        described = db.describe()
        return {"mode": db.mode, "pool_max": described["settings"]["pool_max"],
                "stats": db.stats(), "pid": os.getpid()}
    if action == "open":  # leave a transaction open on purpose
        with db.connection() as conn:
            cur = conn.cursor()
            cur.execute("INSERT INTO conn_left_open VALUES (1)")
            cur.execute("SELECT pg_backend_pid()")
            return {"backend": cur.fetchone()[0]}
    if action == "check":
        with db.connection() as conn:
            status = conn.info.transaction_status
            cur = conn.cursor()
            cur.execute("SELECT count(*), pg_backend_pid() FROM conn_left_open")
            rows, backend = cur.fetchone()
            return {"status": status, "rows": rows, "backend": backend}
    if action == "dirty":  # session state that outlives the transaction
        with db.transaction() as cur:
            cur.execute("SET search_path = nowhere")
            cur.execute("SET ROLE modpy_reader")
            cur.execute("SELECT pg_backend_pid()")
            return {"backend": cur.fetchone()[0]}
    if action == "look":
        with db.transaction() as cur:
            cur.execute("SELECT current_user, current_setting('search_path'), pg_backend_pid()")
            user, path, backend = cur.fetchone()
            return {"user": user, "search_path": path, "backend": backend}
    if action == "slow":
        with db.transaction() as cur:
            cur.execute("SELECT pg_sleep(%s) /* conn_slow */", (float(args["for"]),))
        return {"slept": True}
    if action == "twice":  # per-request: the same connection for every use
        backends = []
        for _ in range(2):
            with db.transaction() as cur:
                cur.execute("SELECT pg_backend_pid()")
                backends.append(cur.fetchone()[0])
        if "fail" in args:
            raise RuntimeError("the handler failed after using the database")
        return {"backends": backends}
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return {"backend": cur.fetchone()[0]}
"""


def start(httpd: Any, postgres: Any, mpm: str, app: str, *, processes: int = 1,
          threads: int = 8, **settings: Any) -> Any:
    """Start httpd serving APP, with the Database's DSN and settings as PythonOptions."""
    options = {"modpy_safe.handler": "app.py", "modpy_safe.db.t.dsn": postgres.dsn_for(app)}
    options.update({f"modpy_safe.db.t.{k}": str(v) for k, v in settings.items()})
    return httpd(mpm, directory=DISPATCH, options=options, files={"app.py": APP},
                 processes=processes, threads=threads)


def ask(server: Any, action: str = "pid", **args: Any) -> Any:
    query = "&".join(f"{k}={v}" for k, v in {"do": action, **args}.items())
    answer = server.get(f"/x?{query}")
    assert answer.status == 200, f"{answer.status}: {answer.text}\n{server.log_tail()}"
    return answer.json()


def no_password_anywhere(server: Any, postgres: Any, *texts: str) -> None:
    assert postgres.password not in server.error_log()
    for text in texts:
        assert postgres.password not in text


def test_each_mpm_gets_its_mode(driver: str, httpd: Any, postgres: Any, mpm: str) -> None:
    app = f"conn_mode_{mpm}_{driver}"
    server = start(httpd, postgres, mpm, app, processes=1, threads=5, driver=driver)
    ask(server)
    info = ask(server, "info")
    expected = ("persistent", 1) if mpm == "prefork" else ("pooled", 5)
    assert (info["mode"], info["pool_max"]) == expected
    assert info["stats"]["opened"] == 1 and info["stats"]["in_use"] == 0
    assert postgres.count_connections(app) == 1
    no_password_anywhere(server, postgres, repr(info))


def test_open_transaction_is_rolled_back_before_the_next_request(
        driver: str, httpd: Any, postgres: Any, mpm: str) -> None:
    app = f"conn_left_open_{mpm}_{driver}"
    setup = psycopg2.connect(postgres.dsn)
    try:
        with setup, setup.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS conn_left_open (x int)")
    finally:
        setup.close()
    server = start(httpd, postgres, mpm, app, processes=1, driver=driver)
    opened = ask(server, "open")["backend"]
    checked = ask(server, "check")
    assert checked["backend"] == opened  # the very connection the last request left open
    assert checked["status"] == 0  # TRANSACTION_STATUS_IDLE when handed out
    assert checked["rows"] == 0  # and the insert was not committed
    assert ask(server, "info")["stats"]["returned_in_transaction"] >= 1


def test_reset_discard_hides_session_state(driver: str, httpd: Any, postgres: Any,
                                           mpm: str) -> None:
    postgres.admin_execute(
        "DO $$ BEGIN CREATE ROLE modpy_reader NOLOGIN; EXCEPTION WHEN duplicate_object "
        "THEN NULL; END $$")
    postgres.admin_execute("GRANT modpy_reader TO modpy")
    app = f"conn_discard_{mpm}_{driver}"
    server = start(httpd, postgres, mpm, app, processes=1, reset="discard", driver=driver)
    dirtied = ask(server, "dirty")["backend"]
    seen = ask(server, "look")
    assert seen["backend"] == dirtied
    assert (seen["user"], seen["search_path"]) == ("modpy", '"$user", public')


def test_survives_terminate_restart_and_outage(driver: str, httpd: Any, postgres: Any,
                                               mpm: str) -> None:
    app = f"conn_restart_{mpm}_{driver}"
    server = start(httpd, postgres, mpm, app, processes=1, driver=driver)
    first = ask(server)["backend"]
    assert postgres.terminate(app) == 1
    for _ in range(200):  # until the backend is gone, not merely told to go
        if postgres.count_connections(app) == 0:
            break
        threading.Event().wait(0.01)
    second = ask(server)["backend"]  # replaced within the same checkout
    assert second != first
    postgres.restart()
    assert ask(server)["backend"] != second
    postgres.stop()
    try:
        down = server.get("/x?do=pid")
        assert down.status == 503, down.text
        # The reason is the operator's: in the error log under the page's reference.
        text = _logged_for(server, down.text)
        assert "DatabaseUnavailable" in text and "'t' is unavailable" in text
        assert "DatabaseUnavailable" not in down.text
    finally:
        postgres.start()
    server.wait_for("/x?do=pid", lambda r: r.status == 200, tries=100, delay=0.05)
    no_password_anywhere(server, postgres, down.text)


def test_per_request_connection_closes_with_the_request(
        driver: str, httpd: Any, postgres: Any, mpm: str) -> None:
    app = f"conn_per_request_{mpm}_{driver}"
    server = start(httpd, postgres, mpm, app, processes=1, mode="per-request", driver=driver)
    backends = ask(server, "twice")["backends"]
    assert backends[0] == backends[1]
    failed = server.get("/x?do=twice&fail=1")
    assert failed.status == 500
    for _ in range(100):  # closed by the request's cleanup, raised or not
        if postgres.count_connections(app) == 0:
            break
        threading.Event().wait(0.02)
    assert postgres.count_connections(app) == 0
    stats = ask(server, "info")["stats"]
    assert stats["opened"] == stats["closed"] == 2


@pytest.mark.parametrize("threaded_mpm", ["worker", "event"])
def test_exhaustion_answers_503_and_frees_every_thread(
        driver: str, httpd: Any, postgres: Any, threaded_mpm: str) -> None:
    app = f"conn_exhaust_{threaded_mpm}_{driver}"
    server = start(httpd, postgres, threaded_mpm, app, processes=1, threads=4,
                   pool_max=1, timeout=1, driver=driver)
    slow: list[Any] = []
    runner = threading.Thread(target=lambda: slow.append(server.get("/x?do=slow&for=2.5")))
    runner.start()
    try:
        for _ in range(200):  # until the slow request holds the only connection
            if postgres.admin_execute("SELECT 1 FROM pg_stat_activity WHERE application_name "
                                      "= %s AND state = 'active'", (app,)):
                break
            threading.Event().wait(0.02)
        else:
            pytest.fail("the slow request never started")
        busy = server.get("/x?do=pid")
        assert busy.status == 503, busy.text
        text = _logged_for(server, busy.text)
        assert "PoolTimeout" in text and "database 't'" in text
        assert "PoolTimeout" not in busy.text
    finally:
        runner.join(30)
    assert slow and slow[0].status == 200, slow
    info = ask(server, "info")
    assert info["stats"]["timeouts"] == 1 and info["stats"]["in_use"] == 0
    answers: list[int] = []
    workers = [threading.Thread(target=lambda: answers.append(server.get("/x?do=pid").status))
               for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert answers == [200] * 4  # no thread is left stuck
    no_password_anywhere(server, postgres, busy.text)


def test_wrong_password_is_not_shown(httpd: Any, postgres: Any) -> None:
    secret = "Wr0ng-S3cret-httpd"
    server = httpd("event", directory=DISPATCH, files={"app.py": APP}, options={
        "modpy_safe.handler": "app.py",
        "modpy_safe.db.t.dsn": postgres.dsn.replace(postgres.password, secret)})
    answer = server.get("/x?do=pid")
    # PythonDebug Off: the reason is the operator's (the log), not the client's.
    assert answer.status == 503 and "password authentication failed" not in answer.text
    assert secret not in answer.text and secret not in server.error_log()
    assert "password authentication failed" in server.error_log()


def test_budget_warning_in_the_error_log(driver: str, httpd: Any, postgres: Any) -> None:
    app = f"conn_budget_{driver}"
    server = start(httpd, postgres, "worker", app, processes=1, threads=2, pool_max=250,
                   driver=driver)
    ask(server)
    ask(server)
    log = server.error_log()
    assert log.count("may open up to 250 connections") == 1, server.log_tail()
    assert "too many" in log and "PgBouncer" in log
    no_password_anywhere(server, postgres)


PLAIN = """\
from mod_python import apache

import modpy_safe

db = modpy_safe.Database({dsn!r}, name="plain")


def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        req.content_type = "text/plain"
        req.write("%s %s" % (db.mode, cur.fetchone()[0]))
    return apache.OK
"""


@pytest.mark.parametrize("through", ["dispatch", "PythonHandler"])
def test_child_exit_closes_connections_cleanly(driver: str, httpd: Any, postgres: Any, mpm: str,
                                               through: str) -> None:
    """At child exit every connection is closed with libpq's goodbye, not dropped."""
    app = f"conn_exit_{mpm}_{through}_{driver}"
    if through == "dispatch":
        server = start(httpd, postgres, mpm, app, driver=driver)
        ask(server)
        ask(server)  # the first request's after-response work is done by now
        name = "t"
    else:  # mod_python's own import: no importer, the Database's own exit hook
        server = httpd(mpm, processes=1, directory="PythonHandler plainapp",
                       files={"plainapp.py": PLAIN.format(dsn=postgres.dsn_for(app)),
                              "static.txt": "static"})
        answer = server.get("/plainapp.py")
        assert answer.status == 200 and answer.text.split()[0] in ("persistent", "pooled")
        # Served by the same single process once the Python request is fully done:
        # a prefork child stopped while it still runs Python hangs (see the report).
        assert server.get("/static.txt").text == "static"
        name = "plain"
    assert postgres.count_connections(app) == 1
    server.stop()
    assert f"database '{name}' closed in process" in server.error_log(), server.log_tail()
    for _ in range(100):
        if postgres.count_connections(app) == 0:
            break
        threading.Event().wait(0.02)
    assert postgres.count_connections(app) == 0
    no_password_anywhere(server, postgres)


RELOADED = """\
import modpy_safe

db = modpy_safe.Database({dsn!r}, name="r", mode={mode!r}, driver={driver!r})
VERSION = {version}


def handler(req):
    with db.transaction() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return "version %d backend %d db %d" % (VERSION, cur.fetchone()[0], id(db))
"""


def test_reload_keeps_the_database_or_retires_it(driver: str, httpd: Any, postgres: Any,
                                                 mpm: str) -> None:
    """Same arguments after an edit: the same object and connection; other DSN: old one closed."""
    first, second = f"conn_reload_a_{mpm}_{driver}", f"conn_reload_b_{mpm}_{driver}"

    def source(version: int, app: str, mode: str = "auto") -> str:
        return RELOADED.format(dsn=postgres.dsn_for(app), mode=mode, version=version,
                               driver=driver)

    server = httpd(mpm, processes=1, directory=DISPATCH, files={"app.py": source(1, first)},
                   options={"modpy_safe.handler": "app.py", "modpy_safe.reload.interval": "0"})

    def answer() -> dict[str, int]:
        words = server.get("/x").text.split()
        return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}

    v1 = answer()
    server.write("app.py", source(2, first))
    server.wait_for("/x", "version 2 ", tries=100, delay=0.05)
    v2 = answer()
    assert (v2["backend"], v2["db"]) == (v1["backend"], v1["db"])
    assert postgres.count_connections(first) == 1

    server.write("app.py", source(3, second))
    server.wait_for("/x", "version 3 ", tries=100, delay=0.05)
    v3 = answer()
    assert v3["db"] != v1["db"] and v3["backend"] != v1["backend"]
    for _ in range(200):  # retired once the requests on the old version are done
        if postgres.count_connections(first) == 0:
            break
        threading.Event().wait(0.02)
    assert postgres.count_connections(first) == 0
    assert postgres.count_connections(second) == 1
    no_password_anywhere(server, postgres)


def _logged_for(server: Any, page: str) -> str:
    """Return the error log lines of the reference an error page shows."""
    found = re.search(r"Reference: <code>([0-9a-f]+)</code>", page)
    assert found, page
    return html.unescape("\n".join(line for line in server.error_log().splitlines()
                                    if f"[{found.group(1)}]" in line))
