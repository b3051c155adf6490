"""Hostile-input benchmark: what the attacks of the security report cost now.

Prints one JSON line on stdout; progress goes to stderr.

* ``decode``: each bomb (the 689-byte JPEG declaring 20000x20000 behind fill bytes, a real 9000x9000 JPEG,
  an 8000x8000 1-bit PNG of ~8 KB) decoded by ``inspection.imageio.decode`` in a fresh subprocess: whether it
  was refused, the seconds it took and the growth of the process's peak RSS (MB). A 4000x3000 camera-like
  JPEG is measured the same way (decoded reduced to 2000x1500), and at full size as the peer that shows
  what the meter sees.
* ``service``: the real service (``python -m api.cli serve``, bundled model, demo orders) on a loopback
  port; one camera's p50 latency over ``--frames`` sequential frames, quiet and then while ``--attackers``
  clients (processes of their own) keep posting 18 MiB JSON bodies without a key, ``--pause`` apart each, to
  ``POST /v1/orders`` (a JSON-body route; each answered 401 before it is read); ``ratio`` is loaded / quiet.

Caveats: client and server share the machine; other processes skew the latency figures (run it on a quiet
machine, or read the ratio).

Usage: python bench/hostile.py [--frames 30] [--attackers 10] [--pause 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import hostile  # noqa: E402

PROBE = """
import json, resource, sys, time
from inspection.errors import InvalidFrameError
from inspection.imageio import decode
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    long_side = None if sys.argv[2:] == ["full"] else 1280
    shape, refused = list(decode(data, long_side=long_side).image.shape), None
except InvalidFrameError as exc:
    shape, refused = None, str(exc)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"seconds": round(time.perf_counter() - started, 4), "refused": refused, "shape": shape,
                  "peak_rss_growth_mb": round(grown, 1)}))
"""


ATTACKER = hostile.ATTACKER_SCRIPT


def decode_figures(folder: Path) -> dict[str, object]:
    import cv2
    import numpy as np

    camera = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8))[1]
    cases = {"fill_byte_jpeg_20000": hostile.fill_byte_bomb(), "jpeg_9000": hostile.real_jpeg(9000, 9000),
             "png_bomb_8000": hostile.png_bomb(), "camera_jpeg_4000x3000": camera.tobytes(),
             "camera_jpeg_4000x3000_full": camera.tobytes()}
    out: dict[str, object] = {}
    for name, data in cases.items():
        path = hostile.write(folder / name, data)
        full = ["full"] if name.endswith("_full") else []  # the peer: decoded at full size, the meter's check
        done = subprocess.run([sys.executable, "-c", PROBE, str(path), *full], capture_output=True, text=True,
                              check=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        out[name] = {"bytes": len(data), **json.loads(done.stdout)}
        print(f"decode {name}: {out[name]}", file=sys.stderr)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_figures(folder: Path, frames: int, attackers: int, pause: float) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")} | {
        "QC_DATA_DIR": str(folder / "data"), "PYTHONPATH": str(REPO)}
    qcline = [sys.executable, "-m", "api.cli"]
    subprocess.run([*qcline, "orders", "import", str(REPO / "api/demo/orders.yaml")], env=env, check=True,
                   capture_output=True)
    key = json.loads(subprocess.run([*qcline, "keys", "create", "--role", "camera", "--json"], env=env, check=True,
                                    capture_output=True, text=True).stdout)["key"]
    port = free_port()
    server = subprocess.Popen([*qcline, "serve", "--port", str(port), "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    image = (REPO / "api/demo/frames/scratches_100.jpg").read_bytes()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)

        def camera(client: httpx.Client, offset: int) -> float:
            times = []
            for i in range(frames):
                started = time.perf_counter()
                r = client.post(f"{base}/v1/frames", headers={"Authorization": f"Bearer {key}"},
                                data={"unit_id": f"B-{offset + i}", "order_id": "ORD-24-1001", "camera_id": "top"},
                                files={"image": ("f.jpg", image, "image/jpeg")})
                r.raise_for_status()
                times.append(time.perf_counter() - started)
            return statistics.median(times) * 1000

        with httpx.Client(timeout=60) as client:
            camera(client, 10_000)  # warm-up
            quiet = camera(client, 0)
            stop = folder / "stop"
            # attackers in their own processes: in this one they would compete with the camera for the GIL
            procs = [subprocess.Popen([sys.executable, "-c", ATTACKER, f"{base}/v1/orders", str(stop),
                                       str(pause)],
                                      stdout=subprocess.PIPE, text=True) for _ in range(attackers)]
            hostile.wait_for_attackers(stop, attackers)
            loaded = camera(client, 100_000)
            stop.touch()
            answers = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
        statuses = sorted({s for a in answers for s in a})
        return {"camera_p50_ms_quiet": round(quiet, 1), "camera_p50_ms_under_attack": round(loaded, 1),
                "ratio": round(loaded / quiet, 2), "attack_requests": sum(len(a) for a in answers),
                "attack_statuses": statuses}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--attackers", type=int, default=10)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between one attacker's requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result = {"decode": decode_figures(folder),
                  "service": service_figures(folder, args.frames, args.attackers, args.pause)}
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
