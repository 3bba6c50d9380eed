"""Run handlers through a real Apache httpd and a private PostgreSQL in tests.

This module is a pytest plugin (registered by the ``pytest11`` entry point), so
a project that installs modpy_safe gets its fixtures:

``postgres`` (session)
    A private PostgreSQL cluster made with Debian's ``initdb`` in a temporary
    directory, on a free port, with password authentication for a test role.
    When the tests run as root the cluster runs as the ``postgres`` user.
``httpd`` (factory)
    ``httpd(mpm="prefork", directory="PythonHandler ...", files={...})`` starts
    an httpd with mod_python for one MPM on a free port and returns a
    :class:`Httpd`; every server is stopped when the test ends, and its error
    log is shown when the test failed.
``mpm``
    Parametrizes a test over ``prefork``, ``worker`` and ``event``.

The classes work without pytest too: ``apache/serve.py`` (``make run``) uses them.
"""
from __future__ import annotations

import contextlib
import glob
import http.client
import json as _json
import os
import pwd
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = [
    "PostgresServer", "PgBouncer", "Httpd", "Response", "MPMS", "free_port", "SetupError",
    "make_tempdir", "readable_pythonpath", "running",
]

MPMS = ("prefork", "worker", "event")

CHECKOUT = Path(__file__).resolve().parent.parent
APACHE2 = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


class SetupError(RuntimeError):
    """Something the harness needs is missing or did not start."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service_user(name: str) -> pwd.struct_passwd | None:
    """Return the account to drop to when running as root, or None when not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise SetupError(
            f"the tests run as root, and the unprivileged user {name!r} does not exist; "
            f"install the Debian package that creates it (postgresql, apache2)"
        ) from None


