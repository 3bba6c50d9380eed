"""Rows 1 and 2, baseline and A: the smallest useful handler function.

The same file is served twice: by plain ``PythonHandler`` (B) and through
``modpy_safe.dispatch`` (A), so the only difference measured is the dispatcher.
"""
from mod_python import apache

BODY = b"hello from a handler\n"


def handler(req):
    req.content_type = "text/plain"
    req.write(BODY)
    return apache.OK
