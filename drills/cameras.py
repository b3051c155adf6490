"""Line cameras on loopback whose scene the caller sets: what the station sees is the unit in front of it.

Two kinds, one interface (``start`` / ``show`` / ``stop`` / ``url``):

* ``RtspCamera``: GStreamer's RTSP server (``gst-rtsp-server``), run by the system Python (``/usr/bin/python3``
  with PyGObject, which the project's venv does not carry), streams H.264 over RTSP at ``fps``. The frames it
  encodes are JPEG files the caller names: ``show(paths)`` replaces the scene (a list of frames played in a
  loop; one frame is a still part) and returns once the server has switched, so the caller can stamp the
  moment. This is the camera of the RTSP source tests, the line simulator and ``bench/line.py``.
* ``MjpegCamera``: where GStreamer is absent, the same scene served in-process as an HTTP MJPEG stream
  (``multipart/x-mixed-replace``, what many IP cameras speak and FFmpeg/OpenCV read).

``rtsp_unavailable()`` says why the RTSP camera cannot run here (``None`` when it can).

Every frame of one camera must have the same size (the encoder does not renegotiate mid-stream):
``scene_frames`` writes JPEGs of one size for a camera.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from drills.peers import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
INSTALL_HINT = ("install GStreamer's RTSP server for the system Python: `sudo scripts/install-system-deps.sh` "
                "(Debian: gir1.2-gst-rtsp-server-1.0 python3-gst-1.0 gstreamer1.0-plugins-base "
                "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly)")
ELEMENTS = ("appsrc", "jpegdec", "videoconvert", "x264enc", "rtph264pay")

_PROBE = f"""
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in {ELEMENTS!r} if Gst.ElementFactory.find(e) is None]
print("missing GStreamer elements: " + ", ".join(missing) if missing else "ok")
"""

# The server process. argv: port mount fps path [path ...]. stdin: one scene per line, paths separated by tabs;
# it answers "SHOWN <n>" once the new scene is what the next frame encodes; "?" is answered "CLIENTS <n>" (streams
# being served). The frame pushed at each tick is the
# scene's next file, stamped by the live appsrc (do-timestamp) at the moment it enters the pipeline.
SERVER = r"""
import signal, sys, threading
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
port, mount, fps = sys.argv[1], sys.argv[2], int(sys.argv[3])
lock = threading.Lock()
state = {"frames": [open(p, "rb").read() for p in sys.argv[4:]], "i": 0, "shown": 0}
sources = []

def on_configure(factory, media):
    src = media.get_element().get_by_name("src")
    sources.append(src)
    media.connect("unprepared", lambda m: src in sources and sources.remove(src))

def tick():
    with lock:
        frames = state["frames"]
        data = frames[state["i"] % len(frames)]
        state["i"] += 1
    for src in list(sources):
        src.emit("push-buffer", Gst.Buffer.new_wrapped(data))
    return True

def commands():
    n = 0
    for line in sys.stdin:
        if line.strip() == "?":
            print("CLIENTS %d" % len(sources), flush=True)
            continue
        n += 1
        paths = [p for p in line.rstrip("\n").split("\t") if p]
        try:
            frames = [open(p, "rb").read() for p in paths]
        except OSError as e:
            print("ERROR " + str(e).replace("\n", " "), flush=True)
            continue
        if not frames:
            print("ERROR empty scene", flush=True)
            continue
        with lock:
            state["frames"], state["i"] = frames, 0
        print("SHOWN %d" % n, flush=True)
    GLib.idle_add(loop.quit)

server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( appsrc name=src is-live=true do-timestamp=true format=time caps=image/jpeg,framerate={fps}/1 "
    "! jpegdec ! videoconvert ! video/x-raw,format=I420 "
    f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )")
factory.set_shared(True)
factory.connect("media-configure", on_configure)
server.get_mount_points().add_factory(mount, factory)
if server.attach(None) == 0:
    sys.exit("cannot listen on port " + port)