def _make_dir(path: Path, mode: int = 0o755, owner: pwd.struct_passwd | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        raise SetupError(
            "PostgreSQL's initdb was not found under /usr/lib/postgresql/*/bin: "
            "install the Debian package 'postgresql' (make test does this as root)"
        )
    return Path(found[-1]).parent


class PostgresServer:
    """A private PostgreSQL cluster for tests and for ``make run``.

    ``base`` holds the data directory, the socket and the log. With
    ``persistent=True`` an existing cluster in ``base`` is reused (``make run``
    keeps its data across restarts).
    """

    role = "modpy"
    dbname = "modpy"

    def __init__(self, base: Path, *, port: int | None = None, password: str | None = None) -> None:
        self.base = Path(base)
        self.bindir = _pg_bindir()
        self.os_user = _service_user("postgres")
        self.port = port or free_port()
        self.data = self.base / "data"
        self.sockdir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        secret_file = self.base / "password"
        if password is None and secret_file.exists():
            password = secret_file.read_text().strip()
        self.password = password or "pw-" + secrets.token_hex(8)
        self._secret_file = secret_file

    # -- lifecycle ------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self.os_user is not None:
            kwargs.update(user=self.os_user.pw_uid, group=self.os_user.pw_gid, extra_groups=[])
        return subprocess.run(
            args, check=check, capture_output=True, text=True, cwd=str(self.base), **kwargs
        )

    def init(self) -> None:
        """Create the cluster, its role and database (skipped when it exists)."""
        _make_dir(self.base, 0o755, self.os_user)
        _make_dir(self.sockdir, 0o755, self.os_user)
        if (self.data / "PG_VERSION").exists():
            self._write_conf()
            return
        pwfile = self.base / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        if self.os_user is not None:
            os.chown(pwfile, self.os_user.pw_uid, self.os_user.pw_gid)
        try:
            result = self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8", "--pwfile", str(pwfile), check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise SetupError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        self._secret_file.write_text(self.password + "\n")
        os.chmod(self._secret_file, 0o600)
        self._write_conf()
        self.start()
        self.admin_execute(
            f"CREATE ROLE {self.role} LOGIN CREATEDB PASSWORD %s", (self.password,)
        )
        self.admin_execute(f"CREATE DATABASE {self.dbname} OWNER {self.role}")

    def _write_conf(self) -> None:
        conf = self.data / "postgresql.auto.conf"
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sockdir}'",
            "max_connections": "200",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d/%a '",
            "password_encryption": "'scram-sha-256'",
        }
        text = "".join(f"{k} = {v}\n" for k, v in settings.items())
        conf.write_text("# written by modpy_safe.testing\n" + text)
        if self.os_user is not None:
            os.chown(conf, self.os_user.pw_uid, self.os_user.pw_gid)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self.is_running():
            return
        result = self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile),
            "-w", "-t", "60", "start", check=False,
        )
        if result.returncode != 0:
            raise SetupError(
                f"PostgreSQL did not start on port {self.port}:\n{result.stderr}\n"
                f"{_tail(self.logfile)}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` disconnects clients; ``immediate`` is a crash)."""
        if not self.is_running():
            return
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                  check=False)

    def restart(self) -> None:
        """Stop and start the server, as a database restart in production does."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "status",
                           check=False)
        return result.returncode == 0

    # -- access ---------------------------------------------------------------
    @property
    def dsn(self) -> str:
        """A libpq DSN for the test role over TCP with password authentication."""
        return (
            f"host=127.0.0.1 port={self.port} dbname={self.dbname} "
            f"user={self.role} password={self.password}"
        )

    def dsn_for(self, application_name: str) -> str:
        """The test DSN with ``application_name`` set, to count its connections."""
        return f"{self.dsn} application_name={application_name}"

    @property
    def admin_dsn(self) -> str:
        """A superuser DSN over the private Unix socket (trust authentication)."""
        return f"host={self.sockdir} port={self.port} dbname=postgres user=postgres"

    def admin_execute(
        self, sql: str, params: tuple[Any, ...] = (), *, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run ``sql`` as superuser in autocommit in ``dbname``; return the rows (if any)."""
        import psycopg2

        dsn = self.admin_dsn.replace("dbname=postgres", f"dbname={dbname}")
        conn = psycopg2.connect(dsn, application_name="modpy_safe.testing")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def backend_pids(self, application_name: str) -> list[int]:
        """Return the server pids of the client connections with ``application_name``."""
        rows = self.admin_execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
            "AND backend_type = 'client backend' ORDER BY pid",
            (application_name,),
        )
        return [row[0] for row in rows]

    def count_connections(self, application_name: str) -> int:
        """Count the server's connections with ``application_name`` (pg_stat_activity)."""
        return len(self.backend_pids(application_name))

    def settled_count(
        self,
        application_name: str,
        *,
        expected: int | None = None,
        at_most: int | None = None,
        tries: int = 200,
    ) -> int:
        """Count ``application_name``'s connections once the count is ``expected``
        (or at most ``at_most``), polling a bounded number of times.

        A backend leaves pg_stat_activity a moment after its client closed the
        socket, so a count taken right after a close can still include it.
        Returns the last count, settled or not: the caller asserts on it.
        """
        count = self.count_connections(application_name)
        for _ in range(tries):
            if (expected is None or count == expected) and (at_most is None or count <= at_most):
                break
            time.sleep(0.05)
            count = self.count_connections(application_name)
        return count

    def terminate(self, application_name: str) -> int:
        """Kill every backend with ``application_name``; return how many."""
        rows = self.admin_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND backend_type = 'client backend'",
            (application_name,),
        )
        return len(rows)

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


# --------------------------------------------------------------------- PgBouncer

PGBOUNCER = "/usr/sbin/pgbouncer"


