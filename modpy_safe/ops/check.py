"""``modpy-safe check CONFIG``: find bad modpy_safe settings before httpd serves a request.

``apache2 -t`` says "Syntax OK" for ``PythonOption modpy_safe.reload.interval
soon``; modpy_safe itself only complains when a request reads the value. This
command reads the configuration with its includes, passes every
``PythonOption modpy_safe.*`` value through the cast the server uses, checks
that every handler file an option names exists (relative to its
``<Directory>``, or on ``PythonPath``), and prints each problem as
``file:line: message``. It exits 1 when there is one, so it can run in CI and
before ``apachectl graceful``.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigError
from .._options import OPTIONS, PREFIX, STATUS_DIRECTORY, Option, Options, as_handler_spec, check
from .._options import find_option as _find_option
from ..db.driver import driver_class
from . import config

__all__ = ["check_config", "check_option", "main"]

#: Options that must be set at server level (every child reads the same value).
SERVER_LEVEL = (STATUS_DIRECTORY.name,)


def _names_a_file(option: Option[Any]) -> bool:
    # Every option read as 'file.py[::name]' names a handler file.
    return option.cast is as_handler_spec


def _known() -> list[str]:
    return sorted(OPTIONS)


def _python_path(directives: list[config.Directive]) -> list[str]:
    # PythonPath is a Python expression ("['/srv/lib'] + sys.path"): its string
    # literals are the directories it adds.
    found: list[str] = []
    for d in directives:
        if d.name.lower() == "pythonpath" and d.args:
            try:
                tree = ast.parse(d.args[0], mode="eval")
            except SyntaxError:
                continue
            found += [n.value for n in ast.walk(tree)
                      if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return found


def _handler_file(d: config.Directive, value: str, python_path: list[str]) -> str | None:
    """Return a problem when the file named by a handler option cannot be found."""
    relative, _name = as_handler_spec(value)
    if os.path.isabs(relative):
        return None if os.path.isfile(relative) else f"{relative} does not exist"
    directory = d.directory()
    bases = ([directory] if directory else []) + python_path
    if any(os.path.isfile(os.path.join(base, relative)) for base in bases):
        return None
    dotted = relative[:-3].replace("/", ".")
    if not directory and all(p.isidentifier() for p in dotted.split(".")):
        try:
            if importlib.util.find_spec(dotted) is not None:
                return None
        except (ImportError, ValueError):
            pass
    looked = ", ".join(bases) or "no directory (not in a <Directory> and no PythonPath)"
    return f"{relative} not found in {looked}"


def check_option(d: config.Directive, python_path: list[str]) -> list[str]:
    """Return the problems of one ``PythonOption modpy_safe.*`` directive."""
    key = d.args[0]
    if len(d.args) < 2:
        return []  # 'PythonOption name' without a value unsets it
    raw = d.args[1]
    found = _find_option(key)
    if found is None:
        name = key[len(PREFIX):]
        parts = name.split(".")
        generic = ".".join([parts[0], "<name>", *parts[2:]]) if len(parts) > 2 else name
        close = difflib.get_close_matches(generic, _known(), n=1, cutoff=0.8)
        hint = (f"did you mean {PREFIX}{close[0]}?" if close
                else "known: " + ", ".join(_known()))
        return [f"PythonOption {key} is not an option of modpy_safe; {hint}"]
    option, _param = found
    label = f"PythonOption {key}"
    shown = Options._shown(key, raw)
    try:
        check(label, raw, option.cast, shown=shown)
        if option.name == "db.<name>.dsn":
            # What the server does with a DSN from an option: the driver parses it.
            check(label, raw, driver_class("psycopg2").validate_dsn, shown=shown)
    except ConfigError as exc:
        return [str(exc)]
    problems = []
    if option.name in SERVER_LEVEL and d.sections:
        problems.append(f"PythonOption {key} is read at server level only: move it out of "
                        f"<{d.sections[-1].name}>")
    if _names_a_file(option):
        missing = _handler_file(d, raw, python_path)
        if missing:
            problems.append(f"PythonOption {key} names a handler file that does not exist: "
                            f"{missing}")
    return problems


def check_config(path: str, *, server_root: str | None = None) -> list[config.Problem]:
    """Return every problem of the configuration at ``path``, in file order."""
    directives, problems = config.read(path, server_root=server_root)
    python_path = _python_path(directives)
    for d in directives:
        if d.name.lower() == "pythonoption" and d.args and d.args[0].startswith(PREFIX):
            problems += [config.Problem(d.file, d.line, m) for m in check_option(d, python_path)]
    # In the order httpd reads them: files as first met, then lines.
    order: dict[str, int] = {}
    for file in [*(d.file for d in directives), *(p.file for p in problems)]:
        order.setdefault(file, len(order))
    return sorted(problems, key=lambda p: (order[p.file], p.line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``modpy-safe``; return the exit status."""
    parser = argparse.ArgumentParser(prog="modpy-safe", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("check", help="check the modpy_safe settings of an httpd "
                                            "configuration and the files they name")
    cmd.add_argument("config", help="the main configuration file, e.g. /etc/apache2/apache2.conf")
    cmd.add_argument("-d", "--server-root", help="httpd's ServerRoot when the file does not "
                                                 "set one (default: the file's directory)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config):
        print(f"modpy-safe check: {args.config}: no such file", file=sys.stderr)
        return 2
    problems = check_config(args.config, server_root=args.server_root)
    for problem in problems:
        print(problem)
    if problems:
        print(f"modpy-safe check: {len(problems)} problem(s) in {args.config}", file=sys.stderr)
        return 1
    print(f"modpy-safe check: {args.config}: no problems")
    return 0
