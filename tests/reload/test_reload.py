"""The reload protocol through real httpd under prefork, worker and event."""
from __future__ import annotations

import http.client
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import make_tempdir

pytestmark = pytest.mark.httpd

DISPATCH = "SetHandler mod_python\nPythonHandler modpy_safe.dispatch"

# The program from the mailing-list thread: a module-level connection, no guard.
NAIVE = """\
import os
import psycopg2

conn = psycopg2.connect({dsn!r})
VERSION = {version}

def handler(req):
    req.content_type = "text/plain"
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid(){sleep}")
        backend = cur.fetchone()[0]
    conn.rollback()
    req.write("version %d pid %d backend %d" % (VERSION, os.getpid(), backend))
"""

GUARDED = NAIVE.replace("conn = psycopg2.connect",
                        'if "conn" not in globals():\n    conn = psycopg2.connect')


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory httpd's unprivileged user can write to (pytest's tmp_path is private)."""
    path = make_tempdir("modpy_safe-reload-")
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(httpd: Any, mpm: str, files: dict[str, str], *, interval: str = "0",
          **kwargs: Any) -> Any:
    options = {"modpy_safe.handler": "app.py", "modpy_safe.reload.interval": interval}
    options.update(kwargs.pop("options", {}))
    return httpd(mpm, directory=DISPATCH, options=options, files=files, **kwargs)


def answer(server: Any, path: str = "/") -> dict[str, int]:
    """GET ``path`` and parse 'version V pid P backend B' into a dict."""
    response = server.get(path)
    assert response.status == 200, f"{response.status}: {response.text[:2000]}"
    words = response.text.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}



def ask(client: http.client.HTTPConnection) -> tuple[str, str, int]:
    """GET / on a kept-alive connection; return (version, token, pid) of 'v V token T pid P'."""
    client.request("GET", "/")
    response = client.getresponse()
    text = response.read().decode()
    assert response.status == 200, text[:2000]
    # Closed, http.client would silently reconnect, maybe to another process.
    assert not response.will_close, "httpd closed the kept-alive connection"
    _, version, _, token, _, pid = text.split()
    return version, token, int(pid)


def test_edited_file_serves_new_code_and_unchanged_is_not_rerun(httpd, mpm):
    """With the default interval of one second, every process that loaded a file serves
    its edit, each executing it once; an unchanged file is never executed again."""
    source = "import os\nTOKEN = os.urandom(8).hex()\nV = {v}\n" \
             "def handler(req):\n    return 'v %d token %s pid %d' % (V, TOKEN, os.getpid())\n"
    # The default KeepAliveTimeout (5 s) can run out between two requests on a
    # loaded machine; a closed connection would reconnect, maybe to another process.
    server = httpd(mpm, directory=DISPATCH, options={"modpy_safe.handler": "app.py"},
                   files={"app.py": source.format(v=1)}, extra="KeepAliveTimeout 120\n")
    # One kept-alive connection per process: a connection is served by one process
    # for its whole life, and a prefork child serving one takes no other, so each
    # connection below reaches its own process, and each has loaded version 1.
    clients = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
               for _ in range(server.processes)]
    try:
        pid_of: dict[int, int] = {}
        token_of: dict[int, str] = {}
        for number, client in enumerate(clients):
            for _ in range(6):
                version, token, pid = ask(client)
                assert version == "1"
                assert pid_of.setdefault(number, pid) == pid
                assert token_of.setdefault(pid, token) == token, "an unchanged file ran again"
        assert len(token_of) == server.processes, "two connections reached one process"

        server.write("app.py", source.format(v=2))
        new_token: dict[int, str] = {}
        for _ in range(200):  # bounded: until every process served the edit
            for number, client in enumerate(clients):
                if pid_of[number] not in new_token:
                    version, token, pid = ask(client)
                    assert pid == pid_of[number]
                    if version == "2":
                        new_token[pid] = token
            if len(new_token) == len(clients):
                break
            time.sleep(0.05)
        assert len(new_token) == len(clients), f"only {sorted(new_token)} served the edit"
        for number, client in enumerate(clients):
            for _ in range(3):
                assert ask(client) == ("2", new_token[pid_of[number]], pid_of[number])
    finally:
        for client in clients:
            client.close()
    log = server.error_log()
    for pid, token in new_token.items():
        assert token != token_of[pid], "the edited file was not executed"
        assert re.search(rf"\[pid {pid}:tid \d+\] .*reloaded \S+/app\.py \(generation 2\)", log), \
            f"process {pid} did not log its reload"


def test_naive_module_edited_50_times_keeps_one_connection_per_process(httpd, mpm, postgres):
    """The mailing-list program, unchanged, edited and requested 50 times: one connection per
    process, the old one closed after each reload."""
    app = f"reload_naive_{mpm}"
    dsn = postgres.dsn_for(app)
    server = serve(httpd, mpm, {"app.py": NAIVE.format(dsn=dsn, version=0, sleep="")})
    pids = {answer(server)["pid"]}
    worst = 0
    for version in range(1, 51):
        server.write("app.py", NAIVE.format(dsn=dsn, version=version, sleep=""))
        got = answer(server)
        assert got["version"] == version
        pids.add(got["pid"])
        count = postgres.settled_count(app, at_most=len(pids))
        worst = max(worst, count)
        assert count <= len(pids), f"{count} connections, {len(pids)} processes, edit {version}"
    assert worst >= 1
    log = server.error_log()
    assert re.search(r"modpy_safe: loaded \S+/app\.py as _mps_app_\w+ \(generation 1\)", log)
    assert re.search(r"modpy_safe: reloaded \S+/app\.py \(generation \d+\)", log)
    # One line per closed resource: what it is, how it was reached, generation, file.
    assert re.search(r"modpy_safe: closed psycopg2 connection \(psycopg2\.extensions\."
                     r"connection\) reached through 'conn' left by generation \d+ of "
                     r"\S+/app\.py", log)


def test_guarded_idiom_keeps_its_backend_across_20_reloads(httpd, mpm, postgres):
    """The guarded idiom 'if "conn" not in globals()' keeps the same pg_backend_pid()."""
    app = f"reload_guarded_{mpm}"
    dsn = postgres.dsn_for(app)
    server = serve(httpd, mpm, {"app.py": GUARDED.format(dsn=dsn, version=0, sleep="")})
    backend_of: dict[int, int] = {}
    for version in range(21):
        if version:
            server.write("app.py", GUARDED.format(dsn=dsn, version=version, sleep=""))
        got = answer(server)
        assert got["version"] == version
        assert backend_of.setdefault(got["pid"], got["backend"]) == got["backend"]
    assert postgres.settled_count(app, at_most=len(backend_of)) == len(backend_of)
    assert set(postgres.backend_pids(app)) == set(backend_of.values())


HOOKS = """\
import os
import psycopg2

