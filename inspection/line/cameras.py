"""The cameras a line station holds open, and the frames a trigger may take from them.

Each ``Camera`` runs the shared read loop (``inspection.sources.grabber.StreamGrabber``: open, read,
reopen with back-off) on its own thread and keeps a small bounded ring of its latest frames, each with a
sequence number and a capture time. A trigger asks for frames captured at or after its moment
(``Camera.take``); the frame handed out is *claimed* under the camera's lock, so no later trigger, and no
overlapping unit, is ever given it again. The ring is small on purpose: a line camera's frames are only worth
anything for the second after a trigger, and memory must stay bounded over a month of uptime.

Capture time: the grab time (when the decoder returned the frame), or with ``timestamps: stream`` the
stream's presentation times anchored to the grab clock; ``clock_tolerance_ms`` lets a frame stamped just
before a trigger count as after it, since a camera's clock and the PLC's are never the same clock.

``CameraHub`` is the set of cameras of one station: list, add and remove at run time (the API does it for
an engineer), the per-camera figures (frames in per second, age of the last frame, reconnects, drops, last
error) for ``/metrics``, ``qcline station status`` and the station page.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from inspection.errors import ConflictError, InvalidFrameError, NotFoundError
from inspection.line.config import MAX_CAMERAS, CameraSpec, CapturePolicy
from inspection.sources.base import utc_now
from inspection.sources.capture import _as_bgr, redact_url
from inspection.sources.grabber import CaptureFactory, CaptureLike, StreamGrabber, open_cv_capture

log = logging.getLogger(__name__)

FPS_WINDOW_S = 2.0


def sharpness(image: npt.NDArray[np.uint8]) -> float:
    """Variance of the Laplacian of the grey image: higher is sharper (motion blur and defocus lower it)."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass(frozen=True, eq=False)
class CapturedFrame:
    """One frame of one camera: its sequence number (per camera, rising; gaps are frames not kept), when it
    was captured and when it was read."""

    camera: str
    seq: int
    captured_at: datetime
    grabbed_at: datetime
    image: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        if self.captured_at.tzinfo is None or self.grabbed_at.tzinfo is None:
            raise ValueError("CapturedFrame times must be timezone-aware")

    @property
    def ref(self) -> dict[str, Any]:
        """What the trigger record keeps of it: enough to find the frame in the results (camera, time)."""
        return {"camera": self.camera, "seq": self.seq, "captured_at": self.captured_at.isoformat()}


@dataclass(frozen=True)
class CameraStats:
    name: str
    url: str
    connected: bool
    fps: float
    last_frame_age_s: float | None
    frames_in: int
    frames_claimed: int
    frames_dropped: int
    reconnects: int
    last_error: str
    ring: int

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "connected": self.connected, "fps": round(self.fps, 2),
                "last_frame_age_s": None if self.last_frame_age_s is None else round(self.last_frame_age_s, 3),
                "frames_in": self.frames_in, "frames_claimed": self.frames_claimed,
                "frames_dropped": self.frames_dropped, "reconnects": self.reconnects,
                "last_error": self.last_error, "ring": self.ring}


@dataclass
class _Slot:
    frame: CapturedFrame
    claimed: bool = False
    sharpness: float | None = None


@dataclass
class _Take:
    """One view's wait for frames after a trigger (candidates seen so far, by sequence)."""

    after: datetime
    policy: CapturePolicy
    before: datetime | None = None  # frames captured later belong to a later unit (the station fell behind)
    candidates: list[_Slot] = field(default_factory=list)
    last_seq: int = -1
    passed: bool = False  # a frame later than ``before`` came: no frame of this unit can come any more


