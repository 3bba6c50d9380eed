"""Connections: the pool, Database, the drivers, through real PostgreSQL.

A package, so pytest puts ``tests/`` on ``sys.path`` (for the ``fix_*`` modules).
"""
