"""The reload machinery: the importer, module versions, what they own.

A package, so pytest puts ``tests/`` on ``sys.path`` (for the ``fix_*`` modules).
"""
