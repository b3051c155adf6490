"""A real RTSP camera on loopback for tests: GStreamer's RTSP server, driven by the system Python (its
``gi`` bindings come from the distribution, not the venv), streams a folder of JPEG frames in a loop over
H.264, on a free port of 127.0.0.1 chosen at run time.

``rtsp_camera(tmp_path, frames)`` is the context manager tests use; ``RtspServer`` can be stopped and started
again on the same port to play a camera that reboots. Without the GStreamer RTSP server installed it skips with
the command that installs it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

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


def moving_bar_frames(count: int = 25, width: int = 160, height: int = 120) -> list[np.ndarray]:
    """A 1 s loop at 25 fps: a bar moving across a gradient, so every frame differs."""
    frames = []
    for i in range(count):
        gradient = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
        image = cv2.cvtColor(gradient, cv2.COLOR_GRAY2BGR)
        cv2.rectangle(image, (i * 6, 30), (i * 6 + 10, 90), (0, 0, 255), -1)
        frames.append(image)
    return frames


@contextmanager
def rtsp_camera(folder: Path, frames: Sequence[np.ndarray] | None = None) -> Iterator[tuple[RtspServer, str]]:
    """A started RTSP server streaming ``frames`` (default: ``moving_bar_frames()``); yields it and its URL."""
    why = rtsp_server_available()
    if why is not None:
        pytest.skip(f"no RTSP server for the rtsp test ({why}); {INSTALL_HINT}")
    images = folder / "frames"
    images.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(frames if frames is not None else moving_bar_frames()):
        assert cv2.imwrite(str(images / f"frame_{i:03d}.jpg"), image)
    script = folder / "rtsp_server.py"
    script.write_text(SERVER)
    port = free_port()
    server = RtspServer(script, images, port)
    server.start()
    try:
        yield server, f"rtsp://127.0.0.1:{port}/line"
    finally:
        server.stop()