loop = GLib.MainLoop()
signal.signal(signal.SIGTERM, lambda *_: loop.quit())
GLib.timeout_add(max(1, 1000 // fps), tick)
threading.Thread(target=commands, daemon=True).start()
print("READY", flush=True)
loop.run()
"""


def rtsp_unavailable() -> str | None:
    """``None`` when the RTSP camera can run here, else why not (for a skip message or the fallback line)."""
    if shutil.which(SYSTEM_PYTHON) is None:
        return f"{SYSTEM_PYTHON} not found"
    try:
        probe = subprocess.run([SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON}: {exc}"
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["GStreamer RTSP server bindings not importable"])[-1]
    return None if probe.stdout.strip() == "ok" else probe.stdout.strip()


class CameraError(RuntimeError):
    """A camera server did not start or refused a scene."""


class SceneCamera(Protocol):
    """A camera on loopback streaming the scene it was last shown."""

    url: str

    def start(self) -> None: ...

    def show(self, paths: Sequence[Path]) -> None: ...

    def clients(self) -> int: ...

    def stop(self) -> None: ...


class RtspCamera:
    """One GStreamer RTSP server process serving ``rtsp://127.0.0.1:<port>/<mount>``, starting on ``scene``.

    ``stop()`` then ``start()`` restarts it on the same port (a camera that went away and came back).
    """

    def __init__(self, scene: Sequence[Path], *, port: int | None = None, mount: str = "/line", fps: int = 25,
                 start_timeout_s: float = 30.0) -> None:
        if not scene:
            raise CameraError("a camera needs at least one frame to show")
        self.port = port or free_port()
        self.mount = mount if mount.startswith("/") else f"/{mount}"
        self.fps = fps
        self.url = f"rtsp://127.0.0.1:{self.port}{self.mount}"
        self._scene = [Path(p) for p in scene]
        self._timeout = start_timeout_s
        digest = hashlib.sha256(SERVER.encode()).hexdigest()[:12]
        self._script = Path(tempfile.gettempdir()) / f"qcline-rtsp-camera-{digest}.py"
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        if not self._script.exists() or self._script.read_text() != SERVER:
            tmp = self._script.with_suffix(f".{time.monotonic_ns()}.tmp")
            tmp.write_text(SERVER)
            tmp.replace(self._script)
        args = [SYSTEM_PYTHON, str(self._script), str(self.port), self.mount, str(self.fps),
                *(str(p) for p in self._scene)]
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, bufsize=1)
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until READY or the process exits
        if line.strip() != "READY":
            err = process.stderr.read() if process.stderr and process.poll() is not None else ""
            self._process = process
            self.stop()
            raise CameraError(f"RTSP camera on port {self.port} did not start: {(line or err).strip()[-500:]!r}")
        self._process = process

    def show(self, paths: Sequence[Path]) -> None:
        """Switch the scene; returns once the server's next frame is the new scene's first."""
        if not paths:
            raise CameraError("a scene needs at least one frame")
        with self._lock:
            self._scene = [Path(p) for p in paths]
            process = self._process
            if process is None:  # stopped: the scene is what it shows once started again
                return
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("\t".join(str(p) for p in self._scene) + "\n")
            process.stdin.flush()
            answer = process.stdout.readline().strip()
        if not answer.startswith("SHOWN"):
            raise CameraError(f"RTSP camera {self.url} refused the scene: {answer or 'it exited'}")

    def clients(self) -> int:
        """Streams the server is serving now (0 when stopped)."""
        with self._lock:
            process = self._process
            if process is None:
                return 0
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("?\n")
            process.stdin.flush()
            answer = process.stdout.readline().split()
        return int(answer[1]) if len(answer) == 2 and answer[0] == "CLIENTS" else 0

    def stop(self) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> RtspCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MjpegCamera:
    """The same scene camera as an HTTP MJPEG stream served in-process (the fallback where GStreamer is absent):
    ``http://127.0.0.1:<port>/<mount>`` sends ``fps`` JPEG parts a second to every client."""

    BOUNDARY = "qclineframe"

    def __init__(self, scene: Sequence[Path], *, port: int | None = None, mount: str = "/line", fps: int = 25) -> None:
        if not scene:
            raise CameraError("a camera needs at least one frame to show")
        self.port = port or free_port()
        self.mount = mount if mount.startswith("/") else f"/{mount}"
        self.fps = fps
        self.url = f"http://127.0.0.1:{self.port}{self.mount}"
        self._frames = [Path(p).read_bytes() for p in scene]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._clients = 0

    def clients(self) -> int:
        with self._lock:
            return self._clients

    def _next_frames(self) -> Iterator[bytes]:
        seen: list[bytes] | None = None
        i = 0
        while not self._stopping.is_set():
            with self._lock:
                frames = self._frames
            if frames is not seen:
                seen, i = frames, 0
            yield frames[i % len(frames)]
            i += 1

    def start(self) -> None:
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != camera.mount:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={camera.BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                period = 1.0 / camera.fps
                next_at = time.monotonic()
                with camera._lock:
                    camera._clients += 1
                try:
                    for data in camera._next_frames():
                        self.wfile.write(f"--{camera.BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                         f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                        next_at += period
                        time.sleep(max(0.0, next_at - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    return
                finally:
                    with camera._lock:
                        camera._clients -= 1

        self._stopping.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="mjpeg-camera", daemon=True)
        self._thread.start()

    def show(self, paths: Sequence[Path]) -> None:
        if not paths:
            raise CameraError("a scene needs at least one frame")
        frames = [Path(p).read_bytes() for p in paths]
        with self._lock:
            self._frames = frames

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MjpegCamera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def open_camera(scene: Sequence[Path], *, fps: int = 25, mount: str = "/line",
                rtsp: bool | None = None) -> SceneCamera:
    """An RTSP camera where GStreamer's server runs (``rtsp=None`` probes), else the MJPEG fallback. Not started."""
    if rtsp is None:
        rtsp = rtsp_unavailable() is None
    return RtspCamera(scene, fps=fps, mount=mount) if rtsp else MjpegCamera(scene, fps=fps, mount=mount)


def scene_frames(images: Sequence[Path], folder: Path, size: tuple[int, int] | None = None,
                 quality: int = 95) -> list[Path]:
    """Each image as a JPEG of one size (``size`` = (width, height); default the first image's) in ``folder``:
    what one camera can stream. Images already of that size are re-encoded, never resampled."""
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for i, path in enumerate(images):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CameraError(f"cannot read image {path}")
        if size is None:
            size = (image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != size:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        target = folder / f"{i:05d}-{Path(path).stem}.jpg"
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise CameraError(f"cannot encode {path} as JPEG")
        target.write_bytes(data.tobytes())
        out.append(target)
    return out


def blank_frame(folder: Path, size: tuple[int, int], grey: int = 128, name: str = "empty-belt.jpg") -> Path:
    """A uniform frame (an empty belt) of ``size`` (width, height), as JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.full((size[1], size[0], 3), grey, dtype=np.uint8)
    path = folder / name
    ok, data = cv2.imencode(".jpg", image)
    if not ok:
        raise CameraError("cannot encode a blank frame")
    path.write_bytes(data.tobytes())
    return path
