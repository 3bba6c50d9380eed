"""The fault suite: database faults, broken reloads, a soak, hostile requests, PgBouncer.

A package, so that pytest puts ``tests/`` on ``sys.path`` (for ``fix_notes``)
and names these modules ``faults.*`` without clashing with ``tests/test_*.py``.
"""