class PgBouncer:
    """PgBouncer in transaction pooling mode in front of a :class:`PostgresServer`.

    Clients connect to :attr:`dsn` with the same role and password as the
    server's; PgBouncer keeps at most ``pool_size`` server connections.
    """

    def __init__(self, base: Path, postgres: PostgresServer, *, pool_size: int = 10) -> None:
        if not Path(PGBOUNCER).exists():
            raise SetupError("PgBouncer is not installed: install the Debian package 'pgbouncer'")
        self.base = Path(base)
        self.postgres = postgres
        self.pool_size = pool_size
        self.port = free_port()
        self.os_user = _service_user("postgres")
        self.logfile = self.base / "pgbouncer.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        _make_dir(self.base, 0o755, self.os_user)
        pg = self.postgres
        userlist = self.base / "userlist.txt"
        userlist.write_text(f'"{pg.role}" "{pg.password}"\n')
        os.chmod(userlist, 0o600)
        ini = self.base / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{pg.dbname} = host=127.0.0.1 port={pg.port} dbname={pg.dbname}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.base}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {userlist}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 1000\n"
            f"default_pool_size = {self.pool_size}\n"
            f"logfile = {self.logfile}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        if self.os_user is not None:
            for path in (userlist, ini):
                os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
        return ini

    @property
    def dsn(self) -> str:
        """The test role's DSN through PgBouncer."""
        pg = self.postgres
        return (f"host=127.0.0.1 port={self.port} dbname={pg.dbname} "
                f"user={pg.role} password={pg.password}")

    def dsn_for(self, application_name: str) -> str:
        return f"{self.dsn} application_name={application_name}"

    def start(self, *, tries: int = 100) -> "PgBouncer":
        """Start PgBouncer and wait (bounded) until it accepts a connection."""
        import psycopg2

        ini = self._write_config()
        kwargs: dict[str, Any] = {}
        if self.os_user is not None:
            kwargs.update(user=self.os_user.pw_uid, group=self.os_user.pw_gid, extra_groups=[])
        self._proc = subprocess.Popen([PGBOUNCER, str(ini)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, **kwargs)
        last: Exception | None = None
        for _ in range(tries):
            try:
                psycopg2.connect(self.dsn, connect_timeout=2).close()
                return self
            except psycopg2.OperationalError as exc:
                last = exc
                if self._proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise SetupError(f"PgBouncer did not start: {last}\n{_tail(self.logfile)}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


# ------------------------------------------------------------------------ httpd


@dataclass
class Response:
    """What httpd answered."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""
    header_list: list[tuple[str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.body)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


def readable_pythonpath(root: Path) -> str:
    """Return a directory holding ``modpy_safe`` that httpd's ``User`` can read (see below)."""
    return _readable_pythonpath(Path(root), _service_user("www-data"))


def _readable_pythonpath(root: Path, www: pwd.struct_passwd | None) -> str:
    """Return a directory holding ``modpy_safe`` that httpd's ``User`` can read.

    The checkout is used as it is when that user can read it; otherwise (a
    checkout under /root, say) the package is copied into the server's directory.
    """
    if www is None or _user_can_import(www, CHECKOUT):
        return str(CHECKOUT)
    lib = _make_dir(root / "lib")
    shutil.copytree(CHECKOUT / "modpy_safe", lib / "modpy_safe", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirnames, filenames in os.walk(lib):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return str(lib)


_import_checks: dict[tuple[int, str], bool] = {}


def _user_can_import(user: pwd.struct_passwd, path: Path) -> bool:
    key = (user.pw_uid, str(path))
    if key not in _import_checks:
        probe = subprocess.run(
            ["/usr/bin/python3", "-c", f"import os; os.listdir({str(path / 'modpy_safe')!r})"],
            user=user.pw_uid, group=user.pw_gid, extra_groups=[], capture_output=True,
            env={"PATH": "/usr/bin:/bin"}, cwd="/",
        )
        _import_checks[key] = probe.returncode == 0
    return _import_checks[key]


class Httpd:
    """One Apache httpd with mod_python, configured for one MPM, on a free port.

    ``directory`` is the body of the ``<Directory>`` section for the document
    root (where a test writes its handler files); ``options`` become
    ``PythonOption`` lines in it; ``extra`` is appended to the server config.
    """

    def __init__(
        self,
        root: Path,
        *,
        mpm: str = "prefork",
        directory: str = "",
        options: Mapping[str, str] | None = None,
        files: Mapping[str, str] | None = None,
        extra: str = "",
        debug: bool = False,
        autoreload: bool = True,
        processes: int | None = None,
        threads: int = 8,
        max_connections_per_child: int = 0,
        loglevel: str = "info",
        port: int | None = None,
        docroot: Path | None = None,
        purpose: str = "tests",
        preload: bool = True,
    ) -> None:
        if mpm not in MPMS:
            raise ValueError(f"mpm must be one of {', '.join(MPMS)}, not {mpm!r}")
        if not Path(APACHE2).exists() or not (APACHE_MODULES / "mod_python.so").exists():
            raise SetupError(
                "Apache httpd with mod_python is not installed: install the Debian "
                "packages 'apache2' and 'libapache2-mod-python' (make test does this as root)"
            )
        self.root = _make_dir(Path(root))
        self.mpm = mpm
        self.port = port or free_port()
        self.docroot = _make_dir(Path(docroot)) if docroot else _make_dir(self.root / "htdocs")
        self.www = _service_user("www-data")
        if processes is None:
            processes = 2 if mpm == "prefork" else 1
        self.processes = processes
        self.threads = 1 if mpm == "prefork" else threads
        option_lines = "".join(
            f'    PythonOption {name} "{value}"\n' for name, value in (options or {}).items()
        )
        self.settings = dict(
            purpose=purpose,
            root=str(self.root),
            docroot=str(self.docroot),
            port=str(self.port),
            mpm=mpm,
            user=self.www.pw_name if self.www else pwd.getpwuid(os.getuid()).pw_name,
            group="www-data" if self.www else _group_name(),
            loglevel=loglevel,
            debug="On" if debug else "Off",
            autoreload="On" if autoreload else "Off",
            directory=_indent(directory) + option_lines,
            extra=extra,
            processes=str(processes),
            threads=str(self.threads),
            max_workers=str(processes * self.threads),
            max_connections_per_child=str(max_connections_per_child),
            # What docs/deploying.md tells users: import the framework (and so
            # psycopg2) when a child starts, before its threads race to it.
            preload=("PythonImport modpy_safe.dispatch 127.0.0.1" if preload
                     else "# no preload: the first requests import the framework"),
        )
        self.conf = self.root / "httpd.conf"
        self.error_log_path = self.root / "logs" / "error.log"
        self.pidfile = self.root / "run" / "httpd.pid"
        for name, text in (files or {}).items():
            self.write(name, text)

    # -- configuration ----------------------------------------------------------
    def render(self) -> str:
        _make_dir(self.root / "logs")
        _make_dir(self.root / "run", 0o777)
        self.settings["pythonpath"] = repr(_readable_pythonpath(self.root, self.www))
        mpm_tpl = (_template_dir() / f"mpm_{self.mpm}.conf.in").read_text()
        mpm_section = string.Template(mpm_tpl).substitute(self.settings)
        settings = dict(self.settings, mpm_section=mpm_section)
        text = string.Template((_template_dir() / "httpd.conf.in").read_text()).substitute(settings)
        self.conf.write_text(text)
        return text

    # -- lifecycle --------------------------------------------------------------
    def start(self, *, tries: int = 100) -> "Httpd":
        """Start httpd and wait (at most ``tries`` polls) until it answers."""
        self.render()
        result = subprocess.run([APACHE2, "-f", str(self.conf), "-k", "start"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupError(f"httpd did not start:\n{result.stdout}{result.stderr}\n"
                             f"{self.log_tail()}")
        for _ in range(tries):
            if self.pidfile.exists():
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("OPTIONS", "*")
                    conn.getresponse().read()
                    return self
                except OSError:
                    pass
                finally:
                    # A child reset the probe while starting: an unclosed socket would
                    # surface later as a ResourceWarning, an error under -W error.
                    conn.close()
            time.sleep(0.05)
        raise SetupError(f"httpd on port {self.port} did not answer after {tries} tries:\n"
                         f"{self.log_tail()}")

    def main_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def child_pids(self) -> list[int]:
        """Return the pids of httpd's child processes."""
        pid = self.main_pid()
        if pid is None:
            return []
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self, *, timeout: float = 20.0) -> None:
        """``httpd -k stop`` and wait until every httpd process of this server is gone."""
        pid = self.main_pid()
        if pid is None:
            return
        subprocess.run([APACHE2, "-f", str(self.conf), "-k", "stop"], capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()

    def graceful(self, *, tries: int = 200) -> None:
        """``httpd -k graceful``: children finish their requests and are replaced."""
        old = set(self.child_pids())
        subprocess.run([APACHE2, "-f", str(self.conf), "-k", "graceful"], capture_output=True)
        for _ in range(tries):
            now = set(self.child_pids())
            if now and not (now & old):
                return
            time.sleep(0.05)

    def __enter__(self) -> "Httpd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- files ------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.docroot / name

    def write(self, name: str, text: str | bytes) -> Path:
        """Write a file under the document root so that its mtime surely changes."""
        path = self.docroot / name
        _make_dir(path.parent)
        before = path.stat().st_mtime_ns if path.exists() else 0
        data = text.encode() if isinstance(text, str) else text
        path.write_bytes(data)
        os.chmod(path, 0o644)
        # Coarse file-system timestamps must not hide a rewrite in the same tick.
        after = path.stat().st_mtime_ns
        if after <= before:
            stamp = before + 1_000_000
            os.utime(path, ns=(stamp, stamp))
        return path

    def remove(self, name: str) -> None:
        (self.docroot / name).unlink()

    # -- requests ---------------------------------------------------------------
    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        """Send one request on a new connection and return what httpd answered."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data, headers=dict(headers or {}))
            resp = conn.getresponse()
            payload = resp.read()
            header_list = [(k, v) for k, v in resp.getheaders()]
            return Response(resp.status, {k.lower(): v for k, v in header_list}, payload,
                            resp.reason, header_list)
        finally:
            conn.close()

    def get(self, path: str = "/", **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: Mapping[str, str] | bytes | str, **kw: Any) -> Response:
        """POST ``data``: a mapping is sent urlencoded, bytes or str as they are."""
        headers = dict(kw.pop("headers", {}) or {})
        if isinstance(data, Mapping):
            from urllib.parse import urlencode

            data = urlencode(data)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return self.request("POST", path, body=data, headers=headers, **kw)

    def wait_for(
        self,
        path: str,
        predicate: Callable[[Response], bool] | str,
        *,
        tries: int = 100,
        delay: float = 0.1,
    ) -> Response:
        """Request ``path`` until ``predicate`` holds (or the text appears); bounded."""
        if isinstance(predicate, str):
            needle = predicate
            predicate = lambda r: needle in r.text  # noqa: E731 - a one-line predicate
        last: Response | None = None
        for _ in range(tries):
            last = self.get(path)
            if predicate(last):
                return last
            time.sleep(delay)
        raise AssertionError(
            f"{path} never answered as expected after {tries} tries; last answer "
            f"{last.status if last else '-'}: {last.text[:500] if last else ''}\n{self.log_tail()}"
        )

    # -- logs -------------------------------------------------------------------
    def error_log(self) -> str:
        path = self.error_log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return f"--- tail of {self.error_log_path}:\n{_tail(self.error_log_path, lines)}"


def _indent(text: str) -> str:
    return "".join(f"    {line.strip()}\n" for line in text.strip().splitlines() if line.strip())


def _group_name() -> str:
    import grp

    return grp.getgrgid(os.getgid()).gr_name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _template_dir() -> Path:
    for candidate in (CHECKOUT / "apache", Path(__file__).parent / "apache_templates"):
        if (candidate / "httpd.conf.in").exists():
            return candidate
    raise SetupError("the httpd templates (apache/httpd.conf.in) were not found")


def make_tempdir(prefix: str) -> Path:
    """Create a temporary directory that httpd's and PostgreSQL's users can enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


@contextlib.contextmanager
def running(server: Httpd, request: Any) -> Iterator[Httpd]:
    """Start ``server`` for a module-scoped fixture and stop it when the block ends.

    ``request`` is the fixture's pytest request: when a test failed while the
    server ran, the tail of its error log is shown; otherwise its directory is
    removed. One server per module keeps a suite fast when many tests can share
    one configuration.
    """
    failed_before = request.session.testsfailed
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            sys.stderr.write(f"\n{server.log_tail(80)}\n")
        else:
            shutil.rmtree(server.root, ignore_errors=True)


# ----------------------------------------------------------------------- pytest

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
