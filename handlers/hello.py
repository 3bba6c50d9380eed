"""The smallest handler: ``make run`` serves it until the example app replaces it."""
from mod_python import apache


def handler(req):
    req.content_type = "text/plain"
    req.write("Hello from modpy_safe under mod_python.\n")
    return apache.OK
