"""Run the example notes board locally: ``make run`` (and ``make stop``).

Keeps a private PostgreSQL cluster under ``<state>/pg`` (its data survives
restarts), renders the httpd config from ``apache/`` for the chosen MPM, starts
httpd on 127.0.0.1 serving ``handlers/`` straight from the checkout (so an edit
there shows on the next request), prints the URLs and waits; Ctrl-C (or
``make stop`` from another terminal) stops httpd, then the database.

The site's configuration is built by :func:`site_config`, which the tests use
too, so what they check is what ``make run`` serves.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

# Run as a script (.venv/bin/python apache/serve.py): the checkout must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modpy_safe.testing import (
    APACHE2,
    CHECKOUT,
    MPMS,
    Httpd,
    PostgresServer,
    SetupError,
)

HANDLERS = CHECKOUT / "handlers"
#: The application_name of the site's connections, to find them in pg_stat_activity.
APPLICATION_NAME = "modpy_safe-notes"


def site_config(handlers: Path, dsn: str) -> tuple[str, dict[str, str], str]:
    """Return the ``<Directory>`` body, the PythonOptions and the server config for the site.

    ``handlers`` is the directory served as the document root; ``dsn`` the
    database the notes live in. The same text, with your paths, is
    ``apache/examples/notes-site.conf``.
    """
    h = handlers.resolve()
    directory = f"""
# The page: the publisher serves index.py (/ → index.py's index()).
PythonHandler modpy_safe.publisher
# Shared code, not a page: the publisher would publish its functions.
<Files "board.py">
    Require all denied
</Files>
# The JSON API: one Handler class for /api/notes and /api/notes/<id>.
<Files "api.py">
    PythonHandler modpy_safe.dispatch
    PythonOption modpy_safe.handler "{h}/api.py::Notes"
</Files>
# A function handler, routed by its own file name.
<Files "health.py">
    PythonHandler modpy_safe.dispatch
</Files>
"""
    extra = f"""
# One named interpreter for the whole site, so the status page sees the app's modules.
PythonInterpreter notes
# Import the framework when each child starts (an optimisation: without it a
# threaded MPM's first burst may make mod_python create an interpreter per thread).
PythonImport modpy_safe.dispatch notes
PythonImport modpy_safe.publisher notes
PythonImport modpy_safe.status notes
Alias /api/notes "{h}/api.py"
Alias /health "{h}/health.py"
<If "%{{REQUEST_URI}} == '/status'">
    SetHandler mod_python
    PythonHandler modpy_safe.status
</If>
"""
    return directory, {"modpy_safe.db.default.dsn": dsn}, extra


def unreadable_for(user: pwd.struct_passwd, directory: Path) -> Path | None:
    """Return the first path httpd's ``user`` cannot enter or read, or None when all is well.

    httpd drops from root to ``User`` before it loads a handler, so every
    directory from ``/`` down to ``handlers/`` needs ``x`` for that user, and the
    files need ``r``. The check runs as that user, which also honours ACLs.
    """
    probe = (
        "import os, sys\n"
        "d = sys.argv[1]\n"
        "parts = d.split('/')\n"
        "for i in range(2, len(parts) + 1):\n"
        "    p = '/'.join(parts[:i])\n"
        "    if not os.access(p, os.X_OK):\n"
        "        print(p); sys.exit(1)\n"
        "for name in os.listdir(d):\n"
        "    p = os.path.join(d, name)\n"
        "    if name.endswith('.py') and not os.access(p, os.R_OK):\n"
        "        print(p); sys.exit(1)\n"
    )
    result = subprocess.run(
        ["/usr/bin/python3", "-c", probe, str(directory)],
        user=user.pw_uid, group=user.pw_gid, extra_groups=[], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin"}, cwd="/",
    )
    if result.returncode == 0:
        return None
    return Path(result.stdout.strip() or directory)


def check_readable(directory: Path) -> None:
    """Raise SetupError saying what to do when httpd's user cannot read ``directory``."""
    if os.geteuid() != 0:
        return  # httpd runs as the current user, who can read the checkout
    try:
        www = pwd.getpwnam("www-data")
    except KeyError:
        return  # Httpd() reports the missing user itself
    blocked = unreadable_for(www, directory)
    if blocked is None:
        return
    raise SetupError(
        f"httpd runs as 'www-data', which cannot read {blocked} and so cannot load the "
        f"handlers in {directory}. modpy_safe serves them from the checkout so that an edit "
        f"shows on the next request; copying them would hide your edits. Either let "
        f"www-data in (for example 'chmod o+x' on each directory above the checkout and "
        f"'chmod -R o+rX {directory}'), put the checkout somewhere readable such as "
        f"/srv or /opt and run 'make run' there, or serve a readable copy with "
        f"'make run HANDLERS=/path/to/copy'."
    )


def _stop_running(state: Path) -> int:
    """Stop the ``make run`` whose state directory is ``state`` and wait for it."""
    pidfile = state / "serve.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        print(f"modpy_safe: nothing is running (no {pidfile})")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        print("modpy_safe: nothing is running (removed a stale pid file)")
        return 0
    # It stops httpd (which waits for running requests) and then PostgreSQL.
    for _ in range(600):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("modpy_safe: stopped")
            return 0
        time.sleep(0.1)
    print(f"modpy_safe: pid {pid} did not stop within 60 s", file=sys.stderr)
    return 1


