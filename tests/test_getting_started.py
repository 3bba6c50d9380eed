"""docs/getting-started.md, followed as written on a stock Debian 12 apache2 (event MPM).

The test reads the page's own commands, files and configuration, in order, and
does what a reader does: it copies modpy_safe where the page says, saves the
handler files, saves the configuration in ``conf-available``, runs
``a2enconf``, (re)starts Apache, requests the URL the page's ``curl`` names and
creates the database role with the page's SQL. Only the places change: the
machine's ``/etc/apache2`` is copied into a private directory whose
``envvars`` point the pid file, logs and locks there and whose ports are free
ones, and ``/srv``, ``/opt`` and PostgreSQL's port move into the test's
directories. Everything else is Debian's stock configuration.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modpy_safe.testing import (
    APACHE2,
    CHECKOUT,
    PostgresServer,
    free_port,
    make_tempdir,
)

pytestmark = [pytest.mark.httpd, pytest.mark.slow]

PAGE = CHECKOUT / "docs" / "getting-started.md"
STOCK = Path("/etc/apache2")
_FENCE = re.compile(r"^```(?P<lang>\w*)(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


def walk_through() -> list[tuple[str, str, str]]:
    """Return the code blocks of the walk-through, in order: (language, title, text)."""
    text = PAGE.read_text()
    start = text.index("## Your first handler")
    end = text.index("## Publisher pages")
    blocks = []
    for found in _FENCE.finditer(text[start:end]):
        title = re.search(r'title="([^"]+)"', found["info"])
        blocks.append((found["lang"], title.group(1) if title else "", found["body"]))
    return blocks


def commands(blocks: list[tuple[str, str, str]]) -> list[list[str]]:
    """Return the shell commands of the walk-through, without ``sudo`` / ``sudo -u user``."""
    found = []
    for lang, _title, body in blocks:
        if lang != "sh":
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["sudo"]:
                words = words[3:] if words[1:2] == ["-u"] else words[1:]
            if words:
                found.append(words)
    return found


class DebianApache:
    """A copy of the machine's /etc/apache2, run as Debian's apache2ctl runs it."""

    def __init__(self, root: Path) -> None:
        self.confdir = root / "etc" / "apache2"
        shutil.copytree(STOCK, self.confdir, symlinks=True)
        self.port = free_port()
        self.run_dir, self.log_dir = root / "run", root / "log"
        for directory in (self.run_dir, root / "lock", self.log_dir):
            directory.mkdir()
        with open(self.confdir / "envvars", "a") as envvars:
            envvars.write(f"\nexport APACHE_PID_FILE={self.run_dir}/apache2.pid\n"
                          f"export APACHE_RUN_DIR={self.run_dir}\n"
                          f"export APACHE_LOCK_DIR={root / 'lock'}\n"
                          f"export APACHE_LOG_DIR={self.log_dir}\n")
        ports = self.confdir / "ports.conf"
        ports.write_text(re.sub(r"(?m)^Listen 80$", f"Listen 127.0.0.1:{self.port}",
                                ports.read_text()))
        for site in (self.confdir / "sites-enabled").iterdir():
            text = site.read_text().replace("*:80>", f"*:{self.port}>")
            site.unlink()  # a symlink into sites-available: change the copy only
            site.write_text(text)
        self.env = dict(os.environ, APACHE_CONFDIR=str(self.confdir))

    def run(self, *words: str) -> str:
        result = subprocess.run(list(words), env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, f"{words}: {result.stdout}{result.stderr}"
        return result.stdout

    def apache2(self, action: str) -> None:
        """``apache2ctl <action>`` without systemd: source envvars, then run apache2 -k."""
        self.run("sh", "-c", f'. "{self.confdir}/envvars" && exec {APACHE2} '
                             f'-d "{self.confdir}" -k {action}')

    def error_log(self) -> str:
        path = self.log_dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def request(self, path: str, body: str | None = None) -> tuple[int, str]:
        """GET ``path`` (POST the form ``body`` if given); return the status and the text."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            conn.request("POST" if body else "GET", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def wait_for(self, path: str, expect: str, tries: int = 100) -> None:
        """Request ``path`` until it answers 200 with ``expect`` in it (bounded)."""
        last: tuple[int, str] = (0, "")
        for _ in range(tries):
            try:
                last = self.request(path)
                if last[0] == 200 and expect in last[1]:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {expect!r}; last: {last[0]} "
                             f"{last[1][:300]}\n{self.error_log()[-3000:]}")

    def stop(self) -> None:
        pidfile = self.run_dir / "apache2.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        subprocess.run(["sh", "-c", f'. "{self.confdir}/envvars" && exec {APACHE2} '
                                    f'-d "{self.confdir}" -k stop'], env=self.env,
                       capture_output=True)
        for _ in range(400):
            if not Path(f"/proc/{pid}").exists():
                return
            time.sleep(0.05)


