"""VideoFileSource on generated videos; LiveCaptureSource's grabber with injected fake captures.

The fakes make the latest-frame and reconnect logic testable without a camera: each fake capture is
scripted (how many frames, whether it opens), and the tests poll with generous timeouts instead of
asserting on wall-clock durations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from inspection.errors import SourceError
from inspection.sources import LiveCaptureSource, SourceStats, VideoFileSource, redact_url
from inspection.types import Frame, FrameFailure, SourceItem

IDS: dict[str, Any] = {"unit_id": "U1", "order_id": "O1", "camera_id": "cam-side"}
TIMEOUT = 20.0


def write_video(path: Path, frames: int = 6, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (32, 24))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 20 + 40 * i, np.uint8))
    writer.release()
    return path


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


# -- VideoFileSource ----------------------------------------------------------------------------------


def test_video_yields_every_frame_in_order(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", frames=6)
    with VideoFileSource(video, **IDS) as source:
        items = list(source)
    frames = [item for item in items if isinstance(item, Frame)]
    assert len(frames) == len(items) == 6
    assert [f.source for f in frames] == [f"{video}#{i}" for i in range(6)]
    assert [f.source_seq for f in frames] == list(range(6))
    means = [float(f.image.mean()) for f in frames]
    assert means == sorted(means) and means[-1] - means[0] > 150  # order kept (MJPEG is lossy)
    assert frames[0].image.shape == (24, 32, 3) and frames[0].captured_at.tzinfo is not None
    assert source.stats == SourceStats(frames_read=6)


def test_video_captured_at_follows_the_recording_timeline(tmp_path: Path) -> None:
    start = datetime(2024, 3, 1, 8, 0, 0)  # naive: UTC
    video = write_video(tmp_path / "v.avi", frames=3, fps=10)
    frames = list(VideoFileSource(video, captured_at=start, **IDS))
    assert [f.captured_at for f in frames] == [
        datetime(2024, 3, 1, 8, 0, 0, tzinfo=UTC) + timedelta(milliseconds=100 * i) for i in range(3)]


def test_video_max_frames_and_close_release(tmp_path: Path) -> None:
    source = VideoFileSource(write_video(tmp_path / "v.avi"), max_frames=2, **IDS)
    assert len(list(source)) == 2
    assert source.closed and source._cap is None


def test_video_closed_mid_iteration_stops(tmp_path: Path) -> None:
    source = VideoFileSource(write_video(tmp_path / "v.avi"), **IDS)
    seen = []
    for item in source:
        seen.append(item)
        source.close()
    assert len(seen) == 1 and source._cap is None


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.avi", None, "does not exist"),
    ("garbage.avi", b"RIFF0000AVI garbage, not a video", "cannot open video file"),
    ("empty.mp4", b"", "cannot open video file"),
])
def test_video_that_cannot_be_opened_is_a_source_error(tmp_path: Path, name: str, content: bytes | None,
                                                       message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as info:
        VideoFileSource(path, **IDS)
    assert name in str(info.value)


def test_video_with_bad_frames_yields_failures(tmp_path: Path) -> None:
    tiny = np.zeros((4, 4, 3), np.uint8)
    source = VideoFileSource("fake.avi", capture_factory=lambda: FakeCapture([tiny, tiny]), **IDS)
    items = list(source)
    assert [type(i) for i in items] == [FrameFailure, FrameFailure]
    assert "too small" in source.stats.last_error and source.stats.frames_failed == 2


# -- LiveCaptureSource with fake captures -------------------------------------------------------------


def image(value: int, channels: int = 3) -> np.ndarray:
    shape = (16, 16) if channels == 1 else (16, 16, channels)
    return np.full(shape, value, np.uint8)


class FakeCapture:
    """A scripted capture: yields its frames, then fails reads (as a dropped stream does).

    With ``gate`` set, each read waits for the test to release one frame, so the test decides exactly
    how many frames the grabber has seen; ``read_timeout`` makes a gated read give up like a driver,
    ``abort`` ends a blocked read when the test is done with it.
    """

    def __init__(self, frames: list[Any] | None = None, *, opened: bool = True, endless: int | None = None,
                 gate: threading.Semaphore | None = None, read_timeout: float | None = None) -> None:
        self.frames = list(frames or [])
        self.opened = opened
        self.endless = endless
        self.gate = gate
        self.read_timeout = read_timeout
        self.reads = 0
        self.released = threading.Event()
        self.abort = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self) -> tuple[bool, Any]:
        if self.gate is not None:
            waited = 0.0
            while not self.gate.acquire(timeout=0.01):
                waited += 0.01
                if self.abort.is_set() or (self.read_timeout is not None and waited >= self.read_timeout):
                    return False, None  # the driver's read timeout
        self.reads += 1
        if self.endless is not None:
            return True, image(self.endless)
        if self.frames:
            return True, self.frames.pop(0)
        return False, None

    def release(self) -> None:
        self.released.set()


class Factory:
    """Hands out the scripted captures in turn (the last one again when they run out)."""

    def __init__(self, *captures: FakeCapture | Exception) -> None:
        self.captures = list(captures)
        self.calls = 0

    def __call__(self) -> FakeCapture:
        self.calls += 1
        capture = self.captures.pop(0) if len(self.captures) > 1 else self.captures[0]
        if isinstance(capture, Exception):
            raise capture
        return capture


def live(factory: Callable[[], Any], **options: Any) -> LiveCaptureSource:
    options.setdefault("reconnect_delay", 0.001)
    options.setdefault("max_reconnect_delay", 0.01)
    return LiveCaptureSource("rtsp://fake/line", capture_factory=factory, **IDS, **options)


def test_slow_consumer_gets_the_latest_frame_and_drops_are_counted() -> None:
    gate = threading.Semaphore(0)
    capture = FakeCapture([image(v) for v in range(0, 250, 10)], gate=gate)
    with live(Factory(capture), max_reconnects=0) as source:
        items = iter(source)
        gate.release()
        first = next(items)
        assert isinstance(first, Frame) and first.source_seq == 0
        gate.release(5)  # the camera delivers 5 frames while the consumer is busy
        wait_until(lambda: capture.reads == 6 and source.stats.frames_dropped == 4, "5 more grabbed frames")
        newest = next(items)
        assert isinstance(newest, Frame) and newest.source_seq == 5 and int(newest.image[0, 0, 0]) == 50
        stats = source.stats
        capture.abort.set()
    assert (stats.frames_read, stats.frames_dropped) == (2, 4)


def test_consumer_keeping_up_drops_nothing() -> None:
    gate = threading.Semaphore(0)
    capture = FakeCapture([image(v) for v in range(10)], gate=gate)
    with live(Factory(capture), max_frames=10) as source:
        items = iter(source)
        seqs = []
        for _ in range(10):
            gate.release()
            item = next(items)
            seqs.append(item.source_seq)
        capture.abort.set()
    assert seqs == list(range(10)) and source.stats.frames_dropped == 0


def test_reconnects_after_read_failure_and_frames_flow_again() -> None:
    factory = Factory(
        FakeCapture([image(10), image(10)]),  # stream drops after 2 frames
        FakeCapture(opened=False),            # camera still rebooting
        ConnectionError("connection refused"),
        FakeCapture(endless=200),             # back
    )
    with live(factory) as source:
        received: list[SourceItem] = []
        for item in source:
            received.append(item)
            if isinstance(item, Frame) and int(item.image[0, 0, 0]) == 200:
                break
        stats = source.stats
    assert stats.reconnects == 3 and factory.calls == 4
    assert isinstance(received[-1], Frame) and received[-1].source_seq >= 2  # grab numbers continue


def test_reconnects_exhausted_ends_iteration_with_last_error() -> None:
    source = live(Factory(FakeCapture([image(1)]), FakeCapture(opened=False)), max_reconnects=3)
    items = list(source)
    assert len(items) == 1
    stats = source.stats
    assert stats.reconnects == 3
    assert "gave up" in stats.last_error and "after 3 reconnect attempts" in stats.last_error
    assert "cannot open rtsp://fake/line" in stats.last_error
    wait_until(lambda: not source.running, "the grabber to stop")


def test_max_reconnects_counts_consecutive_failures_only() -> None:
    # two outages of two failed attempts each; max_reconnects=2 survives both because frames came between
    factory = Factory(FakeCapture([image(1)]), FakeCapture(opened=False), FakeCapture([image(2)]),
                      FakeCapture(opened=False), FakeCapture([image(3)]), FakeCapture(opened=False))
    source = live(factory, max_reconnects=2)
    values = [int(f.image[0, 0, 0]) for f in source if isinstance(f, Frame)]
    assert values == [1, 2, 3]
    assert source.stats.reconnects == 2 + 2 + 2


def test_open_failure_without_retries_ends_at_once() -> None:
    source = live(Factory(FakeCapture(opened=False)), max_reconnects=0)
    assert list(source) == []
    assert source.stats.reconnects == 0 and "cannot open" in source.stats.last_error


def test_close_from_another_thread_stops_iteration_and_grabber() -> None:
    gate = threading.Semaphore(0)  # the camera never sends anything: the consumer blocks, reads time out
    capture = FakeCapture(endless=1, gate=gate, read_timeout=0.05)
    source = live(Factory(capture))
    consumed: list[SourceItem] = []
    consumer = threading.Thread(target=lambda: consumed.extend(source), daemon=True)
    consumer.start()
    wait_until(lambda: source.running, "the grabber to start")
    source.close()
    consumer.join(TIMEOUT)
    assert not consumer.is_alive() and consumed == []
    wait_until(lambda: not source.running and capture.released.is_set(), "the grabber to release")


def test_max_frames_stops_the_grabber() -> None:
    capture = FakeCapture(endless=7)
    source = live(Factory(capture), max_frames=3)
    assert len(list(source)) == 3
    assert source.closed
    wait_until(lambda: not source.running and capture.released.is_set(), "the grabber to release")


def test_grey_and_bgra_frames_become_bgr_and_bad_frames_failures() -> None:
    frames = [image(5, channels=1), image(6, channels=4), np.zeros((4, 4, 3), np.uint8),
              np.zeros((16, 16, 3), np.float32)]
    gate = threading.Semaphore(0)
    capture = FakeCapture(frames, gate=gate)
    with live(Factory(capture), max_reconnects=0, max_frames=4) as source:
        items = []
        iterator = iter(source)
        for _ in range(4):
            gate.release()
            items.append(next(iterator))
        capture.abort.set()
    good = [i for i in items if isinstance(i, Frame)]
    failures = [i for i in items if isinstance(i, FrameFailure)]
    assert [type(i) for i in items] == [Frame, Frame, FrameFailure, FrameFailure]
    assert good[0].image.shape == (16, 16, 3) and good[1].image.shape == (16, 16, 3)
    assert "too small" in failures[0].error and "uint8" in failures[1].error
    assert source.stats.frames_failed == 2


@pytest.mark.parametrize(("target", "options", "message"), [
    (-1, {}, "camera index"),
    ("  ", {}, "URL is empty"),
    ("rtsp://x", {"max_reconnects": -1}, "max_reconnects"),
    ("rtsp://x", {"reconnect_delay": -1.0}, "reconnect_delay"),
    ("rtsp://x", {"max_frames": -2}, "max_frames"),
    ("rtsp://x", {"camera_id": ""}, "camera_id"),
])
def test_live_options_are_validated(target: str | int, options: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError, match=message):
        LiveCaptureSource(target, **{**IDS, **options})


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.5:554/stream1", "rtsp://***@10.0.0.5:554/stream1"),
    ("rtsp://10.0.0.5/stream1", "rtsp://10.0.0.5/stream1"),
    ("http://user@cam/video.mjpg", "http://***@cam/video.mjpg"),
    ("https://cam/a@b", "https://cam/a@b"),
])
def test_credentials_are_redacted(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert LiveCaptureSource(url, **IDS).label == shown


def test_unreachable_stream_through_opencv_gives_up_with_reason() -> None:
    # a closed loopback port: refused at once, so this exercises the real OpenCV open path quickly
    source = LiveCaptureSource("rtsp://127.0.0.1:9/none", max_reconnects=0, open_timeout=2, **IDS)
    assert list(source) == []
    assert "cannot open rtsp://127.0.0.1:9/none" in source.stats.last_error


class RaisingCapture(FakeCapture):
    def read(self) -> tuple[bool, Any]:
        raise cv2.error("backend exploded")


def test_read_that_raises_is_a_lost_stream_with_its_reason() -> None:
    source = live(Factory(RaisingCapture(), FakeCapture([image(1)]), FakeCapture(opened=False)),
                  max_reconnects=1)
    assert [int(f.image[0, 0, 0]) for f in source if isinstance(f, Frame)] == [1]
    assert source.stats.reconnects == 2 and "gave up" in source.stats.last_error


def test_read_exception_reason_is_recorded() -> None:
    source = live(Factory(RaisingCapture(), FakeCapture(opened=False)), max_reconnects=0)
    assert list(source) == []
    assert "read raised error: backend exploded" in source.stats.last_error
