"""Decoding of encoded images, bounded whatever the bytes claim.

A frame is an attacker's input as much as a camera's: a 690-byte JPEG can declare 20000x20000 pixels and
an 8 KB PNG can inflate to 8000x8000. So nothing reaches OpenCV's decoder before its header is read and
checked, and the header is read by Pillow's format plugins (the maintained parsers that handle JPEG fill
bytes, every SOF kind, standalone markers, PNG's IHDR, BMP, TIFF and WebP) without decoding a pixel:

1. **Header first**: the format must be one we decode (JPEG, PNG, BMP, TIFF, WebP) and its declared size
   is checked against ``max_pixels`` (refused with ``InvalidFrameError``, which the service answers 422
   and the inspector records as a per-frame error).
2. **Compression ratio**: a large lossless frame that would inflate more than ``MAX_INFLATION`` times
   its encoded size is a decompression bomb, not a camera frame (a real scene does not compress 1000:1).
3. **Reduced decoding**: a frame much larger than the model needs (``long_side``) is decoded at 1/2, 1/4
   or 1/8 scale (``cv2.IMREAD_REDUCED_COLOR_*``; for JPEG libjpeg scales in the DCT, so the full-size
   image is never allocated). The caller learns the factor to map boxes back to original pixels.
4. **A budget of decodes in flight**: at most ``max_concurrent`` decodes and ``budget_pixels`` decoded
   pixels at once per process; a decode that cannot start within ``wait_s`` is refused with
   ``DecoderBusyError`` (HTTP 503, retry) instead of piling up memory.
5. **The result is checked** against the header (a decoder must never hand back more than was declared).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt
from PIL import BmpImagePlugin, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from inspection.errors import InvalidFrameError, QCError

MAX_PIXELS = 40_000_000
"""Default cap on a frame's declared pixels (40 MP: above every line camera we know, below a bomb)."""

MAX_INFLATION = 1000
"""A lossless frame over ``INFLATION_CHECK_PIXELS`` that decodes to more than this many times its size is
refused as a decompression bomb."""

INFLATION_CHECK_PIXELS = 4_000_000

DEFAULT_LONG_SIDE = 1280
"""Frames are decoded reduced while their long side stays at least this (2x a 640 model input)."""

_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))

_PLUGINS: tuple[tuple[bytes, str, type[ImageFile.ImageFile]], ...] = (
    (b"\xff\xd8", "JPEG", JpegImagePlugin.JpegImageFile),
    (b"\x89PNG\r\n\x1a\n", "PNG", PngImagePlugin.PngImageFile),
    (b"BM", "BMP", BmpImagePlugin.BmpImageFile),
    (b"II*\x00", "TIFF", TiffImagePlugin.TiffImageFile),
    (b"MM\x00*", "TIFF", TiffImagePlugin.TiffImageFile),
    (b"RIFF", "WEBP", WebPImagePlugin.WebPImageFile),
)


