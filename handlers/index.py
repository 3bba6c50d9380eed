"""The notes board's page, served by ``PythonHandler modpy_safe.publisher``.

The publisher maps ``/`` to this file's ``index``, ``/index.py/add`` to ``add``
and ``/index.py/delete`` to ``delete``, and fills their parameters from the
form by name (as ``str``, UTF-8 decoded, for urlencoded POSTs too).

Only the three page functions are defined here: the publisher publishes every
public callable of the module, so the shared code lives in ``board`` (imported
as a module, which the publisher refuses to traverse) and the helper below
starts with ``_`` (which it refuses to publish).
"""
from typing import Any as _Any  # "_": the publisher must not publish it

import board

import modpy_safe


def _base(req: _Any) -> str:
    """Return the URL of the directory that holds this page, ending in ``/``."""
    script: str = req.uri
    path_info = req.path_info or ""
    if path_info and script.endswith(path_info):
        script = script[: -len(path_info)]
    return script.rsplit("/", 1)[0] + "/"


def index(req: _Any) -> str:
    """Show the notes and the form to add one."""
    return board.render_page(board.list_notes(), base=_base(req))


def add(req: _Any, text: str = "") -> str:
    """Store the posted note and go back to the list (or show why it was refused)."""
    if req.method != "POST":
        modpy_safe.redirect(_base(req))
    try:
        board.add_note(text)
    except board.Invalid as exc:
        req.status = 400
        return board.render_page(board.list_notes(), base=_base(req), error=str(exc), draft=text)
    # Post/redirect/get: reloading the page afterwards does not post the note again.
    modpy_safe.redirect(_base(req))


def delete(req: _Any, id: str = "") -> str:
    """Delete the note whose id was posted and go back to the list."""
    note_id = board.parse_id(id)
    if req.method == "POST" and note_id is not None:
        board.delete_note(note_id)
    modpy_safe.redirect(_base(req))
