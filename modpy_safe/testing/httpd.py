"""One real Apache httpd with mod_python per MPM, rendered from apache/*.conf.in."""
from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json as _json
import os
import pwd
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import (
    APACHE2,
    APACHE_MODULES,
    CHECKOUT,
    MPMS,
    SetupError,
    alive,
    free_port,
    keep,
    make_dir,
    service_user,
    tail,
)


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
    return _readable_pythonpath(Path(root), service_user("www-data"))


def _readable_pythonpath(root: Path, www: pwd.struct_passwd | None) -> str:
    """Return a directory holding ``modpy_safe`` that httpd's ``User`` can read.

    The checkout is used as it is when that user can read it; otherwise (a
    checkout under /root, say) the package is copied into the server's directory.
    """
    if www is None or _user_can_import(www, CHECKOUT):
        return str(CHECKOUT)
    lib = make_dir(root / "lib")
    shutil.copytree(CHECKOUT / "modpy_safe", lib / "modpy_safe", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirnames, filenames in os.walk(lib):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return str(lib)


#: What modpy_safe imports from PyPI rather than from a Debian package.
RUNTIME_DEPENDENCIES = ("multipart",)


def dependency_paths(root: Path) -> list[str]:
    """Return the directories to add to httpd's ``PythonPath`` for modpy_safe's PyPI packages.

    A package the system Python (``/usr/bin/python3``, which mod_python
    embeds) already imports needs none. Otherwise it is found where this
    Python has it (the venv's site-packages, which ``pip install`` filled) and
    that directory is named, or, when httpd's ``User`` cannot read it, the
    package is copied into ``root``.
    """
    return _dependency_paths(Path(root), service_user("www-data"))


def _dependency_paths(root: Path, www: pwd.struct_passwd | None) -> list[str]:
    paths: list[str] = []
    for name in RUNTIME_DEPENDENCIES:
        if _system_imports(www, name):
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SetupError(
                f"modpy_safe needs the package {name!r}, which {sys.executable} cannot import: "
                f"run 'pip install -e .' in the checkout (tools/bootstrap.sh does)")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        if www is None or _user_can_read(www, source):
            where = str(source.parent)
        else:
            deps = make_dir(root / "deps")
            if source.is_dir():
                shutil.copytree(source, deps / source.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(source, deps / source.name)
            for dirpath, _dirnames, filenames in os.walk(deps):
                os.chmod(dirpath, 0o755)
                for file in filenames:
                    os.chmod(os.path.join(dirpath, file), 0o644)
            where = str(deps)
        if where not in paths:
            paths.append(where)
    return paths


_import_checks: dict[tuple[int, str], bool] = {}


def _as_user(user: pwd.struct_passwd | None, code: str) -> bool:
    """Run ``code`` in the system Python as ``user``, outside any checkout; True when it worked."""
    key = (user.pw_uid if user else os.getuid(), code)
    if key not in _import_checks:
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        probe = subprocess.run(["/usr/bin/python3", "-I", "-c", code], capture_output=True,
                               env={"PATH": "/usr/bin:/bin"}, cwd="/", **kwargs)
        _import_checks[key] = probe.returncode == 0
    return _import_checks[key]


def _system_imports(user: pwd.struct_passwd | None, name: str) -> bool:
    return _as_user(user, f"import {name}")


def _user_can_read(user: pwd.struct_passwd, path: Path) -> bool:
    op = "os.listdir" if path.is_dir() else "open"
    return _as_user(user, f"import os; {op}({str(path)!r})")


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
        self.root = make_dir(Path(root))
        self.mpm = mpm
        self.port = port or free_port()
        self.docroot = make_dir(Path(docroot)) if docroot else make_dir(self.root / "htdocs")
        self.www = service_user("www-data")
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
    def add_config(self, text: str) -> None:
        """Append ``text`` to the server configuration (before :meth:`start`).

        For sections that name paths known only once the server exists, such
        as ``<Directory "{server.docroot}/sub">``.
        """
        self.settings["extra"] += text if text.endswith("\n") else text + "\n"

    def render(self) -> str:
        make_dir(self.root / "logs")
        make_dir(self.root / "run", 0o777)
        self.settings["pythonpath"] = repr(_readable_pythonpath(self.root, self.www))
        self.settings["dependencies"] = repr(_dependency_paths(self.root, self.www))
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
            if not alive(pid):
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
        make_dir(path.parent)
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
        return f"--- tail of {self.error_log_path}:\n{tail(self.error_log_path, lines)}"


def _indent(text: str) -> str:
    return "".join(f"    {line.strip()}\n" for line in text.strip().splitlines() if line.strip())


def _group_name() -> str:
    import grp

    return grp.getgrgid(os.getgid()).gr_name


def _template_dir() -> Path:
    for candidate in (CHECKOUT / "apache", Path(__file__).parent.parent / "apache_templates"):
        if (candidate / "httpd.conf.in").exists():
            return candidate
    raise SetupError("the httpd templates (apache/httpd.conf.in) were not found")


@contextlib.contextmanager
def running(server: Httpd, request: Any) -> Iterator[Httpd]:
    """Start ``server`` for a module-scoped fixture and stop it when the block ends.

    ``request`` is the fixture's pytest request: when a test failed while the
    server ran, its directory is kept (the run's summary lists it) and the
    tail of its error log is shown; otherwise its directory is removed. One
    server per module keeps a suite fast when many tests can share one
    configuration.
    """
    failed_before = request.session.testsfailed
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            keep(server.root)
            sys.stderr.write(f"\nhttpd ({server.mpm}) kept in {server.root}\n"
                             f"{server.log_tail(80)}\n")
        else:
            shutil.rmtree(server.root, ignore_errors=True)


