"""Group commit benchmark: durable-before-acknowledged throughput of the results writer.

N closed-loop "cameras" (threads) each submit a frame result and wait for its commit future before sending the
next, exactly as a camera waits for its 200. Measured twice in the same run on the same disk: with group commit
(``batch_size=64``: whatever is queued goes in one transaction, one fsync) and with one transaction per result
(``batch_size=1``, the peer: what answering after a per-frame commit would cost). SQLite in WAL with
``synchronous=FULL`` (the shipped setting), or PostgreSQL with ``--postgres URL``: a server URL; the bench
creates a throw-away database on it and drops it afterwards. Prints one JSON line: results/s of each, their
ratio, mean group size, p50/p99 wait for the commit.

Usage: python bench/group_commit.py [--cameras 8] [--seconds 5] [--postgres postgresql://postgres@127.0.0.1/test]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


PROFILE = {"name": "bench", "default": {"confidence": 0.5}, "required_views": ["top"]}


def frame_result(unit_id: str, seq: int) -> object:
    """A PASS result of one frame of ``unit_id`` (a distinct 16x16 image), judged against the bench profile."""
    from inspection.profiles import InspectionProfile
    from inspection.types import Detections, Frame, FrameResult, FrameVerdict, Verdict

    image = np.full((16, 16, 3), 90, np.uint8)
    image.reshape(-1)[:8] = np.frombuffer(seq.to_bytes(8, "little"), np.uint8)
    now = datetime.now(UTC)
    frame = Frame(image=image, camera_id="top", unit_id=unit_id, order_id="ORD-B", captured_at=now, source="bench")
    verdict = FrameVerdict(unit_id=unit_id, order_id="ORD-B", camera_id="top", verdict=Verdict.PASS, findings=(),
                           reasons=(), model_sha256="m" * 64,
                           profile_hash=InspectionProfile.model_validate(PROFILE).content_hash, captured_at=now,
                           frame_sha256=frame.sha256)
    return FrameResult(frame, Detections.empty(["scratch"]), verdict)


@contextlib.contextmanager
def throwaway_postgres(server: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server)
    name = f"qcline_bench_{secrets.token_hex(6)}"
    with psycopg.connect(base.set(drivername="postgresql").render_as_string(hide_password=False),
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_level(url: str, folder: Path, batch_size: int, cameras: int, seconds: float) -> dict[str, float]:
    from inspection.profiles import OrderBook
    from inspection.store.repository import ResultsStore
    from inspection.store.writer import BatchedResultWriter

    store = ResultsStore.open(url, folder / "frames")
    store.import_order_book(OrderBook.model_validate({"profiles": {"bench": PROFILE},
                                                      "orders": [{"id": "ORD-B", "profile": "bench"}]}))
    writer = BatchedResultWriter(store, batch_size=batch_size, keep_pass_frames=True)
    stop = threading.Event()
    waits: list[list[float]] = [[] for _ in range(cameras)]
    tag = f"{batch_size}-{time.monotonic_ns()}"

    def camera(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.perf_counter()
            writer.submit(frame_result(f"B{tag}-{index}-{n}", n * 1000 + index)).result()  # type: ignore[arg-type]
            waits[index].append(time.perf_counter() - started)

    threads = [threading.Thread(target=camera, args=(i,), daemon=True) for i in range(cameras)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - start
    stats = writer.stats
    writer.close()
    store.close()
    flat = [w for ws in waits for w in ws]
    return {"results_per_s": round(len(flat) / elapsed, 1),
            "mean_group": round(stats.written / max(1, stats.batches), 2),
            "p50_ms": round(1000 * (_percentile(flat, 50) or 0), 2),
            "p99_ms": round(1000 * (_percentile(flat, 99) or 0), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server URL (a throw-away database is created "
                        "on it); default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qcline-gc-") as tmp:
        figures = {}
        for name, batch in (("group_commit", 64), ("commit_per_result", 1)):
            folder = Path(tmp) / name
            print(f"[bench/group_commit] {name} ...", file=sys.stderr)
            with (throwaway_postgres(args.postgres) if args.postgres
                  else contextlib.nullcontext(f"sqlite:///{folder / 'qcline.db'}")) as url:
                figures[name] = run_level(url, folder, batch, args.cameras, args.seconds)
    ratio = figures["group_commit"]["results_per_s"] / max(1e-9, figures["commit_per_result"]["results_per_s"] or 0)
    print(json.dumps({"cameras": args.cameras, "backend": "postgresql" if args.postgres else "sqlite-wal-full",
                      **figures, "ratio_group_vs_per_result": round(ratio, 2),
                      "machine": f"{os.cpu_count()} cpus"}))


if __name__ == "__main__":
    main()
