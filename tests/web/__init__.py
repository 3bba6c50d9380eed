"""The request side: dispatch, responses, forms, the publisher, the status page.

A package, so pytest puts ``tests/`` on ``sys.path`` (for the ``fix_*`` modules).
"""
