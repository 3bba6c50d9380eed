"""An SQLAlchemy Engine at module level: its pool keeps the connection open (dispose())."""
import os

import psycopg2
import sqlalchemy

DSN = "__DSN__"
VERSION = 0

engine = sqlalchemy.create_engine("postgresql+psycopg2://", creator=lambda: psycopg2.connect(DSN))


def handler(req):
    with engine.connect() as conn:
        backend = conn.execute(sqlalchemy.text("SELECT pg_backend_pid()")).scalar()
    return f"version {VERSION} pid {os.getpid()} backend {backend}"


index = handler
