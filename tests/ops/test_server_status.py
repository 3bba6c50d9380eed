"""The status page describes every child of the server, under each MPM, through real httpd.

Three children that serve one request at a time (prefork, or ThreadsPerChild 1
under worker and event): three requests held open together at a barrier in
the handler land on three different children, so each child has loaded the
handler file, the file it imports and a Database. One more file is loaded in
one child only. Whichever child answers the status page, the JSON lists all
three with their own files; the Prometheus text parses with prometheus_client's
own parser and its reload counters grow after an edit; a graceful restart
replaces the children on the page.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import time
from collections.abc import Callable, Iterator

import pytest

from modpy_safe.testing import MPMS, Httpd, PostgresServer, Response, make_tempdir, running

pytestmark = pytest.mark.httpd

CHILDREN = 3
THREADS = 2  # per child under worker and event (prefork has one)

# Each request of one round waits (bounded) until every child has joined it, then
# answers with the pids that joined; one that waited in vain says so, and is sent again.
BARRIER = '''\
import os, time
import modpy_safe

helper = modpy_safe.import_module("helper")
db = modpy_safe.Database({dsn!r}, name="main")

def handler(req):
    here = os.path.join(os.path.dirname(__file__), "rounds", req.args)
    os.makedirs(here, exist_ok=True)
    open(os.path.join(here, str(os.getpid())), "w").close()
    with db.transaction() as cur:
        cur.execute("SELECT 1")
    for _ in range(400):
        joined = sorted(os.listdir(here))
        if len(joined) >= {children}:
            return "%s %s" % (helper.VERSION, ",".join(joined))
        time.sleep(0.005)
    return "%s waiting" % helper.VERSION
'''
HELPER = "VERSION = {version!r}\n"
ONLY_ONE = '''\
import os

def handler(req):
    return "one %d" % os.getpid()
'''


def status_section(path: str, allow: str | None = None) -> str:
    """Configure the status page at ``path``, the way docs/handlers.md shows."""
    option = f'    PythonOption modpy_safe.status.allow "{allow}"\n' if allow else ""
    return (f"<If \"%{{REQUEST_URI}} == '{path}'\">\n    SetHandler mod_python\n"
            f"    PythonHandler modpy_safe.status\n{option}</If>\n")


@pytest.fixture(scope="module", params=MPMS)
def server(request: pytest.FixtureRequest, postgres: PostgresServer) -> Iterator[Httpd]:
    root = make_tempdir(f"modpy_safe-ops-{request.param}-")
    srv = Httpd(root, mpm=request.param, processes=CHILDREN, threads=THREADS,
                directory="SetHandler mod_python\nPythonHandler modpy_safe.dispatch",
                files={"barrier.py": BARRIER.format(dsn=postgres.dsn_for(f"ops_{request.param}"),
                                                    children=CHILDREN),
                       "helper.py": HELPER.format(version="v1"), "only_one.py": ONLY_ONE},
                options={"modpy_safe.reload.interval": "0"},
                extra="PythonImport modpy_safe.status 127.0.0.1\n" + status_section("/status"))
    rounds = srv.path("rounds")
    rounds.mkdir()
    os.chmod(rounds, 0o777)  # httpd's user writes the barrier files
    with running(srv, request):
        yield srv


# Requests sent to the handlers of each server (the status page's own are not counted).
SENT: dict[str, int] = {}  # by server root: ids of finished servers are reused


def app(server: Httpd, path: str) -> Response:
    """Request a handler of ``server`` and count the request."""
    SENT[str(server.root)] = SENT.get(str(server.root), 0) + 1
    return server.get(path)


def barrier(server: Httpd, name: str, tries: int = 20) -> tuple[set[str], set[int], int]:
    """Hold requests open together until every child has served one of the round.

    Return the versions of the helper they saw, the pids of the children and
    how many requests were sent. A threaded child may queue a connection
    behind its busy threads, so a request that waited in vain is sent again
    (bounded).
    """
    def one(_: int) -> tuple[str, str, int]:
        for sent in range(1, tries + 1):
            r = app(server, f"/barrier.py?{name}")
            assert r.status == 200, r.text
            version, joined = r.text.split()
            if joined != "waiting":
                return version, joined, sent
        raise AssertionError(f"round {name}: the children never all joined after {tries} tries")

    with concurrent.futures.ThreadPoolExecutor(CHILDREN * THREADS) as pool:
        answers = list(pool.map(one, range(CHILDREN * THREADS)))
    pids = {int(pid) for _, joined, _ in answers for pid in joined.split(",")}
    assert len(pids) == CHILDREN, answers
    return {version for version, _, _ in answers}, pids, sum(sent for _, _, sent in answers)


def names(process: dict) -> set[str]:
    return {os.path.basename(m["path"]) for m in process["modules"]}


def test_every_child_is_listed_from_its_start(server: Httpd) -> None:
    # No request at all yet (a status request would make the child that answers
    # publish): 'PythonImport modpy_safe.status' made each child publish as it started.
    pids = set(server.child_pids())
    assert len(pids) == CHILDREN
    for _ in range(100):
        if _published(server) == pids:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"published {_published(server)}, children {pids}")
    processes = json.loads(server.get("/status?format=json").body)["processes"]
    assert {p["pid"] for p in processes} == pids
    assert all(p["modules"] == [] for p in processes)


def test_one_json_answer_lists_every_child_with_the_files_it_loaded(
        server: Httpd, postgres: PostgresServer) -> None:
    _, pids, _ = barrier(server, "first")
    assert pids == set(server.child_pids())
    one = int(app(server, "/only_one.py").text.split()[1])

    def complete(r: object) -> bool:
        processes = json.loads(r.body)["processes"]  # type: ignore[attr-defined]
        return ({p["pid"] for p in processes} == pids
                and all(names(p) >= {"barrier.py", "helper.py"} for p in processes)
                and {p["pid"] for p in processes if "only_one.py" in names(p)} == {one})

    answer = server.wait_for("/status?format=json", complete)
    report = json.loads(answer.body)
    # The fields of the answering child stay where they were.
    assert report["pid"] in pids and report["server"]["mpm"] == server.mpm
    assert isinstance(report["modules"], list) and isinstance(report["databases"], list)
    summary = report["summary"]
    assert summary["children"] == CHILDREN and summary["pids"] == sorted(pids)
    assert summary["mpm"] == server.mpm and summary["problems"] == []
    for process in report["processes"]:
        barrier_file = next(m for m in process["modules"] if m["path"].endswith("/barrier.py"))
        assert barrier_file["generation"] == 1
        assert [os.path.basename(c) for c in barrier_file["children"]] == ["helper.py"]
        (db,) = process["databases"]
        assert db["name"] == "main" and db["stats"]["requests"] >= 1
        assert db["mode"] == ("persistent" if server.mpm == "prefork" else "pooled")
        assert "***" in db["settings"]["dsn"]
        assert process["server"]["mpm"] == server.mpm
    assert postgres.password not in answer.text

    page = server.get("/status")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    for pid in pids:
        assert f"Process {pid}" in page.text
    assert "Imported files" in page.text and "only_one.py" in page.text
    # Words for people, not Python values or JSON keys.
    for leftover in ("True", "False", "None", "closed_for_old_versions", "active_requests",
                     "old_versions_pending", "{'", postgres.password):
        assert leftover not in page.text, leftover


def _families(server: Httpd) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    r = server.get("/status?format=prometheus")
    assert r.status == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {f"{s.name}{sorted(s.labels.items()) if s.labels else ''}": s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def wait_for_total(server: Httpd, name: str, expected: float) -> None:
    """Poll the metrics until ``name`` reaches ``expected`` (bounded), naming both if not."""
    seen: list[float] = []

    def reached(r: Response) -> bool:
        seen.append(_families(server)[name])
        return seen[-1] == expected

    try:
        server.wait_for("/status?format=prometheus", reached, tries=60)
    except AssertionError:
        raise AssertionError(f"{name} never became {expected}; last values {seen[-5:]}"
                             ) from None


def test_prometheus_text_parses_and_counts_reloads_across_children(server: Httpd) -> None:
    barrier(server, "before-edit")
    before = _families(server)
    assert before["modpy_safe_processes"] == CHILDREN
    assert before["modpy_safe_requests_total"] >= CHILDREN
    assert before["modpy_safe_pool_connections_open[('database', 'main')]"] >= CHILDREN
    assert before["modpy_safe_pool_connections_in_use[('database', 'main')]"] == 0

    # A file that fails to load is counted by the child that tried.
    server.write("fails.py", "def handler(req)\n    return 1\n")
    assert app(server, "/fails.py").status == 500
    failed = server.wait_for("/status?format=prometheus",
                             lambda r: "modpy_safe_reload_failures_total" in r.text and
                             _families(server)["modpy_safe_reload_failures_total"]
                             > before["modpy_safe_reload_failures_total"])
    assert failed.status == 200

    # An edit: every child reloads the imported file and the file that imports it.
    server.write("helper.py", HELPER.format(version="v2"))
    versions, _, _ = barrier(server, "after-edit")
    assert versions == {"v2"}
    server.wait_for("/status?format=prometheus",
                    lambda r: _families(server)["modpy_safe_reloads_total"]
                    >= before["modpy_safe_reloads_total"] + 2 * CHILDREN)
    # Every request the handlers served, in all children; the status page's own are not.
    wait_for_total(server, "modpy_safe_requests_total", SENT[str(server.root)])
    after = _families(server)
    assert after["modpy_safe_pool_checkouts_total[('database', 'main')]"] > (
        before["modpy_safe_pool_checkouts_total[('database', 'main')]"])


def test_no_log_line_per_status_request(server: Httpd) -> None:
    for _ in range(3):
        assert server.get("/status?format=json").status == 200
    log = server.error_log()
    assert "/status" not in log, [line for line in log.splitlines() if "/status" in line]


def test_graceful_restart_replaces_the_children_on_the_page(server: Httpd) -> None:
    old = set(server.child_pids())
    server.graceful()
    _, new, _ = barrier(server, "after-graceful")
    assert not new & old
    # Read before any status request, which would prune what dead children left:
    # the old children removed their own files when they exited.
    assert _published(server) == new
    server.wait_for("/status?format=json",
                    lambda r: {p["pid"] for p in json.loads(r.body)["processes"]} == new)
    # Counters are the server's: the old children's counts stay in the sum.
    wait_for_total(server, "modpy_safe_requests_total", SENT[str(server.root)])


def _published(server: Httpd) -> set[int]:
    children = server.root / "run" / "modpy_safe" / "children"
    if not children.exists():
        return set()
    return {int(name.split("-")[0]) for name in os.listdir(children) if name.endswith(".json")}


def test_an_unusable_state_directory_is_named_on_the_page(
        httpd: Callable[..., Httpd]) -> None:
    # A file where the directory should be: the page still answers, for its own child.
    srv = httpd("prefork", processes=1,
                extra='PythonOption modpy_safe.status.directory "/etc/passwd"\n'
                      + status_section("/status"))
    report = json.loads(srv.get("/status?format=json").body)
    assert [p["pid"] for p in report["processes"]] == [report["pid"]]
    (problem,) = report["summary"]["problems"]
    assert problem.startswith("Only the answering process is shown: the state directory "
                              "'/etc/passwd'") and "is not a directory" in problem
    assert "modpy_safe.status.directory" in problem
    assert srv.get("/status?format=prometheus").status == 500
    assert "/etc/passwd" in srv.error_log()
