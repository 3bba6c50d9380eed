"""The operator's view: the status page of the whole server, metrics, logs, the config check.

A package, so pytest puts ``tests/`` on ``sys.path`` (for the ``fix_*`` modules).
"""