class Camera:
    """One camera held open by its grabber thread; ``take`` hands out frames after a moment, each once."""

    def __init__(self, spec: CameraSpec, *, capture_factory: CaptureFactory | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.spec = spec
        self.name = spec.name
        self.label = redact_url(spec.url)
        self._factory = capture_factory or self._open_cv
        self._clock = clock
        self._cond = threading.Condition()
        self._ring: deque[_Slot] = deque(maxlen=spec.ring)
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._tolerance = timedelta(milliseconds=spec.clock_tolerance_ms)
        self._min_period = 1.0 / spec.max_fps if spec.max_fps else 0.0
        self._last_kept = -1e18
        self._arrivals: deque[float] = deque(maxlen=4096)
        self._anchor: datetime | None = None
        self._frames_in = 0
        self._claimed = 0
        self._dropped = 0
        self._reconnects = 0
        self._connected = False
        self._last_error = ""
        self._last_frame_mono: float | None = None
        self._grabber: StreamGrabber | None = None

    # -- grabber side --------------------------------------------------------------------------------------

    def _open_cv(self) -> CaptureLike:
        spec = self.spec
        return open_cv_capture(spec.target, open_timeout=spec.open_timeout_s, read_timeout=spec.read_timeout_s)

    def _opened(self, cap: CaptureLike) -> None:
        with self._cond:
            self._connected = True
            self._anchor = None  # stream times restart with a new connection
        get = getattr(cap, "get", None)
        if self.spec.read_mode == "replay" and get is not None:
            fps = float(get(cv2.CAP_PROP_FPS) or 0.0)
            if self._grabber is not None:
                self._grabber.pace_fps = min(fps, self.spec.max_fps or fps) if 0 < fps <= 240 else \
                    (self.spec.max_fps or 25.0)

    def _error(self, message: str) -> None:
        with self._cond:
            self._connected = False
            self._last_error = message

    def _reconnect(self, _attempt: int) -> None:
        with self._cond:
            self._reconnects += 1

    def _captured_at(self, grabbed_at: datetime, cap: CaptureLike) -> datetime:
        """With ``timestamps: stream``: the stream's presentation time on the grab clock. The offset between
        the two is the lowest latency seen so far (grab minus stream time), so a burst of buffered frames
        handed out at once keeps its real spacing and no frame is stamped after it was read; a stream time
        that falls far behind (the camera's clock or stream restarted) re-anchors on the current frame."""
        if self.spec.timestamps != "stream":
            return grabbed_at
        get = getattr(cap, "get", None)
        position = float(get(cv2.CAP_PROP_POS_MSEC)) if get is not None else -1.0
        if position < 0:
            return grabbed_at
        offset = grabbed_at - timedelta(milliseconds=position)
        if self._anchor is None or offset < self._anchor:
            self._anchor = offset
        stamped = self._anchor + timedelta(milliseconds=position)
        if grabbed_at - stamped > max(self._tolerance, timedelta(seconds=1)):
            self._anchor, stamped = offset, grabbed_at
        return stamped

    def _frame(self, image: Any, grabbed_at: datetime, seq: int, cap: CaptureLike) -> None:
        now = time.monotonic()
        with self._cond:
            self._frames_in += 1
            self._arrivals.append(now)
            self._last_frame_mono = now
            self._connected = True
            if self._min_period and now - self._last_kept < self._min_period:
                self._dropped += 1  # read (the stream is drained) but not kept: max_fps
                return
        try:
            bgr = _as_bgr(image)
        except InvalidFrameError as exc:
            with self._cond:
                self._dropped += 1
                self._last_error = f"camera {self.name}: unusable frame {seq}: {exc}"
            return
        frame = CapturedFrame(self.name, seq, self._captured_at(grabbed_at, cap), grabbed_at, bgr)
        with self._cond:
            self._last_kept = now
            self._ring.append(_Slot(frame))
            self._cond.notify_all()

    def _run(self) -> None:
        spec = self.spec
        grabber = StreamGrabber(self._factory, f"camera {self.name} ({self.label})", on_frame=self._frame,
                                on_error=self._error, on_reconnect=self._reconnect, on_open=self._opened,
                                stopped=self._stopped, reconnect_delay=spec.reconnect.min_s,
                                max_reconnect_delay=spec.reconnect.max_s)
        self._grabber = grabber
        if spec.read_mode == "replay":
            grabber.pace_fps = spec.max_fps or 25.0  # refined from the file's own rate when it opens
        try:
            grabber.run()
        except Exception as exc:  # never die silently: every trigger would wait its whole budget
            log.exception("camera %s: grabber crashed", self.name)
            self._error(f"camera {self.name}: grabber crashed: {exc}")
        finally:
            with self._cond:
                self._connected = False
                self._cond.notify_all()

    def start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 3.0) -> None:
        self._stopped.set()
        with self._cond:
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("camera %s: grabber still blocked in the driver; it ends after its read timeout",
                            self.name)

    # -- consumer side -------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        with self._cond:
            return self._connected

    @property
    def last_error(self) -> str:
        with self._cond:
            return self._last_error

    def stats(self) -> CameraStats:
        now = time.monotonic()
        with self._cond:
            recent = [t for t in self._arrivals if now - t <= FPS_WINDOW_S]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) >= 2 and recent[-1] > recent[0] else 0.0
            age = None if self._last_frame_mono is None else now - self._last_frame_mono
            return CameraStats(self.name, self.label, self._connected, fps, age, self._frames_in, self._claimed,
                               self._dropped, self._reconnects, self._last_error, len(self._ring))

    def _scan(self, want: _Take) -> None:
        """Add the ring's unclaimed frames captured at/after the moment (minus the tolerance), by sequence."""
        earliest = want.after - self._tolerance
        latest = want.before + self._tolerance if want.before is not None else None
        for slot in self._ring:
            if slot.frame.seq <= want.last_seq:
                continue
            if latest is not None and slot.frame.captured_at > latest:
                want.passed = True
                break
            if not slot.claimed and slot.frame.captured_at >= earliest:
                want.candidates.append(slot)
                want.last_seq = slot.frame.seq

    def _done(self, want: _Take, now_wall: datetime) -> bool:
        policy = want.policy
        fresh = [s for s in want.candidates if not s.claimed]
        if policy.policy == "first":
            return bool(fresh)
        if policy.policy == "burst":
            return len(fresh) >= policy.frames
        closes = want.after + timedelta(milliseconds=policy.window_ms)
        return bool(fresh) and (now_wall >= closes or fresh[-1].frame.captured_at >= closes)

    def has_frame_after(self, moment: datetime) -> bool:
        """Whether the ring holds a frame captured after ``moment`` (why a late trigger found none of its own)."""
        with self._cond:
            return bool(self._ring) and self._ring[-1].frame.captured_at > moment

    def latest(self) -> tuple[npt.NDArray[np.uint8], datetime] | None:
        """The newest frame and its capture time, without claiming it: what a part-label reader watches (the
        frame stays available to the trigger the label starts)."""
        with self._cond:
            if not self._ring:
                return None
            frame = self._ring[-1].frame
            return frame.image, frame.captured_at

    def take(self, after: datetime, policy: CapturePolicy, deadline: float,
             before: datetime | None = None) -> CapturedFrame | None:
        """The frame for a trigger at ``after``: the first unclaimed frame captured at/after it, or the sharpest
        of a burst / window, claimed so that no other trigger ever gets it. Waits until ``deadline``
        (``time.monotonic()``); at the deadline a burst or window keeps the best of what came, and ``None``
        means no frame at all. ``before``: frames captured after it are never this trigger's (a station that
        fell behind its triggers must not judge a later unit's frames as this one's)."""
        want = _Take(after, policy, before)
        with self._cond:
            while True:
                self._scan(want)
                if self._done(want, self._clock()) or self._stopped.is_set() or (want.passed and not want.candidates):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if policy.policy == "window":  # wake when the window closes even if no frame comes
                    closes = want.after + timedelta(milliseconds=policy.window_ms)
                    remaining = min(remaining, max(0.001, (closes - self._clock()).total_seconds()))
                self._cond.wait(remaining)
            fresh = [s for s in want.candidates if not s.claimed]
            if policy.policy == "window":
                closes = want.after + timedelta(milliseconds=policy.window_ms)
                inside = [s for s in fresh if s.frame.captured_at <= closes]
                fresh = inside or fresh[:1]  # no frame inside the window: the first one after it
            elif policy.policy == "burst":
                fresh = fresh[:policy.frames]
            if not fresh:
                return None
            fresh = fresh if policy.policy != "first" else fresh[:1]
        if len(fresh) > 1:  # sharpness outside the lock: the grabber keeps filling the ring meanwhile
            for slot in fresh:
                if slot.sharpness is None:
                    slot.sharpness = sharpness(slot.frame.image)
            fresh.sort(key=lambda s: (-(s.sharpness or 0.0), s.frame.seq))
        with self._cond:
            for slot in fresh:  # the sharpest still unclaimed (a concurrent take may have won one)
                if not slot.claimed:
                    slot.claimed = True
                    self._claimed += 1
                    return slot.frame
        return None


