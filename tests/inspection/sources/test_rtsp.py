"""A real RTSP camera on loopback: GStreamer's RTSP server (driven by the system Python) streams a
looping generated clip, and ``LiveCaptureSource`` reads it through OpenCV/FFmpeg like a line camera.

The server is stopped and started again mid-test to prove the source reconnects on its own and that
frames flow again afterwards; the consumer is deliberately slower than the camera so the latest-frame
policy has to drop (and count) frames.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.sources import LiveCaptureSource
from inspection.types import Frame, SourceItem

pytestmark = pytest.mark.rtsp

SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_HINT = ("install GStreamer's RTSP server for the system Python: "
                "`sudo scripts/install-system-deps.sh` "
                "(Debian: gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-base "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)")
ELEMENTS = ("multifilesrc", "jpegdec", "videoconvert", "x264enc", "rtph264pay")

PROBE = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None]
print("missing GStreamer elements: " + ", ".join(missing) if missing else "ok")
"""

SERVER = """
import signal, sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
port, mount, pattern = sys.argv[1:4]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f'( multifilesrc location="{pattern}" loop=true caps="image/jpeg,framerate=25/1" ! jpegdec '
    "! videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)
server.get_mount_points().add_factory(mount, factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port " + port)
loop = GLib.MainLoop()
signal.signal(signal.SIGTERM, lambda *_: loop.quit())
print("READY", flush=True)
loop.run()
"""

TIMEOUT = 30.0


def rtsp_server_available() -> str | None:
    """None when the server can run, else why not (for the skip message)."""
    if shutil.which(SYSTEM_PYTHON) is None:
        return f"{SYSTEM_PYTHON} not found"
    try:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["GStreamer RTSP server bindings not importable"])[-1]
    return None if probe.stdout.strip() == "ok" else probe.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class RtspServer:
    """One GStreamer RTSP server process serving the JPEG frames in ``folder`` in a loop."""

    def __init__(self, script: Path, folder: Path, port: int) -> None:
        self.args = [SYSTEM_PYTHON, str(script), str(port), "/line", str(folder / "frame_%03d.jpg")]
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until READY or the process exits
        if line.strip() != "READY":
            self.stop()
            pytest.fail(f"RTSP server did not start: {line!r}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[tuple[RtspServer, str]]:
    why = rtsp_server_available()
    if why is not None:
        pytest.skip(f"no RTSP server for the rtsp test ({why}); {INSTALL_HINT}")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(25):  # a 1 s loop: a bar moving across a gradient, so every frame differs
        gradient = np.tile(np.linspace(0, 255, 160, dtype=np.uint8), (120, 1))
        image = cv2.cvtColor(gradient, cv2.COLOR_GRAY2BGR)
        cv2.rectangle(image, (i * 6, 30), (i * 6 + 10, 90), (0, 0, 255), -1)
        assert cv2.imwrite(str(frames / f"frame_{i:03d}.jpg"), image)
    script = tmp_path / "rtsp_server.py"
    script.write_text(SERVER)
    port = free_port()
    server = RtspServer(script, frames, port)
    server.start()
    try:
        yield server, f"rtsp://127.0.0.1:{port}/line"
    finally:
        server.stop()


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