@pytest.fixture
def place() -> Iterator[Path]:
    root = make_tempdir("modpy_safe-getting-started-")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.timeout(300)
def test_the_walk_through_works_on_stock_debian_apache(place: Path) -> None:
    if os.geteuid() != 0 or not (STOCK / "apache2.conf").exists():
        pytest.skip("needs root and Debian's /etc/apache2")
    blocks = walk_through()
    steps = commands(blocks)
    srv, opt = place / "srv", place / "opt"

    def here(text: str) -> str:
        """The page's paths, moved into this test's directory."""
        return text.replace("/srv/", f"{srv}/").replace("/opt/", f"{opt}/")

    # 1. The packages the page installs are the ones this machine has.
    installs = [w[2:] for w in steps if w[:2] == ["apt-get", "install"]]
    assert installs[0][:3] == ["apache2", "libapache2-mod-python", "python3-psycopg2"], installs
    for package in installs[0] + installs[1]:
        subprocess.run(["dpkg", "-s", package], check=True, capture_output=True)
    debian = DebianApache(place)
    assert (debian.confdir / "mods-enabled" / "mpm_event.load").exists(), "stock is event"
    assert (debian.confdir / "mods-enabled" / "python.load").exists()
    # ... and modpy_safe goes where the page installs it, with what it needs.
    pip = [[here(x) for x in w] for w in steps if w[:3] == ["python3", "-m", "pip"]][0]
    subprocess.run(["/usr/bin/" + pip[0], *pip[1:]], cwd=CHECKOUT, check=True,
                   capture_output=True)

    # 2-4. hello.py, the configuration, a2enconf, a (re)start, the curl.
    pythons = [(title, body) for lang, title, body in blocks if lang == "python"]
    apaches = [body for lang, title, body in blocks if lang == "apache" and not title]
    site = srv / "site"
    site.mkdir(parents=True)
    site.chmod(0o755)
    (site / "hello.py").write_text(pythons[0][1])
    enable = next(w for w in steps if w[0] == "a2enconf")
    conf = debian.confdir / "conf-available" / f"{enable[1]}.conf"
    conf.write_text(here(apaches[0]))
    debian.run(*enable)
    assert (debian.confdir / "conf-enabled" / f"{enable[1]}.conf").exists()
    postgres: PostgresServer | None = None
    try:
        debian.apache2("start")
        url = next(w[1] for w in steps if w[0] == "curl")
        path = re.sub(r"^http://localhost", "", url)
        assert debian.request(path) == (200, "Hello, world!"), debian.error_log()[-3000:]
        assert "mpm_event:notice" in debian.error_log()
        (site / "hello.py").write_text(pythons[1][1])  # the edit: no reload of Apache
        debian.wait_for(path, '"version": 2')

        # A resource as a class: greet.py, its <Files> section inside the <Directory>.
        title, greet = pythons[2]
        assert title == "greet.py"
        (site / "greet.py").write_text(greet)
        files_section = next(body for _lang, t, body in blocks
                             if t == "site.conf" and "<Files" in body)
        files_section = files_section.replace("PythonHandler modpy_safe.dispatch\n", "")
        conf.write_text(conf.read_text().replace("</Directory>", _indent(files_section)
                                                 + "</Directory>"))
        debian.apache2("graceful")
        debian.wait_for("/site/greet.py?name=Zo%C3%AB", "Zoë")
        status, text = debian.request("/site/greet.py", body="name=Ada")
        assert status == 201 and json.loads(text) == {"hello": "Ada"}
        assert '"version": 2' in debian.request(path)[1]  # hello.py is still its own page

        # Talking to PostgreSQL: the role and database the page creates, the DSN it adds.
        postgres = PostgresServer(place / "pg")
        postgres.init()
        postgres.start()
        psql = next(w for w in steps if w[0] == "psql")
        postgres.admin_execute(psql[psql.index("-c") + 1])
        createdb = next(w for w in steps if w[0] == "createdb")
        owner = createdb[createdb.index("--owner") + 1]
        postgres.admin_execute(f"CREATE DATABASE {createdb[-1]} OWNER {owner}")
        title, visits = pythons[3]
        assert title == "visits.py"
        (site / "visits.py").write_text(visits)
        dsn_line = apaches[1].strip().replace("host=127.0.0.1",
                                              f"host=127.0.0.1 port={postgres.port}")
        conf.write_text(conf.read_text().replace("</Directory>", f"    {dsn_line}\n</Directory>"))
        debian.apache2("graceful")
        debian.wait_for("/site/visits.py", "visit number 1")
        assert debian.request("/site/visits.py") == (200, "visit number 2")
    finally:
        debian.stop()
        if postgres is not None:
            postgres.stop("immediate")


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())
