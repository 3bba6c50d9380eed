"""The notes board's JSON API, a ``modpy_safe.Handler`` served by ``modpy_safe.dispatch``.

==========================  ====================================================
``GET /api/notes``          200 ``{"notes": [...]}`` (newest first)
``POST /api/notes``         201 the new note, ``Location`` its URL; the body is
                            JSON ``{"text": "..."}`` or a form with ``text``
``GET /api/notes/<id>``     200 the note, 404 when there is none
``DELETE /api/notes/<id>``  204, 404 when there is none
==========================  ====================================================

Errors are JSON: ``{"error": "<what is wrong and how to fix it>"}`` (plus
``"field"`` for a rejected note), with 400 for invalid input (an empty or too
long note, a body that is not a JSON object), 404 for an unknown note, 413 for
a body over 64 KiB, and 405 (with ``Allow``) for ``POST`` to a note or
``DELETE`` of the collection. A method the class does not define at all (PUT,
PATCH) gets the framework's 405 with ``Allow``.

The site maps ``/api/notes`` to this file (``Alias /api/notes .../api.py`` and
``PythonOption modpy_safe.handler .../api.py::Notes``), so the note's id arrives
as ``path_info``: ``/api/notes/42`` → ``"/42"``.
"""
from __future__ import annotations

import json
from typing import Any

import board

import modpy_safe

#: The largest JSON body accepted, in bytes (a note is at most 500 characters).
MAX_BODY = 64 * 1024


class Notes(modpy_safe.Handler):
    """``/api/notes`` and ``/api/notes/<id>``."""

    def get(self) -> Any:
        if not self._item():
            return {"notes": board.list_notes()}
        note_id = board.parse_id(self._raw_id())
        note = board.get_note(note_id) if note_id is not None else None
        if note is None:
            return self._not_found()
        return note

    def post(self) -> Any:
        if self._item():
            return self._error(405, "POST a new note to the collection, not to a note",
                               allow="GET, HEAD, DELETE, OPTIONS")
        try:
            note = board.add_note(self._fields().get("text"))
        except _TooLarge:
            return self._error(413, f"the body is larger than the {MAX_BODY} bytes allowed")
        except board.Invalid as exc:
            return self._error(400, str(exc), field=exc.field)
        self.req.status = 201
        self.req.headers_out["Location"] = f"{self._collection_url()}/{note['id']}"
        return note

    def delete(self) -> Any:
        if not self._item():
            return self._error(405, "DELETE one note: /api/notes/<id>",
                               allow="GET, HEAD, POST, OPTIONS")
        note_id = board.parse_id(self._raw_id())
        if note_id is None or not board.delete_note(note_id):
            return self._not_found()
        self.req.status = 204
        return None

    # -------------------------------------------------------------- helpers

    def _raw_id(self) -> str:
        return self.path_info.strip("/")

    def _item(self) -> bool:
        """Return True when the URL names one note (``/api/notes/<id>``)."""
        return self._raw_id() != ""

    def _collection_url(self) -> str:
        uri: str = self.req.uri
        if self.path_info and uri.endswith(self.path_info):
            uri = uri[: -len(self.path_info)]
        return uri.rstrip("/")

    def _fields(self) -> Any:
        """Return the request's fields: its JSON object, or its form fields."""
        content_type = (self.req.headers_in.get("Content-Type") or "").split(";")[0]
        if content_type.strip().lower() != "application/json":
            return {"text": self.args.getfirst("text")}
        # Read one byte more than allowed: a chunked body has no Content-Length to check.
        raw = self.req.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise _TooLarge()
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            raise board.Invalid(f"the body is not valid UTF-8 JSON: {exc}", field="body") from None
        if not isinstance(data, dict):
            raise board.Invalid('the body must be a JSON object such as {"text": "..."}',
                                field="body")
        return data

    def _not_found(self) -> dict[str, Any]:
        return self._error(404, f"there is no note {self._raw_id()!r}; "
                                "GET /api/notes lists the notes and their ids")

    def _error(self, status: int, message: str, *, field: str | None = None,
               allow: str | None = None) -> dict[str, Any]:
        """Answer ``status`` with ``{"error": message}`` (and the offending field)."""
        self.req.status = status
        if allow:
            self.req.headers_out["Allow"] = allow
        body: dict[str, Any] = {"error": message}
        if field:
            body["field"] = field
        return body


class _TooLarge(Exception):
    """The request body is larger than :data:`MAX_BODY`."""
