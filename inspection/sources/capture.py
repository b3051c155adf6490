"""Video files and live cameras through ``cv2.VideoCapture``.

Two policies, on purpose. A video file is evidence being replayed: every frame, in order, none
dropped. A live camera is a line running in real time: the station must judge what is in front of the
camera *now*, so a grabber thread drains the stream continuously and the consumer always gets the
newest frame; frames it overwrites are counted in ``frames_dropped`` so an overloaded station shows up
in its stats rather than as silently growing latency. Lost connections are reopened with exponential
backoff, because cameras reboot and switches flap during a shift.

``capture_factory`` lets tests (and unusual devices) supply any object with ``read/isOpened/release``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from inspection.errors import InvalidFrameError, SourceError
from inspection.sources.base import FrameOrigin, SourceBase, as_utc, utc_now
from inspection.sources.grabber import (
    CaptureFactory,
    CaptureLike,
    StreamGrabber,
    is_stream_url,
    open_cv_capture,
    release_capture,
)
from inspection.types import Frame, FrameFailure, SourceItem

__all__ = ["CaptureFactory", "CaptureLike", "LiveCaptureSource", "VideoFileSource", "frame_item", "is_stream_url",
           "redact_url"]

log = logging.getLogger(__name__)

def redact_url(url: str) -> str:
    """Hide ``user:password@`` in a camera URL: it goes into logs, frame sources and stored records."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@", r"\1***@", url)