if "conn" not in globals():
    conn = psycopg2.connect({dsn!r})
    clones = 0
VERSION = {version}

def __mp_clone__(new):
    # Written for mod_python 3.3: by the time it runs, the framework has already
    # handed the connection over.
    if {fail}:
        # A broken hook that quotes the DSN: its traceback must not show the password.
        psycopg2.connect({dsn!r} + " sslmode=broken")
    new.clones = clones + 1
    new.saw_conn = hasattr(new, "conn")

def __mp_purge__():
    with open({marker!r}, "a") as out:
        out.write("purged %d\\n" % VERSION)

def handler(req):
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    conn.rollback()
    return "version %d clones %d saw %d backend %d" % (
        VERSION, clones, globals().get("saw_conn", False), backend)
"""


def test_hooks_keep_mod_python_33_meaning(httpd, mpm, postgres, shared_dir):
    """A file's own __mp_clone__ runs after the hand-over; a failing one purges, N starts fresh."""
    app = f"reload_hooks_{mpm}"
    dsn = postgres.dsn_for(app)
    marker = shared_dir / "purged.txt"
    server = serve(httpd, mpm, {"app.py": HOOKS.format(dsn=dsn, version=1, fail=False,
                                                        marker=str(marker))}, processes=1)
    first = answer(server)
    assert (first["version"], first["clones"]) == (1, 0)
    # Version 2 carries a hook that will fail; version 1's hook hands over to it.
    server.write("app.py", HOOKS.format(dsn=dsn, version=2, fail=True, marker=str(marker)))
    second = answer(server)
    assert (second["version"], second["clones"], second["saw"]) == (2, 1, 1)
    assert second["backend"] == first["backend"]
    assert not marker.exists()

    # Version 2's hook raises when version 3 arrives: purge, then a fresh start.
    server.write("app.py", HOOKS.format(dsn=dsn, version=3, fail=False, marker=str(marker)))
    third = answer(server)
    assert (third["version"], third["clones"], third["saw"]) == (3, 0, 0)
    assert third["backend"] != first["backend"]
    assert marker.read_text() == "purged 2\n"
    assert postgres.settled_count(app, at_most=1) == 1, (
        "the purged version's connection was not closed")
    assert postgres.backend_pids(app) == [third["backend"]]
    log = server.error_log()
    assert "__mp_clone__ of generation 2" in log and "sslmode" in log
    assert postgres.password not in log


