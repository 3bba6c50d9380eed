"""A helper (helper_wrapper_lib.py) keeps the connection inside an object; it is edited."""
import os

import helper_wrapper_lib


def handler(req):
    backend = helper_wrapper_lib.store.backend()
    return f"version {helper_wrapper_lib.VERSION} pid {os.getpid()} backend {backend}"


index = handler
