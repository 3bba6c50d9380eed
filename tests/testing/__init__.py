"""The pytest plugin and its servers.

A package, so pytest puts ``tests/`` on ``sys.path`` (for the ``fix_*`` modules).
"""
