"""modpy_safe.web.uploads in plain Python: streaming, spooling, limits, decoding, fuzzing."""
from __future__ import annotations

import io
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fix_multipart import SEED_BODY, B, body, mutate, part

from modpy_safe import HTTPError
from modpy_safe.web import uploads
from modpy_safe.web.uploads import Field, Limits, boundary_of, parse_stream


def reader(data: bytes, rng: random.Random | None = None) -> Callable[[int], bytes]:
    """Return read(n) over ``data``; with ``rng``, each read returns a random 1..n bytes."""
    stream = io.BytesIO(data)

    def read(size: int) -> bytes:
        if rng is not None:
            size = rng.randint(1, size)
        return stream.read(size)

    return read


OPEN: list = []


@pytest.fixture(autouse=True)
def _close_uploads() -> Iterator[None]:
    """Close what a test's parses left open, as a request's end does in httpd."""
    yield
    while OPEN:
        OPEN.pop().close()


def parse(data: bytes, limits: Limits = uploads.DEFAULT_LIMITS,
          rng: random.Random | None = None,
          files: list | None = None) -> list[tuple[str, object]]:
    files = OPEN if files is None else files
    try:
        return parse_stream(reader(data, rng), B, content_length=len(data), limits=limits,
                            files=files)
    finally:
        OPEN.extend(f for f in files if f not in OPEN)


def fds_under(directory: Path) -> list[str]:
    """Return this process's open descriptors that point into ``directory``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def test_text_and_file_parts_arrive_in_order_whatever_the_chunking() -> None:
    data = bytes(range(256)) * 50 + b"\r\n--Xy almost a boundary\r\n--X\r"
    raw = body(part("note", "Grüße ✓".encode()), part("up", data, filename="r.bin",
                                                         ctype="application/x-raw"),
               part("note", b"second"))
    for rng in (None, random.Random(1), random.Random(2)):
        pairs = parse(raw, rng=rng)
        assert [name for name, _ in pairs] == ["note", "up", "note"]
        assert pairs[0][1] == "Grüße ✓" and pairs[2][1] == "second"
        field = pairs[1][1]
        assert isinstance(field, Field)
        assert field.value == data and field.file.read() == data
        assert (field.filename, field.type, field.size) == ("r.bin", "application/x-raw", len(data))
        assert field.headers["content-type"] == "application/x-raw"


def test_a_large_file_is_spooled_to_an_unlinked_temporary_file(tmp_path: Path) -> None:
    limits = Limits(spool_size=1000, temp_dir=str(tmp_path))
    files: list = []
    pairs = parse(body(part("small", b"s" * 999, filename="s"),
                       part("big", b"b" * 5000, filename="b")), limits, files=files)
    assert len(files) == 2
    assert len(fds_under(tmp_path)) == 1, "only the part above spool_size goes to disk"
    assert os.listdir(tmp_path) == [], "the temporary file has no name on disk"
    assert pairs[1][1].value == b"b" * 5000
    for file in files:
        file.close()
    assert fds_under(tmp_path) == []


def test_files_made_before_an_error_are_closed(tmp_path: Path) -> None:
    limits = Limits(spool_size=10, temp_dir=str(tmp_path))
    files: list = []
    with pytest.raises(HTTPError) as info:
        parse(body(part("big", b"b" * 5000, filename="b"))[:-5], limits, files=files)
    assert info.value.status == 400
    assert files == [] and fds_under(tmp_path) == []


@pytest.mark.parametrize("sent, decoded", [
    ("a%22b.txt", 'a"b.txt'), ("x%0D%0Ay", "x\r\ny"), ("Grüße.txt", "Grüße.txt"),
    ("100%25.txt", "100%25.txt"),
])
def test_names_and_filenames_are_decoded_as_browsers_encode_them(sent: str, decoded: str) -> None:
    """The HTML standard sends " CR LF as %22 %0D %0A, and everything else as it is."""
    (name, field), = parse(body(part(sent, b"x", filename=sent)))
    assert name == decoded
    assert isinstance(field, Field) and field.filename == decoded
    assert field.disposition_options == {"name": decoded, "filename": decoded}


def test_a_windows_path_as_filename_keeps_only_the_last_part() -> None:
    (_, field), = parse(body(part("f", b"x", filename="C:\\\\dir\\\\f.txt")))
    assert field.filename == "f.txt"


@pytest.mark.parametrize("charset, data, text", [
    ("utf-8", "ä✓".encode(), "ä✓"), ("UTF8", b"\xc3\xa4", "ä"),
    ("iso-8859-1", b"\xe4", "ä"), ("latin1", b"\xe4", "ä"), ("us-ascii", b"abc", "abc"),
])
def test_allowed_charsets_decode_text_fields(charset: str, data: bytes, text: str) -> None:
    (_, value), = parse(body(part("t", data, ctype=f"text/plain; charset={charset}")))
    assert value == text


@pytest.mark.parametrize("charset", [
    "punycode", "utf-7", "utf-16", "rot13", "idna", "u\x00tf-8", '"utf\\"8"', "x" * 300, "zlib",
])
def test_any_other_charset_is_a_400_without_decoding(charset: str) -> None:
    data = b"a" * 100_000
    with pytest.raises(HTTPError) as info:
        parse(body(part("t", data, ctype=f"text/plain; charset={charset}")))
    assert info.value.status == 400 and "charset" in info.value.message


