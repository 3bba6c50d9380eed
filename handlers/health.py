"""A plain function handler, routed by its file name: ``GET /health``.

``modpy_safe.dispatch`` without a ``modpy_safe.handler`` option serves the
request's own file and calls its ``handler(req)``; a ``dict`` comes back as JSON.
Monitoring can poll it: 200 while the database answers, 503 (from the
framework, with the reason) when it does not.
"""
from __future__ import annotations

from typing import Any

import board


def handler(req: Any) -> dict[str, Any]:
    """Report that the site is up and how many notes it holds."""
    req.headers_out["Cache-Control"] = "no-store"
    return {"ok": True, "title": board.TITLE, "notes": board.count_notes()}
