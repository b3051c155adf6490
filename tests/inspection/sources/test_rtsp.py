"""A real RTSP camera on loopback: GStreamer's RTSP server (driven by the system Python) streams a
looping generated clip, and ``LiveCaptureSource`` reads it through OpenCV/FFmpeg like a line camera.

The server is stopped and started again mid-test to prove the source reconnects on its own and that
frames flow again afterwards; the consumer is deliberately slower than the camera so the latest-frame
policy has to drop (and count) frames.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspection.sources import LiveCaptureSource
from inspection.types import Frame, SourceItem
from tests.rtsp_server import TIMEOUT, RtspServer, rtsp_camera, wait_until

pytestmark = pytest.mark.rtsp


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[tuple[RtspServer, str]]:
    with rtsp_camera(tmp_path) as served:
        yield served


def test_live_rtsp_reconnects_after_server_restart_and_drops_for_slow_consumer(
        rtsp_server: tuple[RtspServer, str]) -> None:
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
