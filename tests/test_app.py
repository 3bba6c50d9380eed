"""The example notes board end to end, through httpd under prefork, worker and event.

One httpd (and one fresh database) per MPM serves every test in this module;
tests use distinct note texts so they do not depend on each other, except the
first (the schema does not exist yet) and the last (it edits the helper).
"""
from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fix_notes import NotesSite, expect, notes_site

from modpy_safe.testing import MPMS, PostgresServer, Response

pytestmark = pytest.mark.httpd

# Latin with diacritics, CJK, an emoji outside the BMP, and HTML metacharacters.
UNICODE_TEXT = "Grüße aus Köln — 日本語のメモ 🎉 <b>bold</b> & \"quotes\" 'too'"


@pytest.fixture(scope="module", params=MPMS)
def site(request: Any, postgres: PostgresServer) -> Iterator[NotesSite]:
    with notes_site(postgres, request.param, request) as running:
        yield running


def post_json(site: NotesSite, path: str, payload: Any) -> Response:
    return site.httpd.request("POST", path, body=json.dumps(payload),
                              headers={"Content-Type": "application/json"})


def test_schema_is_created_on_first_use_when_requests_race(site: NotesSite) -> None:
    # The database is fresh: the site's first requests must create the table.
    assert site.query("SELECT to_regclass('notes')") == [(None,)], "run this test first"
    results: list[Response | BaseException] = []
    start = threading.Barrier(8)

    def add(i: int) -> None:
        start.wait()
        try:
            results.append(post_json(site, "/api/notes", {"text": f"race {i}"}))
        except BaseException as exc:  # reported below, not lost in the thread
            results.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(r.status if isinstance(r, Response) else repr(r) for r in results)
    assert statuses == [201] * 8, site.httpd.log_tail()
    texts = {row[0] for row in site.query("SELECT body FROM notes")}
    assert texts == {f"race {i}" for i in range(8)}


def test_api_full_cycle(site: NotesSite) -> None:
    httpd = site.httpd
    listing = expect(httpd.get("/api/notes"), 200, httpd)
    assert listing.header("content-type", "").startswith("application/json")
    assert isinstance(listing.json()["notes"], list)

    created = expect(post_json(site, "/api/notes", {"text": f"  {UNICODE_TEXT}  "}), 201, httpd)
    note = created.json()
    assert note["text"] == UNICODE_TEXT  # surrounding spaces trimmed, everything else kept
    assert created.header("location") == f"/api/notes/{note['id']}"

    fetched = expect(httpd.get(f"/api/notes/{note['id']}"), 200, httpd)
    assert fetched.json() == note
    assert note in expect(httpd.get("/api/notes"), 200, httpd).json()["notes"]
    head = httpd.request("HEAD", f"/api/notes/{note['id']}")
    assert (head.status, head.body) == (200, b"")

    # A form-encoded POST works as well as JSON; 500 characters (not bytes) is the limit.
    longest = "é" * 500
    form = expect(httpd.post("/api/notes", {"text": longest}), 201, httpd)
    assert form.json()["text"] == longest

    # Every validation error is a 400 whose JSON body says what is wrong.
    invalid: list[tuple[Any, str]] = [
        ({"text": ""}, "text"),
        ({"text": "   \n "}, "text"),
        ({}, "text"),
        ({"text": 42}, "text"),
        ({"text": "x" * 501}, "text"),
        (["not", "an", "object"], "body"),
    ]
    for payload, field in invalid:
        resp = expect(post_json(site, "/api/notes", payload), 400, httpd)
        body = resp.json()
        assert body["field"] == field and body["error"], (payload, body)
    for raw in (b"{not json", b'{"text": "\xff"}'):
        resp = httpd.request("POST", "/api/notes", body=raw,
                             headers={"Content-Type": "application/json"})
        assert (resp.status, resp.json()["field"]) == (400, "body"), resp.text
    huge = expect(post_json(site, "/api/notes", {"text": "x" * 70_000}), 413, httpd)
    assert "larger than" in huge.json()["error"]
    empty_form = expect(httpd.post("/api/notes", {"text": ""}), 400, httpd)
    assert "empty" in empty_form.json()["error"]

    # Method rules: POST to a note and DELETE of the collection say what to do instead.
    resp = expect(post_json(site, f"/api/notes/{note['id']}", {"text": "x"}), 405, httpd)
    assert "POST" not in (resp.header("allow") or "") and resp.json()["error"]
    resp = expect(httpd.request("DELETE", "/api/notes"), 405, httpd)
    assert "DELETE" not in (resp.header("allow") or "")
    resp = expect(httpd.request("PUT", f"/api/notes/{note['id']}", body="{}"), 405, httpd)
    assert "GET" in (resp.header("allow") or "")

    deleted = expect(httpd.request("DELETE", f"/api/notes/{note['id']}"), 204, httpd)
    assert deleted.body == b""
    gone = expect(httpd.get(f"/api/notes/{note['id']}"), 404, httpd)
    assert str(note["id"]) in gone.json()["error"]
    expect(httpd.request("DELETE", f"/api/notes/{note['id']}"), 404, httpd)
    for bad_id in ("abc", "0", "-1", "1.5", "99999999999999999999"):
        assert expect(httpd.get(f"/api/notes/{bad_id}"), 404, httpd).json()["error"]