def broken(source: str, mistake: str) -> tuple[str, int]:
    """Insert ``mistake`` after the connect line; return the source and its line number."""
    lines = source.splitlines()
    at = next(i for i, line in enumerate(lines) if "psycopg2.connect" in line) + 1
    lines.insert(at, mistake)
    return "\n".join(lines) + "\n", at + 1


def test_failed_reload_keeps_old_version_until_the_file_is_fixed(httpd, mpm, postgres):
    """With PythonDebug Off: break it, the old version answers; fix it, the new one does."""
    app = f"reload_broken_{mpm}"
    dsn = postgres.dsn_for(app)
    # One process: a process that never loaded version 1 has no old version to keep.
    server = serve(httpd, mpm, {"app.py": NAIVE.format(dsn=dsn, version=1, sleep="")},
                   processes=1)
    pids = {answer(server)["pid"]}

    text, line = broken(NAIVE.format(dsn=dsn, version=2, sleep=""),
                        "raise ValueError('broken on purpose')")
    server.write("app.py", text)
    for _ in range(8):
        got = answer(server)
        assert got["version"] == 1, "a failed reload must leave the old version in place"
        pids.add(got["pid"])
    # The failed version's own connection is closed; the old one is untouched.
    assert postgres.settled_count(app, at_most=len(pids)) <= len(pids)
    log = server.error_log()
    failures = re.findall(rf"reload of \S+/app\.py failed at \S+/app\.py:{line}: "
                          r"ValueError: broken on purpose", log)
    assert 1 <= len(failures) <= len(pids), "logged once per failed version and process"
    assert "Traceback (most recent call last)" in log

    syntax, bad_line = broken(NAIVE.format(dsn=dsn, version=3, sleep=""), "def oops(:")
    server.write("app.py", syntax)
    assert answer(server)["version"] == 1
    assert re.search(rf"reload of \S+/app\.py failed at \S+/app\.py:{bad_line}: SyntaxError",
                     server.error_log())

    server.write("app.py", NAIVE.format(dsn=dsn, version=4, sleep=""))
    got = answer(server)
    assert got["version"] == 4
    pids.add(got["pid"])
    assert postgres.settled_count(app, at_most=len(pids)) <= len(pids)


def test_failed_reload_is_shown_with_python_debug(httpd, mpm, postgres):
    """With PythonDebug On: a failed reload is shown on the page until the file is fixed."""
    app = f"reload_debug_{mpm}"
    dsn = postgres.dsn_for(app)
    server = serve(httpd, mpm, {"app.py": NAIVE.format(dsn=dsn, version=1, sleep="")},
                   debug=True, processes=1)
    assert answer(server)["version"] == 1
    text, line = broken(NAIVE.format(dsn=dsn, version=2, sleep=""), "raise ValueError('shown')")
    server.write("app.py", text)
    for _ in range(2):
        shown = server.get("/")
        assert shown.status == 500
        assert f"app.py:{line}: ValueError: shown" in shown.text
    assert postgres.settled_count(app, at_most=1) == 1
    server.write("app.py", NAIVE.format(dsn=dsn, version=3, sleep=""))
    assert answer(server)["version"] == 3
    assert postgres.settled_count(app, at_most=1) == 1


HELPERS = """\
WORD = {word!r}

def shout():
    return WORD.upper()
"""