def _remembered_port(base: Path) -> int | None:
    """Return the cluster's port of the last run, or None (a new free one) when it is taken."""
    try:
        port = int((base / "port").read_text())
    except (OSError, ValueError):
        return None
    with socket.socket() as sock:
        # As PostgreSQL binds: connections of the last run in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return None  # something else took it meanwhile; the cluster moves
    return port


def say(text: str, stream: TextIO | None = None) -> None:
    """Print ``text``; a terminal that was closed (SIGHUP) must not stop the clean-up."""
    with contextlib.suppress(OSError):
        print(text, file=stream or sys.stdout, flush=True)


def _alive(pid: int, mentions: str) -> bool:
    """Return True when process ``pid`` runs and its command line mentions ``mentions``.

    A pid file outlives its process (a reboot, a kill -9): the number may belong
    to an unrelated process by now, which must never get our signal.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return mentions.encode() in cmdline


def stop_orphans(state: Path) -> list[str]:
    """Stop the httpd and PostgreSQL an earlier run left in ``state``; return what was stopped.

    An earlier 'make run' that was killed (or, before SIGHUP was handled, lost
    its terminal) leaves both running. Reused, they would serve the old
    configuration, and the cluster would keep listening on its old port while
    this run wrote a new one into ``state/pg/port``.
    """
    stopped = []
    conf = state / "httpd" / "httpd.conf"
    try:
        pid = int((state / "httpd" / "run" / "httpd.pid").read_text())
    except (OSError, ValueError):
        pid = 0
    if pid and _alive(pid, str(conf)):
        subprocess.run([APACHE2, "-f", str(conf), "-k", "stop"], capture_output=True)
        for _ in range(400):  # bounded: httpd lets running requests finish
            if not _alive(pid, str(conf)):
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
        stopped.append(f"httpd (pid {pid})")
    if (state / "pg" / "data" / "PG_VERSION").exists():
        postgres = PostgresServer(state / "pg")
        if postgres.is_running():
            postgres.stop()
            stopped.append(f"PostgreSQL ({postgres.data})")
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mpm", default="prefork", choices=MPMS)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state", default=".run", help="directory for the database and logs")
    parser.add_argument("--stop", action="store_true", help="stop a running 'make run'")
    parser.add_argument("--handlers", default=str(HANDLERS),
                        help="the directory served as the site (default: the checkout's handlers/)")
    args = parser.parse_args(argv)
    state = Path(args.state).resolve()
    handlers = Path(args.handlers).resolve()
    if args.stop:
        return _stop_running(state)

    pidfile = state / "serve.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
        except (ProcessLookupError, ValueError):
            pidfile.unlink()
        else:
            print(f"modpy_safe: 'make run' is already running with state {state}; "
                  "stop it with 'make stop' first", file=sys.stderr)
            return 1

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Installed before anything starts, so Ctrl-C during start-up still cleans up.
    # SIGHUP: the terminal was closed; without a handler it would kill this
    # process alone and leave httpd and PostgreSQL running.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    postgres: PostgresServer | None = None
    httpd: Httpd | None = None
    try:
        check_readable(handlers)
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o755)  # postgres and www-data must reach their directories
        pidfile.write_text(str(os.getpid()))
        for what in stop_orphans(state):
            say(f"modpy_safe: stopped {what}, left running by an earlier 'make run'")
        postgres = PostgresServer(state / "pg", port=_remembered_port(state / "pg"))
        postgres.init()
        postgres.start()
        (state / "pg" / "port").write_text(str(postgres.port))
        directory, options, extra = site_config(handlers, postgres.dsn_for(APPLICATION_NAME))
        if args.mpm == "prefork":
            # A prefork child waits on an idle keep-alive connection for KeepAliveTimeout;
            # a browser holds a few, so with the two children here its next request would
            # wait seconds for a free one.
            extra += "KeepAlive Off\n"
        httpd = Httpd(state / "httpd", mpm=args.mpm, port=args.port, docroot=handlers,
                      directory=directory, options=options, extra=extra, debug=True,
                      purpose="make run", preload=False)  # site_config preloads its own
        if not stopping:
            httpd.start()
        base = httpd.url("")
        say(f"modpy_safe: serving {handlers} under the {args.mpm} MPM\n"
            f"  app:        {base}/\n"
            f"  API:        {base}/api/notes\n"
            f"  status:     {base}/status\n"
            f"  health:     {base}/health\n"
            f"  error log:  {httpd.error_log_path}\n"
            f"  database:   {postgres.data} (port {postgres.port}, log {postgres.logfile})\n"
            "Edit a file in handlers/ and reload the page to see it change.\n"
            "Press Ctrl-C to stop (or run 'make stop' in another terminal).")
        while not stopping:
            time.sleep(0.2)
    except SetupError as exc:
        say(f"modpy_safe: {exc}", sys.stderr)
        return 1
    finally:
        # httpd first: its children close their connections as they exit.
        if httpd is not None:
            httpd.stop()
        if postgres is not None:
            postgres.stop()
        pidfile.unlink(missing_ok=True)
        if httpd is not None or postgres is not None:
            say("modpy_safe: httpd and PostgreSQL stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
