"""``make run`` as a user runs it: start, use the printed URLs, stop, and nothing is left.

While it runs, a changed handler file is reloaded on the next request (a higher
generation on the status page) with the same number of database connections;
a second start finds the data of the first.

The run uses a free ``PORT`` and a temporary ``STATE`` directory, so it never
touches a ``make run`` of the checkout's own ``.run/``. It is started in its own
session, like a terminal's foreground job, so "Ctrl-C" is a SIGINT to the
whole process group, exactly what the terminal sends.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from modpy_safe.testing import CHECKOUT, free_port, make_tempdir


class MakeRun:
    """One ``make run`` in the background, its output in a file."""

    def __init__(self, state: Path, port: int, mpm: str, handlers: Path) -> None:
        self.state, self.port, self.mpm = state, port, mpm
        self.log = state.parent / f"make-run-{mpm}.log"
        # The checkout's own handlers/ unless httpd cannot read them there.
        served = [] if handlers == CHECKOUT / "handlers" else [f"HANDLERS={handlers}"]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["make", "--no-print-directory", "run", f"PORT={port}", f"STATE={state}",
                 f"MPM={mpm}", *served],
                cwd=CHECKOUT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, tries: int = 1200) -> dict[str, str]:
        """Wait (bounded) for the banner; return the URLs it printed by label."""
        for _ in range(tries):
            text = self.output()
            if "Press Ctrl-C" in text:
                return dict(re.findall(r"^\s+(app|API|status|health):\s+(\S+)$", text, re.M))
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"make run did not come up (exit {self.proc.poll()}):\n"
                             f"{self.output()}")

    def wait_exit(self, tries: int = 600) -> int:
        for _ in range(tries):
            code = self.proc.poll()
            if code is not None:
                return code
            time.sleep(0.1)
        raise AssertionError(f"make run is still running after a stop:\n{self.output()}")

    def kill(self) -> None:
        """Last resort in ``finally``: stop whatever is left of this run."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def processes_using(state: Path) -> list[str]:
    """Return the command lines of running processes that mention ``state`` (httpd, postgres)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if str(state) in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z":
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def wait_until_gone(state: Path, tries: int = 200) -> None:
    """Wait (bounded) until no process mentions ``state``; then check the stop was clean."""
    for _ in range(tries):
        if not processes_using(state):
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"still running after the stop: {processes_using(state)}")
    # httpd stops first and its children close their connections as they exit, so
    # PostgreSQL never sees a client vanish or has to terminate one itself.
    log = (state / "pg" / "postgres.log").read_text(errors="replace")
    for sign in ("unexpected EOF on client connection", "terminating connection due to"):
        assert sign not in log, f"PostgreSQL's log shows an unclean stop:\n{log[-3000:]}"


def fetch(url: str, data: Any = None) -> tuple[int, str, bytes]:
    """GET (or POST JSON ``data`` to) ``url``; return status, content type and body."""
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json",
                                                              "Accept": "text/html"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def served_handlers(tmp: Path) -> Path:
    """Return the handlers/ that make run can serve: the checkout's, or a readable copy.

    A checkout that httpd's user cannot read (under /root, say) makes 'make run'
    refuse with a message (tested below); the run itself is then tested on a copy.
    """
    from fix_notes import copy_handlers

    serve = load_serve()
    if os.geteuid() != 0 or serve.unreadable_for(
            serve.pwd.getpwnam("www-data"), CHECKOUT / "handlers") is None:
        return CHECKOUT / "handlers"
    copy_handlers(tmp / "handlers")
    return tmp / "handlers"


def check_reload_keeps_connections(state: Path, port: int, handlers: Path) -> None:
    """A changed file under handlers/ reloads on the next request, on the same connections.

    The test does not change the checkout's code: it bumps the modification time of
    handlers/health.py, which is all the importer looks at.
    """
    import http.client

    from modpy_safe.testing import PostgresServer

    serve = load_serve()
    pg = PostgresServer(state / "pg", port=int((state / "pg" / "port").read_text()))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # keep-alive: one child

    def get(path: str) -> Any:
        conn.request("GET", path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body[:500]
        return json.loads(body)

    def generation() -> int:
        modules = get("/status?format=json")["modules"]
        return max(m["generation"] for m in modules if m["path"].endswith("/health.py"))

    try:
        get("/health")
        before, connections = generation(), pg.count_connections(serve.APPLICATION_NAME)
        assert connections >= 1
        health = handlers / "health.py"
        stamp = max(time.time_ns(), health.stat().st_mtime_ns + 1_000_000)
        os.utime(health, ns=(stamp, stamp))
        for _ in range(100):  # the file is checked at most once a second
            get("/health")
            if generation() > before:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"health.py was not reloaded (generation {before})")
        assert pg.count_connections(serve.APPLICATION_NAME) == connections
    finally:
        conn.close()


def load_serve() -> Any:
    from fix_notes import load_serve as load

    return load()


def port_is_closed(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.httpd
@pytest.mark.slow
@pytest.mark.timeout(300)  # two full starts of httpd and PostgreSQL through make
def test_make_run_serves_the_urls_it_prints_and_stops_cleanly() -> None:
    if shutil.which("make") is None:
        pytest.fail("'make' is not installed: apt-get install make")
    tmp = make_tempdir("modpy_safe-make-run-")
    state = tmp / "state"
    port = free_port()
    handlers = served_handlers(tmp)
    run: MakeRun | None = None
    try:
        # First run (event): the URLs answer; "make stop" from another terminal ends it.
        run = MakeRun(state, port, "event", handlers)
        urls = run.wait_ready()
        base = f"http://127.0.0.1:{port}"
        assert urls == {"app": f"{base}/", "API": f"{base}/api/notes",
                        "status": f"{base}/status", "health": f"{base}/health"}, run.output()
        status, ctype, page = fetch(urls["app"])
        assert (status, ctype.split(";")[0]) == (200, "text/html") and b"<form" in page
        status, _, created = fetch(urls["API"], {"text": "kept across restarts ✓"})
        assert status == 201, created
        status, ctype, listing = fetch(urls["API"])
        assert status == 200 and ctype == "application/json"
        assert "kept across restarts ✓" in [n["text"] for n in json.loads(listing)["notes"]]
        status, ctype, report = fetch(urls["status"])
        assert (status, ctype.split(";")[0]) == (200, "text/html"), report[:500]
        assert fetch(urls["health"])[0] == 200
        assert processes_using(state), "neither httpd nor postgres mention the state directory"
        check_reload_keeps_connections(state, port, handlers)

        stop = subprocess.run(["make", "--no-print-directory", "stop", f"STATE={state}"],
                              cwd=CHECKOUT, capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert run.wait_exit() == 0, run.output()
        assert "httpd and PostgreSQL stopped" in run.output()
        wait_until_gone(state)
        assert port_is_closed(port)
        assert not (state / "serve.pid").exists()

        # Second run (prefork) on the same state: the data survived; Ctrl-C ends it.
        run = MakeRun(state, port, "prefork", handlers)
        urls = run.wait_ready()
        status, _, listing = fetch(urls["API"])
        assert status == 200
        assert "kept across restarts ✓" in [n["text"] for n in json.loads(listing)["notes"]]
        os.killpg(run.proc.pid, signal.SIGINT)
        # make itself dies of the SIGINT once its recipe (serve.py) has finished.
        assert run.wait_exit() in (0, -signal.SIGINT), run.output()
        wait_until_gone(state)  # serve.py too: its command line names the state directory
        assert "httpd and PostgreSQL stopped" in run.output()
        assert port_is_closed(port)
    finally:
        if run is not None:
            run.kill()
            if processes_using(state):
                subprocess.run(["make", "--no-print-directory", "stop", f"STATE={state}"],
                               cwd=CHECKOUT, capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def test_make_run_explains_when_httpd_cannot_read_the_handlers() -> None:
    if os.geteuid() != 0:
        pytest.skip("httpd only switches to www-data when started as root")
    serve = load_serve()
    tmp = make_tempdir("modpy_safe-unreadable-")
    try:
        handlers = tmp / "home" / "checkout" / "handlers"
        handlers.mkdir(parents=True)
        (handlers / "index.py").write_text("def index(req):\n    return 'hi'\n")
        assert serve.unreadable_for(serve.pwd.getpwnam("www-data"), handlers) is None
        (tmp / "home").chmod(0o700)  # like a checkout under /root
        with pytest.raises(serve.SetupError) as caught:
            serve.check_readable(handlers)
        message = str(caught.value)
        assert f"cannot read {tmp / 'home'}" in message and "chmod o+x" in message
        (tmp / "home").chmod(0o755)
        (handlers / "index.py").chmod(0o600)
        assert serve.unreadable_for(serve.pwd.getpwnam("www-data"), handlers) == (
            handlers / "index.py")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _postmaster_port(state: Path) -> int:
    """Return the port the running cluster in ``state`` listens on (its postmaster.pid)."""
    lines = (state / "pg" / "data" / "postmaster.pid").read_text().splitlines()
    return int(lines[3])


def _browser_request(port: int) -> tuple[Any, bytes]:
    """Send one keep-alive GET /health as a browser does; return the socket and the answer."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return sock, head


