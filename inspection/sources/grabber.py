"""The read loop every live camera shares: open, read until the stream fails, reopen with back-off.

``LiveCaptureSource`` (one stream, latest frame, for ``qcline inspect --source``) and the line station's
cameras (``inspection/line/cameras.py``: many streams held open, a ring of recent frames each) both run
a ``StreamGrabber`` on their own thread and differ only in what they do with each frame (``on_frame``).
Keeping the reconnect policy in one place means a camera that reboots mid-shift behaves the same
whichever front door reads it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Protocol

import cv2

from inspection.sources.base import utc_now

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class CaptureLike(Protocol):
    """The part of ``cv2.VideoCapture`` the sources use; a fake only needs these three methods."""

    def isOpened(self) -> bool: ...  # noqa: N802 - OpenCV's name

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[], CaptureLike]
FrameCallback = Callable[[Any, datetime, int, CaptureLike], None]
"""``on_frame(image, grabbed_at, seq, capture)``: called on the grabber thread for every frame read."""


def is_stream_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def release_capture(cap: CaptureLike, label: str) -> None:
    try:
        cap.release()
    except Exception:  # a driver failing on release must not take the line down with it
        log.exception("releasing capture %s failed", label)


def open_cv_capture(target: str | int, *, open_timeout: float = 10.0, read_timeout: float = 5.0,
                    rtsp_transport: Literal["tcp", "udp"] | None = "tcp") -> CaptureLike:
    """``cv2.VideoCapture`` of a USB index, a stream URL or a video file.

    RTSP is read over TCP by default: over UDP a lost packet smears macroblocks into the image, which a
    defect detector may well call a defect. OpenCV only takes this through the process-wide
    ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, which is set only when nobody has set it already."""
    if isinstance(target, int):
        return cv2.VideoCapture(target)
    if target.lower().startswith(("rtsp://", "rtsps://")) and rtsp_transport:
        os.environ.setdefault(_FFMPEG_OPTIONS_ENV, f"rtsp_transport;{rtsp_transport}")
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout * 1000)]
    api = cv2.CAP_FFMPEG if is_stream_url(target) else cv2.CAP_ANY
    return cv2.VideoCapture(target, api, params)


class StreamGrabber:
    """Open ``factory()``, hand every frame read to ``on_frame``, and on a failed open or read release the
    capture and reopen after ``reconnect_delay`` s, doubling up to ``max_reconnect_delay``.

    ``max_reconnects`` bounds *consecutive* reopen attempts without a frame in between (``None``: forever,
    what a station wants); ``give_up_s`` ends the loop when no frame came for that long. ``on_error`` hears
    every failure (the caller keeps ``last_error``), ``on_reconnect`` every reopen attempt, ``on_give_up``
    the final message. ``pace_fps`` > 0 reads no faster than that (a video file replayed in real time).
    ``run`` returns when ``stopped`` is set, the attempts run out, or the give-up time passed.
    """

    def __init__(self, factory: CaptureFactory, label: str, *, on_frame: FrameCallback,
                 on_error: Callable[[str], None], stopped: threading.Event,
                 on_reconnect: Callable[[int], None] | None = None, on_give_up: Callable[[str], None] | None = None,
                 on_open: Callable[[CaptureLike], None] | None = None,
                 reconnect_delay: float = 1.0, max_reconnect_delay: float = 30.0,
                 max_reconnects: int | None = None, give_up_s: float | None = None, pace_fps: float = 0.0) -> None:
        self._factory = factory
        self.label = label
        self._on_frame = on_frame
        self._on_error = on_error
        self._on_reconnect = on_reconnect
        self._on_give_up = on_give_up
        self._on_open = on_open
        self._stopped = stopped
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max(max_reconnect_delay, reconnect_delay)
        self.max_reconnects = max_reconnects
        self.give_up_s = give_up_s
        self.pace_fps = pace_fps
        self.last_error = ""

    def _fail(self, message: str) -> None:
        log.warning("%s", message)
        self.last_error = message
        self._on_error(message)

    def _open(self) -> CaptureLike | None:
        try:
            cap = self._factory()
        except Exception as exc:  # any driver/backend error is one more failed attempt, not a crash
            self._fail(f"cannot open {self.label}: {exc}")
            return None
        if not cap.isOpened():
            release_capture(cap, self.label)
            self._fail(f"cannot open {self.label} (unreachable, refused, or no such device)")
            return None
        log.info("opened %s", self.label)
        if self._on_open is not None:
            self._on_open(cap)
        return cap

    def _pump(self, cap: CaptureLike, seq: int) -> tuple[int, bool]:
        """Read until failure or stop; returns the last grab number and whether any frame came."""
        got = False
        period = 1.0 / self.pace_fps if self.pace_fps > 0 else 0.0
        next_at = time.monotonic()
        try:
            while not self._stopped.is_set():
                why = "stream ended, timed out or camera disconnected"
                try:
                    ok, image = cap.read()
                except Exception as exc:  # a backend raising is a lost stream like any other
                    ok, image, why = False, None, f"read raised {type(exc).__name__}: {exc}"
                if self._stopped.is_set():
                    break
                if not ok or image is None:
                    self._fail(f"read from {self.label} failed ({why})")
                    break
                got = True
                seq += 1
                self._on_frame(image, utc_now(), seq, cap)
                if period:
                    next_at += period
                    if self._stopped.wait(max(0.0, next_at - time.monotonic())):
                        break
        finally:
            release_capture(cap, self.label)
        return seq, got

    def run(self) -> None:
        seq = -1
        failed_in_a_row = 0
        delay = self.reconnect_delay
        first = True
        last_frame_at = time.monotonic()
        while not self._stopped.is_set():
            if not first:
                silent = time.monotonic() - last_frame_at
                if self.give_up_s is not None and silent + delay > self.give_up_s:
                    self._give_up(f"gave up on {self.label}: no frame for {silent:.0f} s (give-up time "
                                  f"{self.give_up_s:g} s); last error: {self.last_error}")
                    return
                if self.max_reconnects is not None and failed_in_a_row >= self.max_reconnects:
                    self._give_up(f"gave up on {self.label} after {failed_in_a_row} reconnect attempts; last "
                                  f"error: {self.last_error}")
                    return
                if self._stopped.wait(delay):
                    return
                # doubling from at least 50 ms: a zero delay must not become a busy loop of failed opens
                delay = min(max(delay * 2, 0.05), self.max_reconnect_delay)
                failed_in_a_row += 1
                if self._on_reconnect is not None:
                    self._on_reconnect(failed_in_a_row)
                log.info("reconnecting to %s (attempt %d)", self.label, failed_in_a_row)
            first = False
            cap = self._open()
            if cap is None:
                continue
            seq, got = self._pump(cap, seq)
            if got:
                last_frame_at = time.monotonic()
                failed_in_a_row = 0
                delay = self.reconnect_delay

    def _give_up(self, message: str) -> None:
        self.last_error = message
        log.error("%s", message)
        if self._on_give_up is not None:
            self._on_give_up(message)
