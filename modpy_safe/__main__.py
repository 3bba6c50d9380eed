"""``python -m modpy_safe check CONFIG``: the same as the ``modpy-safe`` command."""
from __future__ import annotations

import sys

from .ops.check import main

if __name__ == "__main__":
    sys.exit(main())