def _closed_by_server(sock: Any, tries: int = 40) -> bool:
    """Poll (bounded, well under Apache's 5 s KeepAliveTimeout) for the server's end of ``sock``."""
    import select

    for _ in range(tries):
        if select.select([sock], [], [], 0.05)[0]:
            return sock.recv(1) == b""
    return False


@pytest.mark.httpd
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_closing_the_terminal_stops_httpd_and_postgres() -> None:
    """SIGHUP to the terminal's process group (the window closed) cleans up like Ctrl-C."""
    tmp = make_tempdir("modpy_safe-make-run-hup-")
    state, port = tmp / "state", free_port()
    run: MakeRun | None = None
    try:
        run = MakeRun(state, port, "event", served_handlers(tmp))
        urls = run.wait_ready()
        assert fetch(urls["health"])[0] == 200
        assert processes_using(state)
        os.killpg(run.proc.pid, signal.SIGHUP)
        assert run.wait_exit() in (0, -signal.SIGHUP, 2), run.output()
        wait_until_gone(state)  # serve.py, httpd and PostgreSQL
        assert "httpd and PostgreSQL stopped" in run.output()
        assert port_is_closed(port)
        assert not (state / "serve.pid").exists()
    finally:
        if run is not None:
            run.kill()
            if processes_using(state):
                subprocess.run(["make", "--no-print-directory", "stop", f"STATE={state}"],
                               cwd=CHECKOUT, capture_output=True, timeout=120)
        for line in processes_using(state):  # what make stop cannot reach: orphans
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.httpd
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_new_run_replaces_what_a_killed_run_left_and_prefork_frees_idle_browsers() -> None:
    """After a kill -9 of 'make run', the next one stops the orphans and writes the real port.

    Its prefork site then answers a third browser connection while two others
    stay connected: the server closes an answered connection instead of keeping
    one of its two children waiting for the browser's next request.
    """

    tmp = make_tempdir("modpy_safe-make-run-orphans-")
    state, port = tmp / "state", free_port()
    handlers = served_handlers(tmp)
    run: MakeRun | None = None
    held: list[Any] = []
    try:
        run = MakeRun(state, port, "event", handlers)
        run.wait_ready()
        orphaned_httpd = int((state / "httpd" / "run" / "httpd.pid").read_text())
        old_pg_port = _postmaster_port(state)
        serve_pid = int((state / "serve.pid").read_text())
        os.kill(serve_pid, signal.SIGKILL)  # no clean-up at all: httpd and PostgreSQL stay
        run.wait_exit()
        assert processes_using(state), "the killed run left nothing behind to test with"
        # The orphan still holds the cluster's port: a naive restart would move the port
        # file to a new one while the orphan keeps serving on the old.
        assert _postmaster_port(state) == old_pg_port

        run = MakeRun(state, port, "prefork", handlers)
        urls = run.wait_ready()
        output = run.output()
        assert f"stopped httpd (pid {orphaned_httpd})" in output, output
        assert "stopped PostgreSQL" in output, output
        assert not Path(f"/proc/{orphaned_httpd}").exists() or orphaned_httpd != int(
            (state / "httpd" / "run" / "httpd.pid").read_text())
        assert int((state / "pg" / "port").read_text()) == _postmaster_port(state)
        status, _, listing = fetch(urls["API"])
        assert status == 200, listing[:500]

        for _ in range(2):  # two browser connections, answered and left open
            sock, head = _browser_request(port)
            held.append(sock)
            assert head.startswith(b"HTTP/1.1 200"), head
        # Answered, the server lets go of them: no child waits for their next request
        # (it would for KeepAliveTimeout, 5 s), so a third connection finds one free.
        assert all(_closed_by_server(sock) for sock in held), "a child waits on an idle browser"
        assert fetch(urls["health"])[0] == 200
    finally:
        for conn in held:
            conn.close()
        if run is not None:
            run.kill()
        if processes_using(state):
            subprocess.run(["make", "--no-print-directory", "stop", f"STATE={state}"],
                           cwd=CHECKOUT, capture_output=True, timeout=120)
        for line in processes_using(state):  # what make stop cannot reach: the orphans
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
