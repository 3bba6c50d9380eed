"""Multipart bodies for the upload tests: parts, whole bodies, and mutations of them."""
from __future__ import annotations

import random

B = "XyZ"


def part(name: str, data: bytes, *, filename: str | None = None,
         ctype: str | None = None, extra: str = "") -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = f"Content-Disposition: {disposition}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    return f"--{B}\r\n{head}{extra}\r\n".encode() + data + b"\r\n"


def body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{B}--\r\n".encode()


SEED_BODY = body(
    part("note", "Grüße".encode(), ctype="text/plain; charset=utf-8"),
    part("a%22b", b"v"),
    part("up", bytes(range(256)) * 4, filename="x%0D%0A.bin", ctype="application/octet-stream"),
    part("empty", b"", filename=""),
)
TOKENS = [b"\r\n", b"\n", b"\r", b"--", b"--XyZ", b"\r\n--XyZ", b"\r\n--XyZ--", b"\x00", b"\xff",
          b'"', b";", b"=", b":", b"%", b"%22", b"\\", b" ", b"\t", b"*", b"charset=punycode",
          b"Content-Disposition: form-data; name=", b"filename*=utf-8''%ff", b"Content-Length: 3",
          b"Content-Type: text/plain; charset=", b"Content-Length: -1", "ä".encode()]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:  # flip a byte
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 1:  # insert a token
            out[pos:pos] = rng.choice(TOKENS)
        elif op == 2:  # delete a span
            del out[pos:pos + rng.randint(1, 40)]
        elif op == 3:  # duplicate a span
            out[pos:pos] = out[pos:pos + rng.randint(1, 200)]
        elif op == 4:  # truncate
            del out[pos:]
        else:  # repeat a token many times
            out[pos:pos] = rng.choice(TOKENS) * rng.randint(10, 3000)
    return bytes(out)