class CameraHub:
    """The cameras of one station, by view name; safe to use from the API's threads and the station's."""

    def __init__(self, *, max_cameras: int = MAX_CAMERAS,
                 factory: Callable[[CameraSpec], Camera] = Camera) -> None:
        self.max_cameras = max_cameras
        self._factory = factory
        self._cameras: dict[str, Camera] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, specs: Iterable[CameraSpec], *, factory: Callable[[CameraSpec], Camera] = Camera,
             max_cameras: int = MAX_CAMERAS) -> CameraHub:
        """A hub with ``specs`` added and their grabbers started (connecting in the background)."""
        hub = cls(max_cameras=max_cameras, factory=factory)
        try:
            for spec in specs:
                hub.add(spec)
        except BaseException:
            hub.close()
            raise
        return hub

    def add(self, spec: CameraSpec) -> Camera:
        with self._lock:
            if spec.name in self._cameras:
                raise ConflictError(f"camera {spec.name!r} is already held by this station: remove it first")
            if len(self._cameras) >= self.max_cameras:
                raise ConflictError(f"this station already holds {self.max_cameras} cameras (the most it may)")
            camera = self._factory(spec)
            self._cameras[spec.name] = camera
        camera.start()
        log.info("camera %s: %s added", spec.name, camera.label)
        return camera

    def remove(self, name: str) -> None:
        with self._lock:
            camera = self._cameras.pop(name, None)
        if camera is None:
            raise NotFoundError(f"no camera {name!r} at this station")
        camera.close()
        log.info("camera %s removed", name)

    def get(self, name: str) -> Camera | None:
        with self._lock:
            return self._cameras.get(name)

    def latest_frame_for(self, name: str) -> Callable[[], tuple[npt.NDArray[np.uint8], datetime] | None]:
        """A peek at camera ``name``'s newest frame, looked up at each call (the camera may be re-added)."""

        def latest() -> tuple[npt.NDArray[np.uint8], datetime] | None:
            camera = self.get(name)
            return camera.latest() if camera is not None else None

        return latest

    def names(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def stats(self) -> list[CameraStats]:
        with self._lock:
            cameras = list(self._cameras.values())
        return [c.stats() for c in cameras]

    def close(self) -> None:
        with self._lock:
            cameras, self._cameras = list(self._cameras.values()), {}
        for camera in cameras:
            try:
                camera.close()
            except Exception:
                log.exception("closing camera %s failed", camera.name)


__all__ = ["Camera", "CameraHub", "CameraStats", "CapturedFrame", "sharpness"]
