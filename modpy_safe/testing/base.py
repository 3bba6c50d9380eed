"""What the harness's servers share: paths, free ports, the service users, small helpers."""
from __future__ import annotations

import contextlib
import os
import pwd
import socket
import tempfile
from pathlib import Path

MPMS = ("prefork", "worker", "event")

CHECKOUT = Path(__file__).resolve().parent.parent.parent
APACHE2 = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


class SetupError(RuntimeError):
    """Something the harness needs is missing or did not start."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_user(name: str) -> pwd.struct_passwd | None:
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


def make_dir(path: Path, mode: int = 0o755, owner: pwd.struct_passwd | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
    return path


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def alive(pid: int) -> bool:
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


def make_tempdir(prefix: str) -> Path:
    """Create a temporary directory that httpd's and PostgreSQL's users can enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


#: Server directories kept because a test that used them failed (listed at the end of a run).
KEPT: list[Path] = []


def keep(root: Path) -> None:
    """Keep ``root`` for a failed test to inspect; the run's summary lists it."""
    if root not in KEPT:
        KEPT.append(root)