class DecoderBusyError(QCError):
    """Too many frames are being decoded at once: retry shortly (HTTP 503)."""


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def read_header(data: bytes) -> ImageHeader:
    """Format and declared size from the header alone (no pixel is decoded), or ``InvalidFrameError``.

    The plugin class is instantiated directly: that parses the header only, with none of ``Image.open``'s
    process-wide state (its global bomb limit and warnings)."""
    if not data:
        raise InvalidFrameError("image is empty (0 bytes)")
    found = next(((name, plugin) for magic, name, plugin in _PLUGINS if data.startswith(magic)), None)
    if found is None:
        raise InvalidFrameError("image cannot be decoded: not a JPEG, PNG, BMP, TIFF or WebP file (unknown header)")
    name, plugin = found
    try:
        with plugin(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as exc:  # Pillow raises SyntaxError, OSError, struct.error, ValueError ... on bad headers
        raise InvalidFrameError(f"image cannot be decoded: its {name} header cannot be read ({exc})") from exc
    if width <= 0 or height <= 0:
        raise InvalidFrameError(f"{name} header declares an empty image ({width}x{height})")
    return ImageHeader(name, width, height)


class DecodeBudget:
    """At most ``max_concurrent`` decodes and ``budget_pixels`` decoded pixels in flight (one oversized
    decode may run alone, so nothing the pixel cap admits can starve)."""

    def __init__(self, *, max_concurrent: int = 4, budget_pixels: int = 64_000_000, wait_s: float = 10.0) -> None:
        if max_concurrent < 1 or budget_pixels < 1:
            raise ValueError("a decode budget needs max_concurrent >= 1 and budget_pixels >= 1")
        self.max_concurrent = max_concurrent
        self.budget_pixels = budget_pixels
        self.wait_s = wait_s
        self._active = 0
        self._pixels = 0
        self._cond = threading.Condition()

    @property
    def active(self) -> int:
        with self._cond:
            return self._active

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        def free() -> bool:
            return self._active < self.max_concurrent and (
                self._active == 0 or self._pixels + pixels <= self.budget_pixels)

        with self._cond:
            if not self._cond.wait_for(free, timeout=self.wait_s):
                raise DecoderBusyError(f"{self._active} frames are being decoded already: retry shortly")
            self._active += 1
            self._pixels += pixels
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._pixels -= pixels
                self._cond.notify_all()


DEFAULT_BUDGET = DecodeBudget()
"""The process's decode budget (every decoder in a process shares the memory it protects)."""


def reduction_for(header: ImageHeader, long_side: int | None) -> int:
    """The largest factor (8, 4, 2) that keeps the long side at least ``long_side``; 1 for no reduction."""
    if not long_side:
        return 1
    longest = max(header.width, header.height)
    for factor, _flag in _REDUCED:
        if longest // factor >= long_side and min(header.width, header.height) // factor >= 8:
            return factor
    return 1


@dataclass(frozen=True)
class DecodedImage:
    image: npt.NDArray[np.uint8]
    scale: int
    """The image is 1/``scale`` of the encoded image's size: multiply its pixel coordinates by it."""
    header: ImageHeader


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS, long_side: int | None = DEFAULT_LONG_SIDE,
           budget: DecodeBudget | None = None) -> DecodedImage:
    """Decode bytes to an HxWx3 BGR array within the limits above, or raise ``InvalidFrameError`` saying why
    (``DecoderBusyError`` when the budget stays full)."""
    if data.startswith(b"\xff\xd8") and b"\xff\xd9" not in data[-64:]:
        raise InvalidFrameError("JPEG is truncated (no end-of-image marker)")
    header = read_header(data)
    if header.pixels > max_pixels:
        raise InvalidFrameError(f"image declares {header.width}x{header.height} pixels, over the limit of "
                                f"{max_pixels} pixels")
    if header.format != "JPEG" and header.pixels > INFLATION_CHECK_PIXELS \
            and header.pixels * 3 > MAX_INFLATION * len(data):
        raise InvalidFrameError(f"{header.format} of {len(data)} bytes declares {header.width}x{header.height} "
                                f"pixels: over {MAX_INFLATION}x inflation, a decompression bomb")
    scale = reduction_for(header, long_side)
    flag = dict(_REDUCED).get(scale, cv2.IMREAD_COLOR)
    with (budget or DEFAULT_BUDGET).reserve(header.pixels // (scale * scale)):
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        except cv2.error as exc:
            raise InvalidFrameError(f"image cannot be decoded: {exc}") from exc
    if image is None or image.size == 0:
        raise InvalidFrameError(f"image cannot be decoded (a corrupt {header.format} file)")
    height, width = image.shape[:2]
    if width * scale > header.width + scale or height * scale > header.height + scale:
        raise InvalidFrameError(f"decoded {width}x{height} pixels, more than the header declared")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidFrameError(f"image decodes to shape {image.shape}, not a colour image")
    return DecodedImage(cast(npt.NDArray[np.uint8], image), scale, header)


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS, budget: DecodeBudget | None = None,
                 ) -> npt.NDArray[np.uint8]:
    """Decode at full size (no reduction) within the limits: for callers that need every pixel."""
    return decode(data, max_pixels=max_pixels, long_side=None, budget=budget).image


__all__ = ["DEFAULT_BUDGET", "MAX_PIXELS", "DecodeBudget", "DecodedImage", "DecoderBusyError", "ImageHeader",
           "decode", "decode_image", "read_header", "reduction_for"]
