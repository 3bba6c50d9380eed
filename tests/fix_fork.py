"""Run a piece of a test in a forked child and bring its report back."""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any


def in_forked_child(body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork, run ``body`` in the child and return the dict it returned.

    The child leaves with ``os._exit`` so no pytest code (fixtures, atexit
    handlers) runs twice; an exception in it comes back as ``{"error": repr}``.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            report = body()
        except BaseException as exc:
            report = {"error": repr(exc)}
        os.write(write_end, pickle.dumps(report))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = pickle.loads(reader.read())
    os.waitpid(pid, 0)
    return report  # type: ignore[no-any-return]
