"""A real RTSP camera on loopback for tests: GStreamer's RTSP server, driven by the system Python (its
``gi`` bindings come from the distribution, not the venv), streams a folder of JPEG frames in a loop over
H.264, on a free port of 127.0.0.1 chosen at run time.

The server itself is ``drills.cameras.RtspCamera`` (one implementation, also the line simulator's cameras);
this module is what tests use around it. ``rtsp_camera(tmp_path, frames)`` is the context manager;
the server it yields can be stopped and started again on the same port to play a camera that reboots. Without
the GStreamer RTSP server installed it skips with the command that installs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from drills.cameras import INSTALL_HINT, CameraError, RtspCamera, rtsp_unavailable

__all__ = ["INSTALL_HINT", "TIMEOUT", "RtspServer", "moving_bar_frames", "rtsp_camera", "rtsp_server_available",
           "wait_until"]

TIMEOUT = 30.0

RtspServer = RtspCamera
rtsp_server_available = rtsp_unavailable
"""None when the server can run, else why not (for the skip message)."""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


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
def rtsp_camera(folder: Path, frames: Sequence[np.ndarray] | None = None) -> Iterator[tuple[RtspCamera, str]]:
    """A started RTSP server streaming ``frames`` (default: ``moving_bar_frames()``); yields it and its URL."""
    why = rtsp_unavailable()
    if why is not None:
        pytest.skip(f"no RTSP server for the rtsp test ({why}); {INSTALL_HINT}")
    images = folder / "frames"
    images.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(frames if frames is not None else moving_bar_frames()):
        path = images / f"frame_{i:03d}.jpg"
        assert cv2.imwrite(str(path), image)
        paths.append(path)
    server = RtspCamera(paths, mount="/line", fps=25)
    try:
        server.start()
    except CameraError as e:
        pytest.fail(str(e))
    try:
        yield server, server.url
    finally:
        server.stop()
