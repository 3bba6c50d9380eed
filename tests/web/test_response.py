"""modpy_safe.web.response, handler and routing in plain Python, with a stand-in request.

The same behaviour is proven through httpd in test_dispatch.py; these tests
pin the corner cases that are slow or awkward to reach through a server.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from modpy_safe import DatabaseUnavailable, Handler, HTTPError, redirect
from modpy_safe._errors import ConfigError
from modpy_safe.web.response import handle_error, looks_like_html, render
from modpy_safe.web.routing import Target, find, parse_spec


class StandInRequest:
    """What _response touches on mod_python's request, recorded for assertions."""

    def __init__(self, method: str = "GET", accept: str = "") -> None:
        self.method = method
        self.unparsed_uri = "/test"
        self.path_info = "/7"
        self.args = None
        self.headers_in = {"accept": accept} if accept else {}
        self.headers_out: dict[str, str] = {}
        self.status = 200
        self.sent_bodyct = 0
        self._content_type_set = 0
        self._content_type = "text/x-python"  # what mod_mime sets for a .py file
        self.writes: list[tuple[bytes, int]] = []

    @property
    def content_type(self) -> str:
        return self._content_type

    @content_type.setter
    def content_type(self, value: str) -> None:
        self._content_type = value
        self._content_type_set = 1

    def write(self, data: bytes, flush: int = 1) -> None:
        assert isinstance(data, bytes)
        self.writes.append((data, flush))
        if flush:
            self.sent_bodyct = 1

    @property
    def body(self) -> bytes:
        return b"".join(data for data, _ in self.writes)


@pytest.mark.parametrize(
    "result, body, ctype",
    [
        ("Grüße", "Grüße".encode(), "text/plain; charset=utf-8"),
        ("\n <div>x</div>\n", b"\n <div>x</div>\n", "text/html; charset=utf-8"),
        ("<3 but not html", b"<3 but not html", "text/plain; charset=utf-8"),
        (b"\x00\x01", b"\x00\x01", "application/octet-stream"),
        (bytearray(b"ab"), b"ab", "application/octet-stream"),
        ({"a": "ä"}, '{"a": "ä"}'.encode(), "application/json"),
        ([1, 2], b"[1, 2]", "application/json"),
        (iter(["a", b"b", "c"]), b"abc", "text/plain; charset=utf-8"),
        ((p for p in [b"\x00", "x"]), b"\x00x", "application/octet-stream"),
    ],
    ids=["str", "html", "not-html", "bytes", "bytearray", "dict", "list", "iterator", "gen"],
)
def test_render_bodies(result: Any, body: bytes, ctype: str) -> None:
    req = StandInRequest()
    assert render(req, result) == 0
    assert req.body == body
    assert req.content_type == ctype


def test_render_whole_bodies_unflushed_and_streams_flushed() -> None:
    whole = StandInRequest()
    render(whole, "text")
    assert whole.writes == [(b"text", 0)]  # Apache can add Content-Length
    stream = StandInRequest()
    render(stream, iter(["a", "b"]))
    assert [flush for _, flush in stream.writes] == [1, 1]


def test_render_keeps_a_content_type_the_handler_set() -> None:
    req = StandInRequest()
    req.content_type = "text/csv"
    render(req, "a,b")
    assert req.content_type == "text/csv"


def test_render_statuses_and_bad_results() -> None:
    req = StandInRequest()
    assert render(req, None) == 0 and render(req, 404) == 404 and req.writes == []
    with pytest.raises(TypeError, match="returned True"):
        render(req, True)
    with pytest.raises(TypeError, match="returned float"):
        render(req, 1.5)
    with pytest.raises(TypeError, match="yielded int"):
        render(req, iter([1]))


def test_generator_is_closed_when_writing_fails() -> None:
    closed = []

    def pieces() -> Any:
        try:
            yield "a"
            yield 2
        finally:
            closed.append(True)

    with pytest.raises(TypeError):
        render(StandInRequest(), pieces())
    assert closed == [True]


def test_looks_like_html() -> None:
    for html in ("<!DOCTYPE html><html></html>\n", "<b>bold</b> then text", "  </p>",
                 "Title\n<body>x</body></HTML>\n"):
        assert looks_like_html(html), html
    for text in ("a < b > c", "", "<3 you", "< p>", "plain"):
        assert not looks_like_html(text), text


