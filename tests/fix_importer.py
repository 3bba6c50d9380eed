"""Stand-ins for the importer's unit tests: a fake DB-API connection and file helpers."""
from __future__ import annotations

import itertools
import os
import textwrap
from pathlib import Path
from typing import Any

_ids = itertools.count(1)
#: Every FakeConnection ever made in this process, in order.
MADE: list["FakeConnection"] = []


class FakeConnection:
    """Looks like a DB-API connection to modpy_safe; records whether it was closed."""

    def __init__(self, name: str = "") -> None:
        self.ident = next(_ids)
        self.name = name
        self.closed = 0
        MADE.append(self)

    def cursor(self) -> Any:
        if self.closed:
            raise RuntimeError(f"connection {self.ident} used after close")
        return None

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        self.closed = 1


def open_connections() -> list[FakeConnection]:
    return [c for c in MADE if not c.closed]


_stamp = itertools.count(1)


def write(path: Path, text: str) -> Path:
    """Replace ``path`` atomically, with a modification time newer than any before it.

    Atomic (write aside, then rename) as careful editors do, so a concurrent load
    never reads half a file.
    """
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_text(textwrap.dedent(text))
    # A fixed, strictly increasing mtime: coarse clocks never hide a rewrite.
    stamp = 1_700_000_000_000_000_000 + next(_stamp) * 1_000_000_000
    os.utime(aside, ns=(stamp, stamp))
    os.replace(aside, path)
    return path
