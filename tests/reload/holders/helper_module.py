"""A helper (helper_module_lib.py) holds the connection at a top-level name; it is edited."""
import os

import helper_module_lib


def handler(req):
    backend = helper_module_lib.backend()
    return f"version {helper_module_lib.VERSION} pid {os.getpid()} backend {backend}"


index = handler
