"""PgBouncer in transaction pooling mode in front of a private PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from .base import SetupError, free_port, make_dir, service_user, tail
from .postgres import PostgresServer

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
        self.os_user = service_user("postgres")
        self.logfile = self.base / "pgbouncer.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        make_dir(self.base, 0o755, self.os_user)
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
        raise SetupError(f"PgBouncer did not start: {last}\n{tail(self.logfile)}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