def _as_bgr(image: Any) -> npt.NDArray[np.uint8]:
    """OpenCV usually hands out HxWx3 BGR; grey or BGRA streams are converted, anything else refused."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise InvalidFrameError("capture returned no image data")
    if image.dtype != np.uint8:
        raise InvalidFrameError(f"capture returned {image.dtype} pixels, expected uint8")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # type: ignore[return-value]
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)  # type: ignore[return-value]
    return image


def frame_item(image: Any, origin: FrameOrigin, captured_at: datetime, source: str, seq: int) -> SourceItem:
    """A decoded capture image as a ``Frame``, or a ``FrameFailure`` saying why it is not usable."""
    try:
        return Frame(image=_as_bgr(image), camera_id=origin.camera_id, unit_id=origin.unit_id,
                     order_id=origin.order_id, captured_at=captured_at, source=source, source_seq=seq)
    except InvalidFrameError as exc:
        log.warning("frame %s failed: %s", source, exc)
        return FrameFailure(camera_id=origin.camera_id, unit_id=origin.unit_id, order_id=origin.order_id,
                            captured_at=captured_at, source=source, error=str(exc), source_seq=seq)


_release = release_capture


class VideoFileSource(SourceBase):
    """Every frame of a video file, in order, as ``Frame(source=f"{path}#{index}")``.

    With ``captured_at`` the frames are stamped ``captured_at + index / fps`` (replaying a recording
    keeps its timeline); without it, with the UTC time each frame is read.
    """

    def __init__(self, path: Path | str, *, unit_id: str, order_id: str, camera_id: str,
                 captured_at: datetime | None = None, max_frames: int | None = None,
                 capture_factory: CaptureFactory | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.origin = FrameOrigin(unit_id=unit_id, order_id=order_id, camera_id=camera_id)
        if max_frames is not None and max_frames < 0:
            raise SourceError(f"max_frames must be >= 0, got {max_frames}")
        self.max_frames = max_frames
        self._captured_at = as_utc(captured_at) if captured_at is not None else None
        if capture_factory is None:
            if not self.path.is_file():
                raise SourceError(f"video file does not exist: {self.path}")
            capture_factory = self._open_file
        self._cap_lock = threading.Lock()
        try:
            cap = capture_factory()
        except cv2.error as exc:
            raise SourceError(f"cannot open video file {self.path}: {exc}") from exc
        if not cap.isOpened():
            _release(cap, str(self.path))
            raise SourceError(f"cannot open video file {self.path} "
                              "(not a video, or its codec is unsupported)")
        self._cap: CaptureLike | None = cap
        get = getattr(cap, "get", None)
        self.fps = float(get(cv2.CAP_PROP_FPS)) if get is not None else 0.0
        self.frame_count = int(get(cv2.CAP_PROP_FRAME_COUNT)) if get is not None else 0

    def _open_file(self) -> CaptureLike:
        return cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)

    def _note_problem(self, message: str) -> None:
        """Not a FrameFailure (which frame is unknown) but never silent: logged and kept in stats."""
        log.warning("%s", message)
        self._record_error(message)

    def _timestamp(self, index: int) -> datetime:
        if self._captured_at is None:
            return utc_now()
        if self.fps > 0:
            return self._captured_at + timedelta(seconds=index / self.fps)
        return self._captured_at

    def _items(self) -> Iterator[SourceItem]:
        index = 0
        try:
            while not self.closed and (self.max_frames is None or index < self.max_frames):
                with self._cap_lock:
                    if self._cap is None:
                        return
                    try:
                        ok, image = self._cap.read()
                    except cv2.error as exc:
                        ok, image = False, None
                        self._record_error(f"{self.path}: reading frame {index} failed: {exc}")
                if not ok:
                    if index == 0 and not self.closed:
                        self._note_problem(f"{self.path}: no frame could be read from the video")
                    elif index < self.frame_count - 1:
                        self._note_problem(
                            f"{self.path}: video ended after {index} of {self.frame_count} frames")
                    return
                yield frame_item(image, self.origin, self._timestamp(index), f"{self.path}#{index}", index)
                index += 1
        finally:
            self.close()

    def close(self) -> None:
        super().close()
        with self._cap_lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            _release(cap, str(self.path))


class LiveCaptureSource(SourceBase):
    """A USB camera (int index) or network stream (RTSP/HTTP URL) read by a background grabber thread.

    Latest-frame policy: the grabber keeps only the newest frame; each frame overwritten before the
    consumer took it adds one to ``frames_dropped`` (``source_seq`` is the grab number, so gaps show
    where). On a failed open or read the capture is released and reopened after ``reconnect_delay``
    seconds, doubling up to ``max_reconnect_delay``; each reopen adds one to ``reconnects``.
    ``max_reconnects`` bounds *consecutive* reopen attempts without a frame in between (``None``: try
    forever, what a station wants); when they run out iteration ends and ``last_error`` says why.
    ``max_frames`` ends iteration after that many items (tests, CLI snapshots). ``give_up_s`` ends it when
    no frame has come for that long (counted from the start or the last frame): an operator at a CLI wants
    "camera 0 is not there" within seconds, not a station silently retrying forever.

    RTSP is read over TCP by default (``rtsp_transport``): over UDP a lost packet smears macroblocks
    into the image, which a defect detector may well call a defect. OpenCV only takes this through the
    process-wide ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, which is set only when nobody has set it already.
    """

    def __init__(self, url_or_index: str | int, *, unit_id: str, order_id: str, camera_id: str,
                 reconnect_delay: float = 1.0, max_reconnect_delay: float = 30.0,
                 max_reconnects: int | None = None, open_timeout: float = 10.0, read_timeout: float = 5.0,
                 max_frames: int | None = None, rtsp_transport: Literal["tcp", "udp"] | None = "tcp",
                 capture_factory: CaptureFactory | None = None, give_up_s: float | None = None) -> None:
        super().__init__()
        if give_up_s is not None and give_up_s < 0:
            raise SourceError(f"give_up_s must be >= 0 or None, got {give_up_s}")
        self.give_up_s = give_up_s
        if isinstance(url_or_index, str) and url_or_index.strip().isdigit():
            url_or_index = int(url_or_index)
        if isinstance(url_or_index, int):
            if url_or_index < 0:
                raise SourceError(f"camera index must be >= 0, got {url_or_index}")
            self.label = f"usb:{url_or_index}"
        elif not url_or_index.strip():
            raise SourceError("camera URL is empty")
        else:
            self.label = redact_url(url_or_index)
        for name, value in (("reconnect_delay", reconnect_delay), ("open_timeout", open_timeout),
                            ("read_timeout", read_timeout)):
            if value < 0:
                raise SourceError(f"{name} must be >= 0, got {value}")
        if max_reconnects is not None and max_reconnects < 0:
            raise SourceError(f"max_reconnects must be >= 0 or None, got {max_reconnects}")
        if max_frames is not None and max_frames < 0:
            raise SourceError(f"max_frames must be >= 0, got {max_frames}")
        self.target = url_or_index
        self.origin = FrameOrigin(unit_id=unit_id, order_id=order_id, camera_id=camera_id)
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max(max_reconnect_delay, reconnect_delay)
        self.max_reconnects = max_reconnects
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.max_frames = max_frames
        self.rtsp_transport = rtsp_transport
        self._factory = capture_factory or self._open_cv
        self._cond = threading.Condition()
        self._latest: tuple[Any, datetime, int] | None = None
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    # -- grabber side (the shared read loop: inspection/sources/grabber.py) -------------------------------

    def _open_cv(self) -> CaptureLike:
        return open_cv_capture(self.target, open_timeout=self.open_timeout, read_timeout=self.read_timeout,
                               rtsp_transport=self.rtsp_transport)

    def _on_frame(self, image: Any, grabbed_at: datetime, seq: int, _cap: CaptureLike) -> None:
        with self._cond:
            if self._latest is not None:
                with self._lock:
                    self._frames_dropped += 1
            self._latest = (image, grabbed_at, seq)
            self._cond.notify_all()

    def _on_reconnect(self, _attempt: int) -> None:
        with self._lock:
            self._reconnects += 1

    def _run(self) -> None:
        grabber = StreamGrabber(self._factory, self.label, on_frame=self._on_frame, on_error=self._record_error,
                                on_reconnect=self._on_reconnect, on_give_up=self._record_error,
                                stopped=self._closed, reconnect_delay=self.reconnect_delay,
                                max_reconnect_delay=self.max_reconnect_delay, max_reconnects=self.max_reconnects,
                                give_up_s=self.give_up_s)
        try:
            grabber.run()
        except Exception as exc:  # never let the grabber die silently: the consumer would wait forever
            log.exception("grabber for %s crashed", self.label)
            self._record_error(f"grabber for {self.label} crashed: {exc}")
        finally:
            self._ended.set()
            with self._cond:
                self._cond.notify_all()

    def start(self) -> None:
        """Start grabbing now (iteration starts it anyway); lets a camera warm up before the line does."""
        with self._cond:
            if self._thread is None and not self.closed:
                self._thread = threading.Thread(target=self._run, name=f"grabber-{self.label}", daemon=True)
                self._thread.start()

    # -- consumer side --------------------------------------------------------------------------------

    def _items(self) -> Iterator[SourceItem]:
        self.start()
        delivered = 0
        try:
            while self.max_frames is None or delivered < self.max_frames:
                with self._cond:
                    self._cond.wait_for(self._ready)
                    if self.closed or self._latest is None:
                        return
                    image, captured_at, seq = self._latest
                    self._latest = None
                yield frame_item(image, self.origin, captured_at, self.label, seq)
                delivered += 1
        finally:
            self.close()

    def _ready(self) -> bool:
        return self._latest is not None or self._ended.is_set() or self.closed

    def close(self, timeout: float = 2.0) -> None:
        """Stop the grabber; the first call waits up to ``timeout`` s for it. A read blocked in the driver
        ends by itself within ``read_timeout``, and the daemon thread then releases the capture."""
        first_close = not self.closed
        super().close()
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if first_close and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("grabber for %s still blocked in the driver; it will exit after its read timeout",
                            self.label)

    @property
    def running(self) -> bool:
        """Whether the grabber thread is alive (False before start and after it stopped)."""
        return self._thread is not None and self._thread.is_alive()
