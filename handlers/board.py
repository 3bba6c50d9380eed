"""The notes board's shared code: the database, the schema, validation and the page.

Both the page (``index.py``, published by ``modpy_safe.publisher``) and the JSON
API (``api.py``, a ``modpy_safe.Handler``) import this module. It sits in their
directory, so modpy_safe's importer records it as their dependency: edit this
file while ``make run`` is serving and the next request reloads it *and* both
handlers, while ``db`` below keeps its connection (the importer hands the
Database over to the new module instance instead of opening another one).

httpd never serves this file itself: the site's configuration denies it (see
``apache/examples/notes-site.conf``), because the publisher would otherwise
publish every function in it.
"""
from __future__ import annotations

import html
import threading
from datetime import datetime
from typing import Any, TypedDict

import modpy_safe

#: Shown as the page's heading; change it while ``make run`` serves to watch a reload.
TITLE = "Notes"
#: The longest note, in characters (not bytes: "日本" is two).
MAX_LENGTH = 500
#: How many notes the page and the API list (newest first).
LIST_LIMIT = 200

# Declared at module level, connected lazily: the DSN and the connection mode come
# from "PythonOption modpy_safe.db.default.*" the first time a request needs it, so
# a database that is down never stops this module from loading.
db = modpy_safe.Database()

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id         bigserial PRIMARY KEY,
    body       text NOT NULL CHECK (char_length(body) BETWEEN 1 AND 500),
    created_at timestamptz NOT NULL DEFAULT now()
)
"""

# Any constant shared by every process works. Two sessions that both run
# "CREATE TABLE IF NOT EXISTS" at the same moment can still collide on the
# catalog's unique index (IF NOT EXISTS checks before it inserts), so the
# schema is created under a transaction-scoped advisory lock: the second
# session waits, then finds the table.
_SCHEMA_LOCK = 0x6E6F746573  # "notes"
_schema_lock = threading.Lock()
_schema_ready = threading.Event()  # set once this module instance has made sure


class Note(TypedDict):
    """A note as the API returns it."""

    id: int
    text: str
    created: str


class Invalid(ValueError):
    """A note that cannot be stored; ``field`` names the offending input."""

    def __init__(self, message: str, *, field: str = "text") -> None:
        super().__init__(message)
        self.field = field


def validate_text(value: Any) -> str:
    """Return the note's text without surrounding spaces, or raise :class:`Invalid`."""
    if value is None:
        raise Invalid("the note's text is missing: send a field named 'text'")
    if not isinstance(value, str):
        raise Invalid(f"the note's text must be a string, not {type(value).__name__}")
    text = value.strip()
    if not text:
        raise Invalid("the note is empty: write something")
    if len(text) > MAX_LENGTH:
        raise Invalid(f"the note has {len(text)} characters; at most {MAX_LENGTH} are allowed")
    if "\x00" in text:
        raise Invalid("the note contains a NUL character, which PostgreSQL cannot store")
    return text


def ensure_schema() -> None:
    """Create the table on first use in this process (idempotent, safe to race)."""
    if _schema_ready.is_set():
        return
    with _schema_lock:  # the threads of one process create it once
        if _schema_ready.is_set():
            return
        with db.transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cur.execute(SCHEMA)
        _schema_ready.set()


def _note(row: tuple[Any, ...]) -> Note:
    note_id, body, created = row
    stamp = created.isoformat() if isinstance(created, datetime) else str(created)
    return {"id": int(note_id), "text": str(body), "created": stamp}


def list_notes(limit: int = LIST_LIMIT) -> list[Note]:
    """Return the newest notes first."""
    ensure_schema()
    with db.transaction() as cur:
        cur.execute(
            "SELECT id, body, created_at FROM notes ORDER BY id DESC LIMIT %s", (limit,)
        )
        return [_note(row) for row in cur.fetchall()]


def get_note(note_id: int) -> Note | None:
    """Return the note with ``note_id``, or None."""
    ensure_schema()
    with db.transaction() as cur:
        cur.execute("SELECT id, body, created_at FROM notes WHERE id = %s", (note_id,))
        row = cur.fetchone()
    return _note(row) if row else None


def add_note(value: Any) -> Note:
    """Validate ``value`` and store it as a new note; return the note."""
    text = validate_text(value)
    ensure_schema()
    with db.transaction() as cur:
        cur.execute(
            "INSERT INTO notes (body) VALUES (%s) RETURNING id, body, created_at", (text,)
        )
        return _note(cur.fetchone())


def delete_note(note_id: int) -> bool:
    """Delete the note with ``note_id``; return False when there was none."""
    ensure_schema()
    with db.transaction() as cur:
        cur.execute("DELETE FROM notes WHERE id = %s", (note_id,))
        return bool(cur.rowcount)


def count_notes() -> int:
    """Return how many notes there are."""
    ensure_schema()
    with db.transaction() as cur:
        cur.execute("SELECT count(*) FROM notes")
        return int(cur.fetchone()[0])


def parse_id(raw: Any) -> int | None:
    """Return ``raw`` as a note id, or None when it is not a positive whole number."""
    text = str(raw).strip() if raw is not None else ""
    # isdigit() alone accepts "²" and other digits int() rejects.
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    value = int(text)
    return value if value > 0 else None


# ------------------------------------------------------------------ the page

_e = html.escape  # quote=True by default: safe inside attribute values too


def render_page(
    notes: list[Note], *, base: str, error: str | None = None, draft: str = ""
) -> str:
    """Return the board as an HTML document.

    ``base`` is the URL of the directory holding ``index.py`` (ending in ``/``);
    the form posts to ``index.py/add`` under it. ``error`` and ``draft`` re-show a
    rejected note with the reason. Every piece of user text is escaped.
    """
    items = "\n".join(
        f'    <li id="note-{n["id"]}"><p class="text">{_e(n["text"])}</p>'
        f'<time datetime="{_e(n["created"])}">{_e(n["created"][:16].replace("T", " "))}</time>'
        f'<form method="post" action="{_e(base)}index.py/delete" class="delete">'
        f'<input type="hidden" name="id" value="{n["id"]}">'
        f'<button type="submit">Delete</button></form></li>'
        for n in notes
    )
    listing = f'<ul id="notes">\n{items}\n  </ul>' if notes else (
        '<p id="empty">No notes yet: write the first one.</p>'
    )
    alert = f'<p class="error" id="error" role="alert">{_e(error)}</p>' if error else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{_e(TITLE)}</title>
  <style>
    body {{ font-family: sans-serif; max-width: 40rem; margin: 2rem auto; }}
    li {{ margin: .5rem 0; }} .text {{ margin: 0; white-space: pre-wrap; }}
    time {{ color: #666; font-size: .8rem; }} .delete {{ display: inline; }}
    .error {{ color: #a00; }} textarea {{ width: 100%; }}
  </style>
</head>
<body>
  <h1 id="title">{_e(TITLE)}</h1>
  <form method="post" action="{_e(base)}index.py/add" accept-charset="UTF-8" id="add">
    {alert}
    <label for="text">New note</label>
    <textarea id="text" name="text" rows="3" maxlength="{MAX_LENGTH}">{_e(draft)}</textarea>
    <button type="submit" id="submit">Add note</button>
  </form>
  {listing}
  <footer><a href="{_e(base)}api/notes">JSON API</a> ·
  <a href="{_e(base)}status">status</a></footer>
</body>
</html>
"""