def test_ascii_text_that_is_not_ascii_is_a_400() -> None:
    with pytest.raises(HTTPError) as info:
        parse(body(part("t", b"\xe4", ctype="text/plain; charset=us-ascii")))
    assert info.value.status == 400


@pytest.mark.parametrize("raw, limits, option", [
    (body(*[part("a", b"1")] * 11), Limits(max_parts=10), "max_parts"),
    (body(part("a", b"x" * 101)), Limits(max_field_size=100), "max_field_size"),
    (body(part("f", b"x" * 101, filename="f")), Limits(max_file_size=100), "max_file_size"),
    (body(part("a", b"1", extra="X-Long: " + "a" * 300 + "\r\n")), Limits(max_header_size=256),
     "max_header_size"),
    (body(part("a", b"1", extra="X-A: 1\r\n" * 3)), Limits(max_headers=3), "max_headers"),
    (body(part("f", b"x" * 5000, filename="f")), Limits(max_body=4000), "max_body"),
])
def test_each_limit_is_a_413_naming_its_option(raw: bytes, limits: Limits, option: str) -> None:
    with pytest.raises(HTTPError) as info:
        parse(raw, limits)
    assert info.value.status == 413
    assert f"modpy_safe.forms.{option}" in info.value.message


def test_limits_at_their_value_are_accepted() -> None:
    limits = Limits(max_parts=2, max_field_size=100, max_file_size=100, max_headers=3,
                    max_body=0)
    pairs = parse(body(part("a", b"x" * 100, extra="X-A: 1\r\n"),
                       part("f", b"y" * 100, filename="f", ctype="text/plain")), limits)
    assert len(pairs) == 2


def test_a_header_line_without_end_stops_at_the_limit() -> None:
    """A 15 MB header line is refused once the limit is passed, not read to its end."""
    raw = f"--{B}\r\nContent-Disposition: form-data; name=\"a\"; x=\"".encode() + b"a" * 15_000_000
    reads = 0
    stream = io.BytesIO(raw)

    def read(size: int) -> bytes:
        nonlocal reads
        reads += 1
        return stream.read(size)

    with pytest.raises(HTTPError) as info:
        parse_stream(read, B, content_length=len(raw), limits=Limits(max_body=0))
    assert info.value.status == 413 and reads < 5


@pytest.mark.parametrize("ctype", [
    "multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data; boundary=\"\"",
    "multipart/form-data; boundary*=utf-8''%C3%A4", "multipart/form-data; boundary=\"ä\"",
    "multipart/form-data; boundary=\"a\x00b\"", "multipart/form-data; boundary=" + "b" * 300,
    "multipart/form-data; boundary=\"ends in space \"",
])
def test_a_bad_boundary_is_a_400(ctype: str) -> None:
    with pytest.raises(HTTPError) as info:
        boundary_of(ctype)
    assert info.value.status == 400


def test_browser_boundaries_are_accepted() -> None:
    assert boundary_of("multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW"
                       ) == "----WebKitFormBoundary7MA4YWxkTrZu0gW"
    assert boundary_of('multipart/form-data; charset=utf-8; boundary="a:b=c"') == "a:b=c"


# ------------------------------------------------------------------ fuzzing
def test_fuzzed_bodies_parse_or_get_a_4xx() -> None:
    rng = random.Random(20261201)
    limits = Limits(max_parts=50, max_field_size=10_000, max_header_size=512, max_headers=4,
                    spool_size=512)
    outcomes = {"parsed": 0, 400: 0, 413: 0}
    for _ in range(4000):
        raw = mutate(rng, SEED_BODY)
        files: list = []
        try:
            parse(raw, limits, rng=rng, files=files)
            outcomes["parsed"] += 1
        except HTTPError as exc:
            assert 400 <= exc.status < 500, (exc, raw)
            outcomes[exc.status] += 1
            assert files == []
        for file in files:
            file.close()
    # The mutations reach both sides: some bodies still parse, many are refused.
    assert outcomes["parsed"] > 100 and outcomes[400] > 100, outcomes


def test_fuzzed_content_types_parse_or_get_a_4xx() -> None:
    rng = random.Random(7)
    seed = b'multipart/form-data; charset=utf-8; boundary="XyZ"'
    for _ in range(3000):
        ctype = mutate(rng, seed).decode("latin-1")
        try:
            boundary_of(ctype)
        except HTTPError as exc:
            assert exc.status == 400


def test_a_temp_dir_that_cannot_hold_files_names_the_option(tmp_path: Path) -> None:
    from modpy_safe import ConfigError

    missing = tmp_path / "missing"
    for spool_size in (0, 1000):  # on disk at once, or only once it grows
        with pytest.raises(ConfigError) as info:
            parse(body(part("f", b"x", filename="f")),
                  Limits(spool_size=spool_size, temp_dir=str(missing)))
        message = str(info.value)
        assert "modpy_safe.forms.temp_dir" in message and repr(str(missing)) in message
