"""Decoding of encoded images with the checks a camera that sends garbage needs."""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from inspection.errors import InvalidFrameError

MAX_PIXELS = 64_000_000
"""Refuse anything larger before decoding it: a decompression bomb must not exhaust memory."""

_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header only (PNG IHDR, JPEG SOF), without decoding pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == _JPEG_SOI:
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            length = int.from_bytes(data[i + 2:i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(data[i + 5:i + 7], "big")
                width = int.from_bytes(data[i + 7:i + 9], "big")
                return width, height
            i += 2 + length
    return None


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """Decode JPEG / PNG / BMP bytes to an HxWx3 BGR array, or raise ``InvalidFrameError`` saying why."""
    if not data:
        raise InvalidFrameError("image is empty (0 bytes)")
    size = _declared_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise InvalidFrameError(f"image declares {size[0]}x{size[1]} pixels, over the limit of {max_pixels}")
    if data[:2] == _JPEG_SOI and _JPEG_EOI not in data[-64:]:
        raise InvalidFrameError("JPEG is truncated (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise InvalidFrameError(f"image cannot be decoded: {exc}") from exc
    if image is None or image.size == 0:
        raise InvalidFrameError("image cannot be decoded (not a JPEG/PNG/BMP image, or corrupt)")
    return cast(npt.NDArray[np.uint8], image)
