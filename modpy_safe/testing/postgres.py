"""A private PostgreSQL cluster for tests and ``make run``, run as an unprivileged user."""
from __future__ import annotations

import glob
import os
import re
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

from .base import SetupError, free_port, make_dir, service_user, tail


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]))
    if not found:
        raise SetupError(
            "PostgreSQL's initdb was not found under /usr/lib/postgresql/*/bin: "
            "install the Debian package 'postgresql' (make test does this as root)"
        )
    return Path(found[-1]).parent


def run_sql(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on a connection of its own to ``dsn``, in autocommit; return the rows."""
    import psycopg2

    conn = psycopg2.connect(dsn, application_name="modpy_safe.testing")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


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
        self.os_user = service_user("postgres")
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
        make_dir(self.base, 0o755, self.os_user)
        make_dir(self.sockdir, 0o755, self.os_user)
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
                f"{tail(self.logfile)}"
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
        return run_sql(self.admin_dsn.replace("dbname=postgres", f"dbname={dbname}"), sql, params)

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

    def fresh_database(self, prefix: str = "test") -> "FreshDatabase":
        """Create an empty database owned by the test role (from template0); see FreshDatabase.

        ``prefix`` starts its name (letters, digits and ``_``), a random suffix ends it.
        """
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"prefix must be 1 to 40 lower-case letters, digits or '_', "
                             f"starting with a letter, not {prefix!r}")
        name = f"{prefix}_{secrets.token_hex(4)}"
        self.admin_execute(f"CREATE DATABASE {name} OWNER {self.role} TEMPLATE template0")
        return FreshDatabase(self, name)


_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,39}")


class FreshDatabase:
    """One database of the private cluster made for one test: empty, with a clean schema.

    ``dsn`` (and ``dsn_for(application_name)``) connect as the test role, which
    owns it; ``execute(sql)`` runs SQL there; :meth:`drop` (or leaving a
    ``with`` block) removes it, ending any connection still open to it. The
    ``fresh_db`` fixture makes one per test.
    """

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.server = server
        self.name = name

    def __repr__(self) -> str:
        return f"<FreshDatabase {self.name!r} on port {self.server.port}>"

    @property
    def dsn(self) -> str:
        """A libpq DSN for this database as the test role."""
        server = self.server
        return (f"host=127.0.0.1 port={server.port} dbname={self.name} "
                f"user={server.role} password={server.password}")

    def dsn_for(self, application_name: str) -> str:
        """The DSN with ``application_name`` set, to count its connections."""
        return f"{self.dsn} application_name={application_name}"

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` as the test role, in autocommit; return the rows (if any)."""
        return run_sql(self.dsn, sql, params)

    def drop(self) -> None:
        """Drop the database, closing whatever is still connected to it."""
        self.server.admin_execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")

    def __enter__(self) -> "FreshDatabase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.drop()


