"""Bounded decoding: headers read right (fill bytes, every SOF kind, PNG IHDR), bombs refused before a pixel is
decoded, large frames decoded reduced, decodes in flight capped."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.errors import InvalidFrameError
from inspection.imageio import DecodeBudget, DecoderBusyError, decode, decode_image, read_header
from tests import hostile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("sof", hostile.SOF_MARKERS, ids=[hex(m) for m in hostile.SOF_MARKERS])
@pytest.mark.parametrize("fill", [0, 1, 60])
def test_every_frame_header_kind_is_read_behind_fill_bytes(sof: int, fill: int) -> None:
    data = hostile.jpeg_declaring(20000, 20000, fill=fill, sof=sof, standalone=True)
    header = read_header(data)
    assert (header.format, header.width, header.height) == ("JPEG", 20000, 20000)
    with pytest.raises(InvalidFrameError, match="20000x20000"):
        decode(data)


def test_the_fill_byte_bomb_of_the_report_is_refused_before_decoding() -> None:
    data = hostile.fill_byte_bomb()
    assert len(data) < 700
    started = time.perf_counter()
    with pytest.raises(InvalidFrameError, match="declares 20000x20000 pixels, over the limit"):
        decode_image(data)
    assert time.perf_counter() - started < 5  # loose: refused from the header, not after a 9 s decode


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"GIF89a" + b"\x00" * 64, "not a JPEG, PNG"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64, "not a JPEG, PNG"),  # JPEG 2000: cv2 would try it
    (b"#?RADIANCE\n" + b"\x00" * 64, "not a JPEG, PNG"),
    (hostile.small_jpeg()[:40] + b"\xff\xd9", "header cannot be read"),
    (hostile.small_jpeg()[:-2], "truncated"),
    (hostile.jpeg_declaring(0, 16), "header"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 30, "header cannot be read"),
    (hostile.png_bomb(), "8000x8000 pixels, over the limit"),
    (hostile.png_bomb(3000, 3000), "decompression bomb"),
], ids=["empty", "gif", "jpeg2000", "hdr", "cut-header", "no-eoi", "zero-height", "bad-ihdr", "png-bomb",
        "png-bomb-under-cap"])
def test_bad_or_hostile_images_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidFrameError, match=message):
        decode(data)


def test_tem_marker_before_the_frame_header_is_refused_not_guessed() -> None:
    data = hostile.small_jpeg()
    at = data.index(b"\xff\xc0")
    with pytest.raises(InvalidFrameError):  # Pillow's parser does not take TEM there: fail closed
        decode(data[:at] + b"\xff\x01" + data[at:])


def test_a_real_9000_square_jpeg_is_refused_and_the_cap_is_a_parameter() -> None:
    data = hostile.real_jpeg(9000, 9000)
    with pytest.raises(InvalidFrameError, match="9000x9000"):
        decode(data)
    decoded = decode(data, max_pixels=90_000_000)  # allowed: decoded reduced, never at full size
    assert decoded.scale == 4 and decoded.image.shape == (2250, 2250, 3)


@pytest.mark.parametrize(("width", "height", "long_side", "scale"), [
    (640, 480, 1280, 1), (2560, 1920, 1280, 2), (4000, 3000, 1280, 2), (5200, 3000, 1280, 4),
    (10240, 200, 1280, 8), (4000, 3000, None, 1), (100, 8000, 1000, 8), (32, 8000, 1000, 4),
])
def test_large_frames_decode_reduced_to_what_the_model_needs(width: int, height: int, long_side: int | None,
                                                            scale: int) -> None:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), 77, np.uint8))
    assert ok
    decoded = decode(buf.tobytes(), long_side=long_side)
    assert decoded.scale == scale
    assert decoded.image.shape[:2] == (-(-height // scale), -(-width // scale))
    assert (decoded.header.width, decoded.header.height) == (width, height)


def test_png_under_the_limits_decodes_in_full() -> None:
    ok, buf = cv2.imencode(".png", np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8))
    assert ok
    decoded = decode(buf.tobytes())
    assert decoded.image.shape == (300, 400, 3) and decoded.scale == 1


def test_decodes_in_flight_are_capped_and_a_full_budget_refuses_with_busy() -> None:
    budget = DecodeBudget(max_concurrent=2, budget_pixels=10_000, wait_s=0.2)
    peak = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal peak
        with budget.reserve(100):
            with lock:
                peak = max(peak, budget.active)
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2
    with budget.reserve(9_000), pytest.raises(DecoderBusyError), budget.reserve(2_000):  # pixels are capped too
        pass
    with budget.reserve(50_000):  # one oversized decode may run alone
        assert budget.active == 1


def test_fuzzed_headers_never_escape_the_limits() -> None:
    """Derandomized mutations of a valid JPEG and PNG: every outcome is an image within the declared size or an
    ``InvalidFrameError`` (never another exception, never a large allocation)."""
    rng = random.Random(11)
    seeds = [hostile.small_jpeg(32), hostile.jpeg_declaring(64, 48, fill=3),
             cv2.imencode(".png", np.full((24, 40, 3), 9, np.uint8))[1].tobytes()]
    for _ in range(600):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            action = rng.random()
            if action < 0.5:
                data[at] = rng.randrange(256)
            elif action < 0.75:
                data[at:at] = bytes([0xFF] * rng.randint(1, 4))
            else:
                del data[at:at + rng.randint(1, 8)]
        try:
            decoded = decode(bytes(data), max_pixels=1_000_000)
        except InvalidFrameError:
            continue
        assert decoded.image.size <= 1_000_000 * 3


PROBE = """
import json, resource, sys, time
from inspection.errors import InvalidFrameError
from inspection.imageio import decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
refused, started = [], time.perf_counter()
for path in sys.argv[1:]:
    try:
        decode(open(path, "rb").read())
    except InvalidFrameError as exc:
        refused.append(str(exc))
print(json.dumps({"grown_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "refused": refused, "seconds": time.perf_counter() - started}))
"""


def test_bombs_are_refused_with_memory_staying_small(tmp_path: Path) -> None:
    """In a fresh process (its peak RSS is this decode's alone): the three bombs of the report cost < 100 MB."""
    files = [hostile.write(tmp_path / "fill.jpg", hostile.fill_byte_bomb()),
             hostile.write(tmp_path / "big.jpg", hostile.real_jpeg(9000, 9000)),
             hostile.write(tmp_path / "bomb.png", hostile.png_bomb()),
             hostile.write(tmp_path / "bomb-small.png", hostile.png_bomb(3000, 3000))]
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, files)], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert len(result["refused"]) == 4, result
    assert result["grown_mb"] < 100, result