def test_httperror_and_redirect_pages() -> None:
    req = StandInRequest()
    assert handle_error(req, HTTPError(404, "no <such> note"), debug=False) == 0
    assert req.status == 404 and b"no &lt;such&gt; note" in req.body
    req = StandInRequest(accept="application/json")
    handle_error(req, HTTPError(409, "taken"), debug=False)
    assert json.loads(req.body) == {"status": 409, "error": "Conflict", "message": "taken"}
    with pytest.raises(HTTPError) as info:
        redirect("/next?a=1")
    req = StandInRequest()
    handle_error(req, info.value, debug=False)
    assert req.status == 303 and req.headers_out["Location"] == "/next?a=1"
    for bad in ("", "/a\r\nSet-Cookie: x=1"):
        with pytest.raises(ValueError):
            redirect(bad)
    with pytest.raises(ValueError):
        redirect("/", status=200)


def _raise(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_error_page_production_and_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="modpy_safe.dispatch")
    req = StandInRequest()
    assert handle_error(req, _raise(RuntimeError("internal detail")), debug=False) == 0
    assert req.status == 500
    assert b"internal detail" not in req.body and b"Traceback" not in req.body
    ref = req.body.split(b"<code>")[1].split(b"</code>")[0].decode()
    assert f"[{ref}]" in caplog.text and "RuntimeError: internal detail" in caplog.text

    debug = StandInRequest()
    handle_error(debug, _raise(RuntimeError("internal detail")), debug=True)
    assert b"Traceback" in debug.body and b"internal detail" in debug.body


def test_database_error_is_503_without_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="modpy_safe.dispatch")
    req = StandInRequest()
    exc = _raise(DatabaseUnavailable("cannot reach host=db user=app password=hunter22x"))
    handle_error(req, exc, debug=True)
    assert req.status == 503 and b"not available" in req.body
    assert b"hunter22x" not in req.body and "hunter22x" not in caplog.text


def test_error_after_the_headers_went_out_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    req = StandInRequest()
    req.write(b"partial")
    assert handle_error(req, _raise(ValueError("late")), debug=True) == 0
    assert req.body == b"partial" and req.status == 200
    assert "ValueError: late" in caplog.text


class Notes(Handler):
    def get(self) -> Any:
        return {"path": self.path_info}

    def post(self) -> str:
        return "posted"


class Custom(Handler):
    def get(self) -> str:
        return "get"

    def head(self) -> str:
        return "head"


def test_handler_routes_and_allow() -> None:
    assert Notes.routes == {"GET": "get", "HEAD": "get", "POST": "post", "OPTIONS": "options"}
    assert Notes.allow == "GET, HEAD, POST, OPTIONS"
    assert Custom.routes["HEAD"] == "head"
    from modpy_safe.web.response import call

    req = StandInRequest("GET")
    call(req, Notes)
    assert json.loads(req.body) == {"path": "/7"}
    req = StandInRequest("OPTIONS")
    call(req, Notes)
    assert req.headers_out["Allow"] == "GET, HEAD, POST, OPTIONS" and req.body == b""
    with pytest.raises(HTTPError) as info:
        call(StandInRequest("DELETE"), Notes)
    assert info.value.status == 405 and info.value.headers == {"Allow": Notes.allow}


def test_parse_spec() -> None:
    assert parse_spec("app.py") == ("app.py", "handler")
    assert parse_spec(" /srv/app.py :: Notes ") == ("/srv/app.py", "Notes")
    assert parse_spec("mymodule") == ("mymodule.py", "handler")
    assert parse_spec("pkg.mod::run") == ("pkg/mod.py", "run")
    for bad in ("", "app.py::not an id", "dir/app", "::x"):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_find_missing_name() -> None:
    module = type("M", (), {"handler": 5, "other": staticmethod(lambda req: 0)})
    with pytest.raises(HTTPError) as info:
        find(module, Target("/x.py", "handler", False))
    assert info.value.status == 404
    with pytest.raises(ConfigError, match="defines no function or Handler class called 'nope'"):
        find(module, Target("/x.py", "nope", True))
    assert find(module, Target("/x.py", "other", True)) is module.other


def test_httperror_mid_stream_leaves_the_sent_part_alone() -> None:
    def pieces() -> Any:
        yield "first"
        raise HTTPError(404, "gone meanwhile")

    req = StandInRequest()
    with pytest.raises(HTTPError) as info:
        render(req, pieces())
    assert handle_error(req, info.value, debug=False) == 0
    assert req.body == b"first" and req.status == 200