USES_HELPERS = """\
import json
import os
import sys
import helpers
from helpers import shout

LOADED = os.urandom(4).hex()

def handler(req):
    return "%s %s %s json-is-stdlib %s" % (
        helpers.WORD, shout(), LOADED, json is sys.modules["json"])
"""


def test_editing_a_helper_reloads_it_and_its_importer(httpd, mpm):
    """Editing a helper reloads it and its importer: 'import helpers' from the handler's
    directory is tracked; json is not."""
    server = serve(httpd, mpm, {"helpers.py": HELPERS.format(word="one"),
                                "app.py": USES_HELPERS}, processes=1)
    word, loud, loaded, _, stdlib = server.get("/").text.split()
    assert (word, loud, stdlib) == ("one", "ONE", "True")
    assert server.get("/").text.split()[2] == loaded, "an unchanged importer ran again"
    server.write("helpers.py", HELPERS.format(word="two"))
    word, loud, reloaded, _, stdlib = server.get("/").text.split()
    assert (word, loud, stdlib) == ("two", "TWO", "True")
    assert reloaded != loaded, "the module that imported helpers was not reloaded"
    assert re.search(r"reloaded \S+/helpers\.py \(generation 2\)", server.error_log())


def test_event_clients_never_fail_while_the_handler_is_rewritten(httpd, postgres):
    """8 concurrent clients under event, 20 rewrites of the handler, zero failed requests."""
    app = "reload_concurrent_event"
    dsn = postgres.dsn_for(app)
    # pg_sleep keeps requests in flight on old versions while new ones load.
    slow = ", pg_sleep(0.01)"
    server = serve(httpd, "event", {"app.py": NAIVE.format(dsn=dsn, version=0, sleep=slow)},
                   threads=8)
    assert answer(server)["version"] == 0
    seen: set[int] = set()
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                response = server.get("/")
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if response.status != 200:
                failures.append(f"{response.status}: {response.text[:300]}")
            else:
                seen.add(int(response.text.split()[1]))

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    worst = 0
    try:
        for version in range(1, 21):
            server.write("app.py", NAIVE.format(dsn=dsn, version=version, sleep=slow))
            for _ in range(200):  # bounded: until a client got the new version
                if version in seen or failures:
                    break
                time.sleep(0.02)
            assert version in seen, f"version {version} never answered; failures: {failures[:3]}"
            worst = max(worst, postgres.count_connections(app))
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    assert failures == []
    # Old and new may overlap while requests finish on the old version; never more.
    assert worst <= 3, f"{worst} connections while reloading"
    assert postgres.settled_count(app, at_most=1) == 1


PICKLED = """\
from __future__ import annotations

import dataclasses
import pickle
import typing

@dataclasses.dataclass(frozen=True)
class Note:
    text: str
    version: int
    tags: typing.List[str] = dataclasses.field(default_factory=list)

VERSION = {version}

def handler(req):
    hints = sorted(typing.get_type_hints(Note))
    if req.args:
        note = pickle.loads(bytes.fromhex(req.args))
        return "version %d same-class %s text %s from %d hints %s" % (
            VERSION, type(note) is Note, note.text, note.version, ",".join(hints))
    return "version %d blob %s" % (VERSION, pickle.dumps(Note("hello", VERSION, ["a"])).hex())
"""


def test_dataclass_and_pickle_work_across_reloads(httpd, mpm):
    """Dataclasses, typing and pickle work across reloads: the module is in sys.modules
    under its own label."""
    server = serve(httpd, mpm, {"app.py": PICKLED.format(version=1)}, processes=1)
    first = server.get("/")
    assert first.status == 200, first.text
    blob = first.text.split()[-1]
    server.write("app.py", PICKLED.format(version=2))
    again = server.get(f"/?{blob}")
    assert again.status == 200, again.text
    assert again.text == "version 2 same-class True text hello from 1 hints tags,text,version"


PLAIN_NAIVE = """\
import psycopg2
from mod_python import apache

conn = psycopg2.connect({dsn!r})

def handler(req):
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    conn.rollback()
    req.write("ok")
    return apache.OK
"""

EXIT_ROLE = "modpy_exit"


