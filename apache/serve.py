"""Run the example site locally: ``make run`` (and ``make stop``).

Keeps a private PostgreSQL cluster under ``.run/pg`` (its data survives
restarts), renders the httpd config from ``apache/`` for the chosen MPM, starts
httpd on 127.0.0.1, prints the URLs and waits; Ctrl-C (or ``make stop`` from
another terminal) stops httpd and the database cleanly.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from modpy_safe.testing import CHECKOUT, MPMS, Httpd, PostgresServer, SetupError

SITE = """\
SetHandler mod_python
PythonHandler hello
"""


def site_config(postgres: PostgresServer) -> tuple[str, dict[str, str], str]:
    """Return the <Directory> body, the PythonOptions and extra config for the site."""
    return SITE, {"modpy_safe.db.default.dsn": postgres.dsn}, ""


def _stop_running(state: Path) -> int:
    pidfile = state / "serve.pid"
    try:
        pid = int(pidfile.read_text())
    except (OSError, ValueError):
        print("modpy_safe: nothing is running (no .run/serve.pid)")
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pidfile.unlink(missing_ok=True)
        print("modpy_safe: nothing is running")
        return 0
    for _ in range(300):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("modpy_safe: stopped")
            return 0
        time.sleep(0.1)
    print(f"modpy_safe: pid {pid} did not stop within 30 s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpm", default="prefork", choices=MPMS)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--state", default=".run", help="directory for the database and logs")
    parser.add_argument("--stop", action="store_true", help="stop a running 'make run'")
    args = parser.parse_args(argv)
    state = Path(args.state).resolve()
    if args.stop:
        return _stop_running(state)

    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o755)
    pidfile = state / "serve.pid"
    postgres = PostgresServer(state / "pg", port=_remembered_port(state / "pg"))
    httpd: Httpd | None = None
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        postgres.init()
        postgres.start()
        (state / "pg" / "port").write_text(str(postgres.port))
        directory, options, extra = site_config(postgres)
        httpd = Httpd(state / "httpd", mpm=args.mpm, port=args.port, docroot=CHECKOUT / "handlers",
                      directory=directory, options=options, extra=extra, debug=True,
                      purpose="make run")
        httpd.start()
        pidfile.write_text(str(os.getpid()))
        base = httpd.url("")
        print(f"modpy_safe: serving {CHECKOUT / 'handlers'} under {args.mpm} at {base}/")
        print(f"  app:        {base}/")
        print(f"  error log:  {httpd.error_log_path}")
        print("Press Ctrl-C to stop (or run 'make stop' in another terminal).", flush=True)
        while not stopping:
            time.sleep(0.2)
    except SetupError as exc:
        print(f"modpy_safe: {exc}", file=sys.stderr)
        return 1
    finally:
        if httpd is not None:
            httpd.stop()
        postgres.stop()
        pidfile.unlink(missing_ok=True)
        print("modpy_safe: httpd and PostgreSQL stopped", flush=True)
    return 0


def _remembered_port(base: Path) -> int | None:
    try:
        return int((base / "port").read_text())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
