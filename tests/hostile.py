"""Crafted attack inputs for the security regression tests: decompression bombs, YAML bombs, huge bodies."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

SOF_MARKERS = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
"""Every start-of-frame kind: baseline, extended, progressive, lossless, hierarchical, arithmetic."""


def small_jpeg(size: int = 16, value: int = 128) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((size, size, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def jpeg_declaring(width: int, height: int, *, fill: int = 60, sof: int = 0xC0, standalone: bool = False) -> bytes:
    """A small real JPEG whose frame header declares ``width`` x ``height``, with ``fill`` 0xFF fill bytes
    before the SOF marker (legal JPEG; they fooled the old parser into skipping the frame header),
    optionally of another SOF kind and with standalone (parameterless RST) markers before it."""
    data = small_jpeg()
    at = data.index(b"\xff\xc0")
    head = data[:at] + (b"\xff\xd3\xff\xd0" if standalone else b"") + b"\xff" * fill
    frame = bytes([0xFF, sof]) + data[at + 2:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]
    return head + frame


def fill_byte_bomb() -> bytes:
    """The issue's ~690-byte JPEG declaring 20000x20000 (2.4 GB decoded) behind fill bytes."""
    return jpeg_declaring(20000, 20000)


def real_jpeg(width: int, height: int) -> bytes:
    """A genuine JPEG of that size (grayscale zeros: cheap to encode, ~1 MB at 9000x9000)."""
    ok, buf = cv2.imencode(".jpg", np.zeros((height, width), np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    assert ok
    return buf.tobytes()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int = 8000, height: int = 8000) -> bytes:
    """A valid 1-bit grayscale PNG of zeros: a few KB that decode to width x height x 3 bytes (192 MB)."""
    row = b"\x00" * (1 + (width + 7) // 8)
    raw = zlib.compress(row * height, 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", raw) + _chunk(b"IEND", b"")


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def yaml_alias_bomb(levels: int = 9) -> str:
    """The billion-laughs order book (~400 bytes): each alias level multiplies the document by ten."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"orders: [{{id: BOMB, customer_ref: *a{levels - 1}, product: p, profile: x}}]")
    return "\n".join(lines) + "\n"


def deep_yaml(depth: int = 5000) -> str:
    """A document nested ``depth`` levels deep (RecursionError in a naive loader)."""
    return "orders: " + "[" * depth + "]" * depth + "\n"


ATTACKER_SCRIPT = """
import json, os, sys, time, httpx
url, stop, pause = sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
body = b"[" + b"1," * (9 * 1024 * 1024 - 1) + b"1]"  # 18 MiB of JSON, no key
seen = []
with httpx.Client(timeout=60) as client:
    while not os.path.exists(stop):
        try:
            seen.append(client.post(url, content=body, headers={"Content-Type": "application/json"}).status_code)
        except httpx.TransportError:
            seen.append(-1)  # the server closed the connection on the unread body: a refusal too
        if len(seen) == 1:
            open(f"{stop}.ready.{os.getpid()}", "w").close()  # started (imports, body built): measure now
        time.sleep(pause)
print(json.dumps(seen))
"""
"""``python -c ATTACKER_SCRIPT URL STOPFILE [PAUSE_S]``: posts 18 MiB JSON bodies without a key (PAUSE_S apart)
until STOPFILE exists, then prints the statuses it got; ``STOPFILE.ready.PID`` says it has started. A process of
its own, so it competes with the camera for CPU, not for a GIL."""


def wait_for_attackers(stop: Path, count: int, timeout_s: float = 120) -> None:
    """Until ``count`` attacker processes have had their first answer (their start-up is not the attack)."""
    import time

    deadline = time.monotonic() + timeout_s
    while len(list(stop.parent.glob(stop.name + ".ready.*"))) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"attackers did not start within {timeout_s} s")
        time.sleep(0.1)
