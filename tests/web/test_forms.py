"""modpy_safe.web.forms in plain Python with a stand-in request (httpd tests: test_dispatch)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from modpy_safe import HTTPError
from modpy_safe._context import RequestScope
from modpy_safe._options import Options
from modpy_safe.web.forms import Field, FormData, parse, parse_query


class Headers(dict):  # type: ignore[type-arg]
    """Case-insensitive like mod_python's table."""

    def get(self, key: str, default: Any = None) -> Any:
        for k, v in self.items():
            if k.lower() == key.lower():
                return v
        return default


class StandInRequest:
    """The part of mod_python's request that _forms uses: args, headers_in, read()."""

    def __init__(
        self, args: str | None = None, body: bytes = b"", ctype: str | None = None
    ) -> None:
        self.args = args
        self.headers_in = Headers()
        if ctype:
            self.headers_in["Content-Type"] = ctype
            self.headers_in["Content-Length"] = str(len(body))
        self._body = body
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if size < 0:
            size = len(self._body)
        chunk, self._body = self._body[:size], self._body[size:]
        return chunk


NOTE = "Grüße, 日本語 & ✓"


Part = tuple[str, "str | tuple[str, bytes, str]"]


def multipart(parts: list[Part], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, value in parts:
        out += f"--{boundary}\r\n".encode()
        if isinstance(value, tuple):
            filename, data, ctype = value
            out += (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    f"Content-Type: {ctype}\r\n\r\n").encode() + data + b"\r\n"
        else:
            out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += value.encode() + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_query_string_non_ascii_and_repeats() -> None:
    req = StandInRequest(args=urlencode([("note", NOTE), ("tag", "a"), ("tag", "b"), ("flag", "")]))
    form = parse(req)
    assert form["note"] == NOTE
    assert form["tag"] == ["a", "b"]
    assert form.getlist("note") == [NOTE]
    assert form.getfirst("tag") == "a"
    assert form["flag"] == ""
    assert form.keys() == ["note", "tag", "flag"]
    assert form.items()[1:3] == [("tag", "a"), ("tag", "b")]
    assert "missing" not in form and form.get("missing", 7) == 7 and form.getlist("missing") == []
    with pytest.raises(KeyError):
        form["missing"]


def test_urlencoded_body_merges_after_query_as_str() -> None:
    body = urlencode({"note": NOTE, "tag": "c"}).encode()
    req = StandInRequest(args="tag=a", body=body,
                         ctype="application/x-www-form-urlencoded; charset=UTF-8")
    form = parse(req)
    assert form["note"] == NOTE and isinstance(form["note"], str)
    assert form["tag"] == ["a", "c"]


def test_multipart_text_and_file() -> None:
    data = bytes(range(256)) + b"\r\n--Xy almost a boundary\r\n"
    body = multipart([("note", NOTE), ("upload", ("bericht-ä.bin", data, "application/x-raw")),
                      ("note", "second")])
    req = StandInRequest(body=body, ctype='multipart/form-data; boundary="XyZ"')
    with RequestScope(req, Options({})):
        form = parse(req)
        assert form["note"] == [NOTE, "second"]
        upload = form["upload"]
        assert isinstance(upload, Field)
        assert upload.filename == "bericht-ä.bin"
        assert upload.type == "application/x-raw"
        assert upload.value == data
        assert upload.file.read() == data
    assert upload.file.closed, "the request's end closes its uploads"


def test_body_is_read_once_per_request_and_cached_on_the_scope() -> None:
    req = StandInRequest(body=b"a=1", ctype="application/x-www-form-urlencoded")
    with RequestScope(req, Options({})):
        first = parse(req)
        assert parse(req) is first
    assert req.reads == 1
    assert first["a"] == "1"
    # Without a scope the cache lives on the request itself.
    bare = StandInRequest(body=b"a=2", ctype="application/x-www-form-urlencoded")
    assert parse(bare) is parse(bare) and bare.reads == 1


def test_other_bodies_are_left_unread() -> None:
    req = StandInRequest(args="x=1", body=b'{"a": 1}', ctype="application/json")
    assert parse(req).to_dict() == {"x": "1"}
    assert req.reads == 0


MULTI = "multipart/form-data; boundary=XyZ"
PART_A = b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n'


@pytest.mark.parametrize(
    "args, body, ctype",
    [
        ("note=%FF", b"", None),
        (None, b"note=%C3%28", "application/x-www-form-urlencoded"),
        (None, b"note=\xff", "application/x-www-form-urlencoded"),
        (None, PART_A + b"no end", MULTI),
        (None, PART_A + b"\xff\r\n--XyZ--", MULTI),
        (None, b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", MULTI),
        (None, b"whatever", "multipart/form-data"),
        (None, b"no boundary here", "multipart/form-data; boundary=XyZ"),
    ],
    ids=["query-bad-utf8", "body-bad-escape", "body-raw-bad-utf8", "multipart-truncated",
         "multipart-bad-utf8", "multipart-no-name", "multipart-no-boundary-param",
         "multipart-boundary-absent"],
)
def test_bad_input_is_400(args: str | None, body: bytes, ctype: str | None) -> None:
    with pytest.raises(HTTPError) as info:
        parse(StandInRequest(args=args, body=body, ctype=ctype))
    assert info.value.status == 400


def test_body_over_the_limit_is_413() -> None:
    req = StandInRequest(body=b"a=" + b"x" * 100, ctype="application/x-www-form-urlencoded")
    with RequestScope(req, Options({"modpy_safe.forms.max_body": "50"})):
        with pytest.raises(HTTPError) as info:
            parse(req)
    assert info.value.status == 413
    assert req.reads == 0


def test_parse_query_edge_cases() -> None:
    assert parse_query(None) == [] and parse_query("") == []
    assert parse_query("a&b=&c=1+2") == [("a", ""), ("b", ""), ("c", "1 2")]


def test_multipart_preamble_epilogue_and_empty_file() -> None:
    body = (b"preamble\r\n--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\nepilogue")
    req = StandInRequest(body=body, ctype="multipart/form-data; boundary=B")
    with RequestScope(req, Options({})):
        (name, field), = parse(req).items()
        assert name == "f" and isinstance(field, Field)
        assert field.filename == "" and field.value == b""


def test_formdata_mapping_surface() -> None:
    form = FormData([("a", "1"), ("b", "2"), ("a", "3")])
    assert len(form) == 2 and list(form) == ["a", "b"] and form.has_key("b")
    assert form.to_dict() == {"a": ["1", "3"], "b": "2"}
    assert not FormData() and form


def multipart_request(parts: int, options: dict[str, str]) -> tuple[StandInRequest, Options]:
    body = multipart([("a", "1")] * parts)
    return StandInRequest(body=body, ctype=MULTI), Options(options)


def test_multipart_limits_come_from_the_request_options() -> None:
    req, options = multipart_request(3, {"modpy_safe.forms.max_parts": "2"})
    with RequestScope(req, options), pytest.raises(HTTPError) as info:
        parse(req)
    assert info.value.status == 413 and "modpy_safe.forms.max_parts" in info.value.message
    req, options = multipart_request(2, {"modpy_safe.forms.max_parts": "2"})
    with RequestScope(req, options):
        assert parse(req)["a"] == ["1", "1"]


def test_a_bad_forms_option_names_the_option_and_what_is_allowed() -> None:
    from modpy_safe import ConfigError

    req, options = multipart_request(1, {"modpy_safe.forms.max_parts": "many"})
    with RequestScope(req, options), pytest.raises(ConfigError) as info:
        parse(req)
    assert "modpy_safe.forms.max_parts" in str(info.value) and "'many'" in str(info.value)
    assert "whole number" in str(info.value)


def test_a_multipart_body_declared_over_max_body_is_refused_unread() -> None:
    req = StandInRequest(body=multipart([("a", "x" * 100)]), ctype=MULTI)
    with RequestScope(req, Options({"modpy_safe.forms.max_body": "50"})):
        with pytest.raises(HTTPError) as info:
            parse(req)
    assert info.value.status == 413 and req.reads == 0


def test_a_non_utf8_content_type_is_a_400() -> None:
    class BadHeaders(Headers):
        def get(self, key: str, default: Any = None) -> Any:
            raise UnicodeDecodeError("utf-8", b"\xe4", 0, 1, "invalid")

    req = StandInRequest(body=b"x", ctype=MULTI)
    req.headers_in = BadHeaders()
    with pytest.raises(HTTPError) as info:
        parse(req)
    assert info.value.status == 400