@pytest.fixture
def verbose_role(postgres: Any) -> str:
    """A login role whose sessions log at DEBUG1, where PostgreSQL reports a client EOF.

    A separate role keeps the extra logging away from every other test.
    """
    exists = postgres.admin_execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (EXIT_ROLE,))
    if not exists:
        postgres.admin_execute(f"CREATE ROLE {EXIT_ROLE} LOGIN PASSWORD %s", (postgres.password,))
    postgres.admin_execute(f"ALTER ROLE {EXIT_ROLE} SET log_min_messages = 'debug1'")
    return EXIT_ROLE


def eof_lines(postgres: Any, app: str) -> list[str]:
    """PostgreSQL log lines saying a client of ``app`` vanished without saying goodbye."""
    return [line for line in postgres.log_text().splitlines()
            if f"/{app} " in line and "unexpected EOF on client connection" in line]


def drained(postgres: Any, app: str, *, tries: int = 100) -> int:
    """Wait (bounded) until ``app`` has no connections; return what is left."""
    return postgres.settled_count(app, at_most=0, tries=tries)


def test_plain_mod_python_drops_connections_at_stop_baseline(httpd, mpm, postgres, verbose_role):
    """Baseline: without modpy_safe a stopping child never closes its connection: EOF logged."""
    app = f"exit_baseline_{mpm}"
    dsn = postgres.dsn_for(app).replace(f"user={postgres.role}", f"user={verbose_role}")
    server = httpd(mpm, processes=1, directory="PythonHandler plain",
                   files={"plain.py": PLAIN_NAIVE.format(dsn=dsn)})
    assert server.get("/plain.py").text == "ok"
    assert postgres.count_connections(app) == 1
    server.stop()
    assert drained(postgres, app) == 0
    for _ in range(100):  # the backend writes its last line as it exits
        if eof_lines(postgres, app):
            break
        time.sleep(0.05)
    assert eof_lines(postgres, app), "the baseline should show PostgreSQL's EOF line"


def test_stop_closes_every_connection_cleanly(httpd, mpm, postgres, verbose_role):
    """'httpd -k stop' closes what loaded modules hold; PostgreSQL sees no EOF."""
    app = f"exit_clean_{mpm}"
    dsn = postgres.dsn_for(app).replace(f"user={postgres.role}", f"user={verbose_role}")
    server = serve(httpd, mpm, {"app.py": NAIVE.format(dsn=dsn, version=0, sleep="")},
                   processes=2)
    pids = {answer(server)["pid"] for _ in range(4)}
    server.write("app.py", NAIVE.format(dsn=dsn, version=1, sleep=""))
    pids |= {answer(server)["pid"] for _ in range(4)}
    assert 1 <= postgres.settled_count(app, at_most=len(pids)) <= len(pids)
    server.stop()
    assert drained(postgres, app) == 0
    assert "closed 1 connection(s) held by loaded modules at process exit" in server.error_log()
    # Give the backends' own exit lines time to reach the log before looking.
    marker = f"modpy_safe exit check {app}"
    postgres.admin_execute("SELECT pg_catalog.set_config('application_name', %s, false)",
                           (marker,))
    assert eof_lines(postgres, app) == []


def test_max_connections_per_child_closes_cleanly(httpd, mpm, postgres, verbose_role):
    """A child retired by MaxConnectionsPerChild closes its connections too."""
    app = f"exit_recycled_{mpm}"
    dsn = postgres.dsn_for(app).replace(f"user={postgres.role}", f"user={verbose_role}")
    server = serve(httpd, mpm, {"app.py": NAIVE.format(dsn=dsn, version=0, sleep="")},
                   processes=1, max_connections_per_child=3)
    first = answer(server)
    for _ in range(20):  # bounded: each request is a new connection, the child retires
        got = answer(server)
        if got["pid"] != first["pid"]:
            break
    assert got["pid"] != first["pid"], "the child was never replaced"
    for _ in range(100):
        if first["backend"] not in postgres.backend_pids(app):
            break
        time.sleep(0.05)
    assert first["backend"] not in postgres.backend_pids(app)
    assert f"held by loaded modules at process exit (pid {first['pid']})" in server.error_log()
    assert eof_lines(postgres, app) == []
