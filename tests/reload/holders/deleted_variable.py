"""The connection's variable is deleted after the first version: later versions hold none.

Lines marked 'first version only' are kept in version 0 only.
"""
import os

import psycopg2

DSN = "__DSN__"
VERSION = 0

conn = psycopg2.connect(DSN)  # first version only


def handler(req):
    return f"version {VERSION} pid {os.getpid()} backend 0"


index = handler
