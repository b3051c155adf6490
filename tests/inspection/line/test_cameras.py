"""Cameras held by the station: capture policies, frames claimed once, bounded rings, drops, the hub."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from inspection.errors import ConflictError, NotFoundError
from inspection.line.cameras import Camera, CameraHub, CapturedFrame
from inspection.line.config import CameraSpec, CapturePolicy
from tests.inspection.line.fakes import FakeCamera, wait_until


def sharp(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)


def flat(value: int = 128) -> np.ndarray:
    return np.full((64, 64, 3), value, np.uint8)


@pytest.fixture
def cam() -> Iterator[tuple[Camera, FakeCamera]]:
    fake = FakeCamera()
    camera = Camera(CameraSpec(name="top", url="usb:0", ring=4, reconnect={"min_s": 0.05, "max_s": 0.1}),
                    capture_factory=fake.factory)
    camera.start()
    wait_until(lambda: fake.opens >= 1, "camera opened")
    try:
        yield camera, fake
    finally:
        fake.closed = True
        camera.close()


def take_in_thread(camera: Camera, policy: CapturePolicy, after: datetime, wait_s: float = 20.0
                   ) -> tuple[threading.Thread, list[CapturedFrame | None]]:
    got: list[CapturedFrame | None] = []
    thread = threading.Thread(target=lambda: got.append(camera.take(after, policy, time.monotonic() + wait_s)))
    thread.start()
    return thread, got


@pytest.mark.parametrize(("policy", "images", "kept"), [
    (CapturePolicy(policy="first"), [flat(), sharp(1), flat()], 0),
    (CapturePolicy(policy="burst", frames=3), [flat(), sharp(1), flat()], 1),
    (CapturePolicy(policy="burst", frames=2), [flat(), flat(90), sharp(2)], 0),  # the burst is the first 2 only
    (CapturePolicy(policy="window", window_ms=1500), [flat(), sharp(3), flat()], 1),
])
def test_capture_policy_keeps_its_frame(cam: tuple[Camera, FakeCamera], policy: CapturePolicy,
                                        images: list[np.ndarray], kept: int) -> None:
    camera, fake = cam
    thread, got = take_in_thread(camera, policy, datetime.now(UTC))
    for image in images:
        fake.frames.put(image)
    thread.join(30)
    assert got and got[0] is not None and got[0].seq == kept
    assert camera.stats().frames_claimed == 1


def test_a_frame_is_claimed_once(cam: tuple[Camera, FakeCamera]) -> None:
    camera, fake = cam
    after = datetime.now(UTC)
    fake.push(255)
    first = camera.take(after, CapturePolicy(), time.monotonic() + 20)
    second = camera.take(after, CapturePolicy(), time.monotonic() + 0.2)  # same moment: the frame is taken
    assert first is not None and first.seq == 0 and second is None


def test_ring_is_bounded_and_drops_are_counted(tmp_path: object) -> None:
    fake = FakeCamera()
    camera = Camera(CameraSpec(name="top", url="usb:0", ring=2, max_fps=0.5), capture_factory=fake.factory)
    camera.start()
    try:
        for _ in range(5):
            fake.push(100)
        fake.frames.put(np.zeros((64, 64, 3), np.float32))  # a driver handing out the wrong pixel type
        wait_until(lambda: camera.stats().frames_in == 6, "six frames read")
        stats = camera.stats()
        assert stats.ring == 1 and stats.frames_dropped == 5  # 4 over max_fps (one kept), and the unusable one
        fake.push(100)
        wait_until(lambda: camera.stats().frames_in == 7, "one more")
        assert camera.stats().ring <= 2
    finally:
        fake.closed = True
        camera.close()


def test_hub_add_remove_and_bounds() -> None:
    fakes: dict[str, FakeCamera] = {}

    def factory(spec: CameraSpec) -> Camera:
        fakes[spec.name] = FakeCamera()
        return Camera(spec, capture_factory=fakes[spec.name].factory)

    hub = CameraHub.open([CameraSpec(name="a", url="usb:0")], factory=factory, max_cameras=2)
    try:
        hub.add(CameraSpec(name="b", url="usb:1"))
        with pytest.raises(ConflictError, match="already held"):
            hub.add(CameraSpec(name="b", url="usb:1"))
        with pytest.raises(ConflictError, match="already holds 2"):
            hub.add(CameraSpec(name="c", url="usb:2"))
        fakes["a"].closed = True
        hub.remove("a")
        with pytest.raises(NotFoundError):
            hub.remove("a")
        assert hub.names() == ["b"] and [s.name for s in hub.stats()] == ["b"]
    finally:
        for fake in fakes.values():
            fake.closed = True
        hub.close()


def test_stream_timestamps_keep_a_bursts_spacing() -> None:
    assert cv2.CAP_PROP_POS_MSEC == 0  # what FakeCapture.get answers
    fake = FakeCamera()
    camera = Camera(CameraSpec(name="top", url="usb:0", ring=8, timestamps="stream"), capture_factory=fake.factory)
    camera.start()
    try:
        wait_until(lambda: fake.opens >= 1, "camera opened")
        fake.frames.put((flat(), 0.0))
        wait_until(lambda: camera.stats().frames_in == 1, "the first frame")
        time.sleep(0.4)  # the decoder then hands out three buffered frames at once
        for position in (200.0, 240.0, 280.0):
            fake.frames.put((flat(), position))
        wait_until(lambda: camera.stats().frames_in == 4, "the burst")
        frames = [camera.take(datetime(2000, 1, 1, tzinfo=UTC), CapturePolicy(), time.monotonic() + 5)
                  for _ in range(4)]
    finally:
        fake.closed = True
        camera.close()
    assert all(f is not None for f in frames)
    stamps = [f.captured_at for f in frames if f is not None]
    assert [(b - a).total_seconds() * 1000 for a, b in itertools.pairwise(stamps[1:])] == [40.0, 40.0]
    assert all(f.captured_at <= f.grabbed_at for f in frames if f is not None)
    assert (stamps[1] - stamps[0]).total_seconds() == pytest.approx(0.2, abs=1e-6)


def test_a_station_behind_its_triggers_never_takes_a_later_units_frame(cam: tuple[Camera, FakeCamera]) -> None:
    """A trigger taken late (the queue backed up) must not bind a frame captured after its window: that frame
    shows the next unit. It gets none, and says the station fell behind; the frame stays for its own trigger."""
    camera, fake = cam
    old = datetime.now(UTC) - timedelta(seconds=5)
    fake.push(255)
    wait_until(lambda: camera.has_frame_after(old), "a frame after the old trigger")
    late = camera.take(old, CapturePolicy(), time.monotonic() + 5, before=old + timedelta(milliseconds=800))
    assert late is None
    assert camera.stats().frames_claimed == 0
    own = camera.take(old + timedelta(seconds=4), CapturePolicy(), time.monotonic() + 5)
    assert own is not None and own.seq == 0
