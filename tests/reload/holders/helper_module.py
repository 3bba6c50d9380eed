"""A helper module (helper_module_lib.py) holds the connection at a top-level name; the helper is edited."""
import os

import helper_module_lib


def handler(req):
    backend = helper_module_lib.backend()
    return "version %d pid %d backend %d" % (helper_module_lib.VERSION, os.getpid(), backend)


index = handler
