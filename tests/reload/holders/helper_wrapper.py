"""A helper module (helper_wrapper_lib.py) keeps the connection inside an object; the helper is edited."""
import os

import helper_wrapper_lib


def handler(req):
    backend = helper_wrapper_lib.store.backend()
    return "version %d pid %d backend %d" % (helper_wrapper_lib.VERSION, os.getpid(), backend)


index = handler
