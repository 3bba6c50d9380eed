"""Read an httpd configuration as httpd does: directives, sections, Include and IncludeOptional.

This is enough of httpd's reader for ``modpy-safe check``: each directive with
its arguments split as httpd splits them (quotes, backslash continuation
lines), the file and line it came from, and the sections around it. Include
paths and globs are relative to ``ServerRoot``; ``${NAME}`` is replaced from
``Define`` and the environment. ``<IfModule>`` and ``<IfDefine>`` cannot be
decided without the running server, so their contents are read as if true.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
import shlex
from pathlib import Path

__all__ = ["Directive", "Section", "Problem", "read"]

_MAX_DEPTH = 32  # Include nesting, as httpd's own limit guards against a loop
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclasses.dataclass(frozen=True)
class Section:
    """An enclosing ``<Name args>`` section."""

    name: str  # as written, without '<' (e.g. "Directory")
    args: tuple[str, ...]
    file: str
    line: int


@dataclasses.dataclass(frozen=True)
class Directive:
    """One directive, where it was written and inside which sections."""

    name: str
    args: tuple[str, ...]
    file: str
    line: int
    sections: tuple[Section, ...]

    def where(self) -> str:
        """Return ``file:line``."""
        return f"{self.file}:{self.line}"

    def directory(self) -> str | None:
        """Return the directory of the innermost ``<Directory>`` around it, None elsewhere."""
        for section in reversed(self.sections):
            if section.name.lower() == "directory" and section.args and section.args[0] != "~":
                return section.args[0]
            if section.name.lower() in ("location", "locationmatch", "directorymatch"):
                return None
        return None


@dataclasses.dataclass(frozen=True)
class Problem:
    """Something wrong at ``file:line``."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class _Reader:
    def __init__(self, server_root: str | None) -> None:
        self.server_root = server_root
        self.defines: dict[str, str] = {}
        self.directives: list[Directive] = []
        self.problems: list[Problem] = []

    def expand(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            return self.defines.get(name, os.environ.get(name, match.group(0)))

        return _VAR.sub(value, text)

    def read_file(self, path: str, depth: int, sections: list[Section]) -> None:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            where = sections[-1] if sections else None
            self.problems.append(Problem(where.file if where else path,
                                         where.line if where else 0,
                                         f"cannot read {path}: {exc.strerror}"))
            return
        start = len(sections)
        for number, line in _logical_lines(text):
            self.line(path, number, line, depth, sections)
        for section in reversed(sections[start:]):
            self.problems.append(Problem(section.file, section.line,
                                         f"<{section.name}> is never closed"))
        del sections[start:]

    def line(self, path: str, number: int, line: str, depth: int,
             sections: list[Section]) -> None:
        try:
            words = shlex.split(self.expand(line), comments=False, posix=True)
        except ValueError as exc:
            self.problems.append(Problem(path, number, f"cannot split the line: {exc}"))
            return
        if not words:
            return
        head = words[0]
        if head.startswith("</"):
            name = head[2:].rstrip(">")
            if not sections or sections[-1].name.lower() != name.lower():
                self.problems.append(Problem(path, number, f"</{name}> closes no open section"))
            else:
                sections.pop()
            return
        if head.startswith("<"):
            args = [w for w in words[1:]]
            if args:
                args[-1] = args[-1][:-1] if args[-1].endswith(">") else args[-1]
                args = [a for a in args if a]
            name = head[1:].rstrip(">")
            sections.append(Section(name, tuple(args), path, number))
            return
        directive = Directive(head, tuple(words[1:]), path, number, tuple(sections))
        self.directives.append(directive)
        lowered = head.lower()
        if lowered == "serverroot" and directive.args:
            self.server_root = directive.args[0]
        elif lowered == "define" and directive.args:
            self.defines[directive.args[0]] = directive.args[1] if len(directive.args) > 1 else ""
        elif lowered in ("include", "includeoptional") and directive.args:
            self.include(directive, optional=lowered == "includeoptional", depth=depth,
                         sections=sections)

    def include(self, directive: Directive, *, optional: bool, depth: int,
                sections: list[Section]) -> None:
        if depth >= _MAX_DEPTH:
            self.problems.append(Problem(directive.file, directive.line,
                                         f"includes nested more than {_MAX_DEPTH} deep "
                                         f"(an Include loop?)"))
            return
        pattern = directive.args[0]
        if not os.path.isabs(pattern):
            pattern = os.path.join(self.server_root or os.path.dirname(directive.file), pattern)
        if glob.has_magic(pattern):
            found = sorted(glob.glob(pattern))
            if not found and not optional:
                self.problems.append(Problem(directive.file, directive.line,
                                             f"Include {directive.args[0]}: no file matches "
                                             f"{pattern} (IncludeOptional allows that)"))
        elif os.path.exists(pattern):
            found = [pattern]
        else:
            if not optional:
                self.problems.append(Problem(directive.file, directive.line,
                                             f"Include {directive.args[0]}: {pattern} does "
                                             f"not exist"))
            found = []
        for path in found:
            if os.path.isdir(path):
                for sub in sorted(_files_under(path)):
                    self.read_file(sub, depth + 1, sections)
            else:
                self.read_file(path, depth + 1, sections)


def _files_under(directory: str) -> list[str]:
    out: list[str] = []
    for base, dirs, files in os.walk(directory):
        dirs.sort()
        out.extend(os.path.join(base, f) for f in files)
    return out


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Return (first line number, text) per logical line: comments dropped, '\\' lines joined."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending:
            first = number
            if not line or line.startswith("#"):
                continue
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        out.append((first, " ".join(pending)))
        pending = []
    if pending:
        out.append((first, " ".join(pending)))
    return out


def read(path: str, *, server_root: str | None = None) -> tuple[list[Directive], list[Problem]]:
    """Return every directive of the configuration at ``path`` (with its includes) and the
    problems met reading it.

    ``server_root`` is httpd's ``-d``; a ``ServerRoot`` directive replaces it, and
    without either the main file's directory is used.
    """
    main = os.path.abspath(path)
    reader = _Reader(server_root or os.path.dirname(main))
    reader.read_file(main, 0, [])
    return reader.directives, reader.problems