def test_form_post_with_non_ascii_text(site: NotesSite) -> None:
    httpd = site.httpd
    text = f"{UNICODE_TEXT} (form)"
    posted = expect(httpd.post("/index.py/add", {"text": text}), 303, httpd)
    assert posted.header("location") == "/"

    page = expect(httpd.get("/"), 200, httpd)
    assert page.header("content-type", "").startswith("text/html")
    assert html.escape(text) in page.text
    assert "<b>bold</b>" not in page.text  # escaped, never markup
    stored = [n for n in httpd.get("/api/notes").json()["notes"] if n["text"] == text]
    assert len(stored) == 1  # the same characters came back out of PostgreSQL

    # A refused note comes back with the reason, the draft kept (escaped), status 400.
    draft = "ü" * 501
    refused = expect(httpd.post("/index.py/add", {"text": draft}), 400, httpd)
    assert "at most 500" in refused.text
    assert f">{draft}</textarea>" in refused.text
    blank = expect(httpd.post("/index.py/add", {"text": "  "}), 400, httpd)
    assert 'id="error"' in blank.text
    # Only POST adds: following the form's URL by hand goes back to the page.
    assert expect(httpd.get("/index.py/add?text=sneaky"), 303, httpd).header("location") == "/"
    assert "sneaky" not in httpd.get("/").text


def test_note_added_through_api_appears_on_page(site: NotesSite) -> None:
    httpd = site.httpd
    text = "from the API: <script>alert('x')</script> ✓"
    note = expect(post_json(site, "/api/notes", {"text": text}), 201, httpd).json()
    page = expect(httpd.get("/"), 200, httpd).text
    assert f'<li id="note-{note["id"]}"><p class="text">{html.escape(text)}</p>' in page
    assert "<script>alert" not in page

    # The page's delete button removes it, through the publisher.
    expect(httpd.post("/index.py/delete", {"id": str(note["id"])}), 303, httpd)
    expect(httpd.get(f"/api/notes/{note['id']}"), 404, httpd)
    assert f'id="note-{note["id"]}"' not in httpd.get("/").text


def test_health_is_a_function_handler_over_the_same_data(site: NotesSite) -> None:
    httpd = site.httpd
    health = expect(httpd.get("/health"), 200, httpd).json()
    (count,) = site.query("SELECT count(*) FROM notes")[0]
    assert health == {"ok": True, "title": "Notes", "notes": count}


def test_helper_and_internals_are_not_published(site: NotesSite) -> None:
    httpd = site.httpd
    assert httpd.get("/board.py").status == 403  # denied by the site's config
    for path in ("/index.py/board", "/index.py/modpy_safe", "/index.py/_base",
                 "/index.py/board/db", "/index.py/__dict__"):
        assert httpd.get(path).status == 403, path


def _status(session: Any) -> dict[str, Any]:
    resp = session.get("/status?format=json", headers={"Accept": "application/json"})
    assert resp.status == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def _generations(report: dict[str, Any]) -> dict[str, int]:
    """Map each loaded file's name to its generation, from the status page's JSON."""
    return {m["path"].rsplit("/", 1)[-1]: int(m["generation"]) for m in report["modules"]}


def test_editing_the_helper_reloads_both_handlers_on_the_same_connection(
    site: NotesSite,
) -> None:
    """What a user sees in ``make run``: edit handlers/board.py, reload the page."""
    httpd = site.httpd
    with site.session() as session:  # one httpd child answers everything below
        assert ">Notes</h1>" in expect(session.get("/"), 200, httpd).text
        expect(session.get("/api/notes"), 200, httpd)
        before = _generations(_status(session))
        connections = site.connections()
        assert connections >= 1

        source = httpd.path("board.py").read_text()
        assert 'TITLE = "Notes"' in source
        httpd.write("board.py", source.replace('TITLE = "Notes"', 'TITLE = "Notes — edited"'))

        # Each handler file checks itself and its imports at most once a second, so
        # both are polled (bounded): the page (publisher) and /health (dispatch).
        for path in ("/", "/health"):
            for _ in range(100):
                if "Notes — edited" in expect(session.get(path), 200, httpd).text:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError(f"{path} never showed the edited title:\n"
                                     f"{httpd.log_tail()}")
        after = _generations(_status(session))
        assert after["board.py"] > before["board.py"]
        assert after["index.py"] > before["index.py"]  # reloaded because it imports board
        assert site.connections() == connections
