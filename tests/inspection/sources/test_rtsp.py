"""A real RTSP camera on loopback: GStreamer's RTSP server (driven by the system Python, ``drills.cameras``)
streams a looping generated clip, and ``LiveCaptureSource`` reads it through OpenCV/FFmpeg like a line camera.

The server is stopped and started again mid-test to prove the source reconnects on its own and that
frames flow again afterwards; the consumer is deliberately slower than the camera so the latest-frame
policy has to drop (and count) frames.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from drills.cameras import INSTALL_HINT, CameraError, RtspCamera, rtsp_unavailable
from inspection.sources import LiveCaptureSource
from inspection.types import Frame, SourceItem

pytestmark = pytest.mark.rtsp

TIMEOUT = 30.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[tuple[RtspCamera, str]]:
    why = rtsp_unavailable()
    if why is not None:
        pytest.skip(f"no RTSP server for the rtsp test ({why}); {INSTALL_HINT}")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(25):  # a 1 s loop: a bar moving across a gradient, so every frame differs
        gradient = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
        image = cv2.cvtColor(gradient, cv2.COLOR_GRAY2BGR)
        cv2.rectangle(image, (i * 6, 30), (i * 6 + 10, 90), (0, 0, 255), -1)
        assert cv2.imwrite(str(frames / f"frame_{i:03d}.jpg"), image)
    server = RtspCamera(sorted(frames.glob("frame_*.jpg")), mount="/line", fps=25)
    try:
        server.start()
    except CameraError as e:
        pytest.fail(str(e))
    try:
        yield server, server.url
    finally:
        server.stop()


def test_live_rtsp_reconnects_after_server_restart_and_drops_for_slow_consumer(
        rtsp_server: tuple[RtspCamera, str]) -> None:
    server, url = rtsp_server
    source = LiveCaptureSource(url, unit_id="U1", order_id="O1", camera_id="rtsp-cam",
                               reconnect_delay=0.2, max_reconnect_delay=1.0, open_timeout=5, read_timeout=3)
    items: list[SourceItem] = []

    def consume() -> None:
        for item in source:
            items.append(item)
            time.sleep(0.1)  # a station slower than the 25 fps camera

    consumer = threading.Thread(target=consume, daemon=True)
    with contextlib.closing(source):
        consumer.start()
        wait_until(lambda: len(items) >= 5, "the first frames over RTSP")
        first = items[0]
        assert isinstance(first, Frame) and first.image.shape == (120, 160, 3)
        assert first.source == url and first.camera_id == "rtsp-cam"

        server.stop()
        wait_until(lambda: source.stats.reconnects >= 1, "a reconnect attempt after the server stopped")
        before_restart = len(items)
        server.start()
        wait_until(lambda: len(items) >= before_restart + 5, "frames after the server restarted")
        stats = source.stats
    consumer.join(TIMEOUT)
    assert not consumer.is_alive() and not source.running
    assert stats.reconnects >= 1 and stats.frames_dropped > 0
    assert "rtsp://127.0.0.1" in stats.last_error
    assert all(isinstance(item, Frame) for item in items)
    seqs = [item.source_seq for item in items]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
