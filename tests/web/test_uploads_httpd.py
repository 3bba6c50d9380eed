"""Uploads through a real httpd: a 64 MiB file in bounded memory, temporary files removed.

The child's resident memory is read from ``/proc/<pid>/status`` around the
upload; its peak (``VmHWM``) is reset first through ``/proc/<pid>/clear_refs``,
so the growth measured is the upload's alone.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fix_multipart import SEED_BODY, B, mutate

from modpy_safe.testing import Httpd, make_tempdir, running

pytestmark = pytest.mark.httpd

MiB = 1024 * 1024
UPLOAD_SIZE = 64 * MiB
BOUNDARY = "----modpysafeUploadBoundary7MA4YWxkTrZu0gW"

UPLOAD_HANDLER = '''\
import hashlib, os
import modpy_safe

class Upload(modpy_safe.Handler):
    def post(self):
        field = self.args["file"]
        digest = hashlib.sha256()
        size = 0
        # Read in pieces, as the docs say: .value would load the whole file.
        while True:
            piece = field.file.read(1 << 16)
            if not piece:
                break
            size += len(piece)
            digest.update(piece)
        try:
            where = os.readlink(f"/proc/self/fd/{field.file.fileno()}")
        except (OSError, ValueError):  # io.UnsupportedOperation: kept in memory
            where = "memory"
        return {"pid": os.getpid(), "filename": field.filename, "size": size,
                "sha256": digest.hexdigest(), "note": self.args["note"], "where": where}

    def get(self):
        return {"pid": os.getpid()}

handler = Upload
'''

FIELDS_HANDLER = '''\
import modpy_safe

class Fields(modpy_safe.Handler):
    def post(self):
        return {name: getattr(value, "filename", "text") for name, value in self.args.items()}

handler = Fields
'''


def pattern_chunks(size: int) -> Iterator[bytes]:
    """Yield ``size`` bytes of a pattern that never contains the boundary, 1 MiB at a time."""
    block = hashlib.sha256(b"seed").digest() * (MiB // 32)
    for start in range(0, size, MiB):
        yield block[: min(MiB, size - start)]


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def open_fds_under(pid: int, directory: Path) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[Httpd]:
    root = make_tempdir("modpy_safe-httpd-uploads-")
    spool = root / "spool"
    spool.mkdir()
    os.chmod(spool, 0o1777)
    files = {"upload.py": UPLOAD_HANDLER, "fields.py": FIELDS_HANDLER}
    with running(Httpd(root, mpm="prefork", processes=1, files=files,
                       directory="PythonHandler modpy_safe.dispatch",
                       options={"modpy_safe.forms.max_body": str(UPLOAD_SIZE + MiB),
                                "modpy_safe.forms.temp_dir": str(spool)}),
                 request) as httpd:
        yield httpd


def post_upload(server: Httpd, size: int) -> dict[str, object]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nGrüße\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big%22one.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from pattern_chunks(size)
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/upload.py", body=body(), headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(len(head) + size + len(tail))})
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, payload[:2000].decode(errors="replace") + server.log_tail()
    answer: dict[str, object] = json.loads(payload)
    return answer


def test_a_64_mib_upload_arrives_whole_in_bounded_memory(server: Httpd) -> None:
    spool = server.root / "spool"
    # Warm up: the handler, the framework and the parser are loaded before measuring.
    pid = post_upload(server, 2 * MiB)["pid"]
    assert isinstance(pid, int)
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = status_kib(pid, "VmRSS")

    answer = post_upload(server, UPLOAD_SIZE)

    peak, after = status_kib(pid, "VmHWM"), status_kib(pid, "VmRSS")
    expected = hashlib.sha256()
    for chunk in pattern_chunks(UPLOAD_SIZE):
        expected.update(chunk)
    assert answer["pid"] == pid, "the one prefork child served both uploads"
    assert answer["size"] == UPLOAD_SIZE and answer["sha256"] == expected.hexdigest()
    assert answer["filename"] == 'big"one.bin' and answer["note"] == "Grüße"
    growth = (peak - before) / 1024
    print(f"child RSS before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB, "
          f"after {after / 1024:.1f} MiB: peak growth {growth:.1f} MiB")
    assert growth < 16, f"the child's resident memory grew by {growth:.1f} MiB"
    assert str(answer["where"]).startswith(str(spool)), "the file part was spooled to disk"
    # The request is over: its temporary file is closed, so the disk space is free.
    assert open_fds_under(pid, spool) == [] and os.listdir(spool) == []


def test_mutated_bodies_through_httpd_get_200_or_4xx_never_500(server: Httpd) -> None:
    rng = random.Random(1201)
    statuses: dict[int, int] = {}
    for _ in range(300):
        answer = server.request("POST", "/fields.py", body=mutate(rng, SEED_BODY), headers={
            "Content-Type": f"multipart/form-data; boundary={B}"})
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        assert answer.status == 200 or 400 <= answer.status < 500, (
            answer.status, answer.text[:300], server.log_tail())
    assert statuses.get(200, 0) > 10 and statuses.get(400, 0) > 10, statuses
    spool = server.root / "spool"
    assert os.listdir(spool) == []
