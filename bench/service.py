"""Service benchmark: the HTTP service (``qcline serve``) under N concurrent cameras against the in-process pipeline.

Prints one JSON line on stdout; progress goes to stderr.

Method:

* ``inprocess`` baseline (own subprocess, run before the server starts so nothing else competes for the
  CPU): the station pipeline ``Inspector`` with the same model, batch size and thread setting as the
  server, fed frames decoded from the same JPEG bytes (decoding counts, as the service decodes every
  upload), judged against the demo order book, results written through the same kind of batched SQLite
  (WAL) store sink as ``bench/inference.py`` and the service use; frames per second to the last flush.
* ``service``: the real service as a subprocess (``python -m api.cli serve``) on a free loopback port,
  with a fresh temporary data dir, the bundled default model, the demo orders imported and a camera key
  created through the CLI. Each level of N cameras runs N closed-loop clients (asyncio + httpx, one
  connection each): a camera posts a real NEU-DET JPEG as multipart ``POST /v1/frames`` and sends its
  next frame as soon as the answer arrives, cycling through its share of the images. Every request has
  its own unit id (order ``ORD-24-1003``, whose only required view is ``top``), so no frame is ever
  deduplicated and every frame completes its unit, exactly as in the baseline. A level warms up for
  ``--warmup`` seconds, then measures for ``--seconds``: frames/s (answers received in the window),
  p50/p99 latency of requests sent and answered in the window, errors (non-200, no ``verdict``, or a
  transport error), and from ``GET /metrics`` (difference across the window) the mean batch size, the
  mean forward-pass time and queue wait, plus the CPU used by server and client (cores, from /proc and
  ``time.process_time``) and by every other process of the machine (``other_cpu``: anything else running
  makes the figures unclean; a warning goes to stderr above 0.2 cores).

Reading it: ``mean_forward_ms`` is the server's ``qcline_inference_batch_seconds`` (forward pass plus judging
of one batch); ``inference_busy`` near 1 means the batcher thread is the bottleneck. Closed-loop cameras
settle into two halves that alternate (one half's batch runs while the other half's next frames arrive),
so expect ``mean_batch`` near N/2, capped at ``--batch``; by Little's law p50 is then about N / fps.

Caveats: client and server share the machine's CPUs (the client is light, about 0.05 cores measured on a
2-core box: see ``client_cpu``), so the service's figures are a lower bound of what it does when the cameras
are other machines. Loopback hides network latency. The server's model poller and metrics scrape (two per
level) add a little load that the baseline does not have. Other processes (a test run) skew everything:
check ``other_cpu`` and ``inprocess_other_cpu``.

Usage: python bench/service.py [--cameras 1,4,8,16] [--seconds 15] [--warmup 3] [--images N] [--batch 8]
                               [--batch-wait-ms 4] [--threads 0] [--data ../shared/datasets/neu-det]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drills.load import BOUNDARY, ORDER_ID, VIEW  # noqa: E402  (after sys.path; shared with the drills)
from drills.load import images as _images  # noqa: E402
from drills.load import multipart as _multipart  # noqa: E402
from drills.load import percentile as _percentile  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "neu-det"
DEMO_ORDERS = ROOT / "api" / "demo" / "orders.yaml"
METRICS = ("qcline_batch_size", "qcline_inference_batch_seconds", "qcline_queue_wait_seconds")


def log(message: str) -> None:
    sys.stderr.write(f"[bench/service] {message}\n")
    sys.stderr.flush()




# -- in-process baseline --------------------------------------------------------------------------------

def part_inprocess(files: list[Path], batch: int, threads: int, min_frames: int,
                   model: Path | None = None) -> dict[str, float | None]:
    """The pipeline alone: decode (in the prefetch thread, as ``Inspector.process`` does) -> detect -> judge
    -> batched SQLite writes, on ``model`` (default: the bundled one); frames per second including the final
    flush."""
    from datetime import UTC, datetime

    from inspection.detector import OnnxDetector
    from inspection.imageio import decode_image
    from inspection.pipeline import Inspector
    from inspection.profiles import load_order_book
    from inspection.settings import DEFAULT_MODEL_DIR
    from inspection.store.repository import ResultsStore
    from inspection.store.writer import BatchedResultWriter
    from inspection.types import Frame

    blobs = [p.read_bytes() for p in files]  # the service has the bytes in memory too: no file reads timed
    count = max(len(blobs), min_frames)
    detector = OnnxDetector.from_package(model or DEFAULT_MODEL_DIR, threads=threads or None, max_batch=batch)
    detector.warmup()
    with tempfile.TemporaryDirectory(prefix="qcline-bench-") as tmp:
        store = ResultsStore.open(f"sqlite:///{tmp}/qcline.db", Path(tmp) / "frames")
        store.import_order_book(load_order_book(DEMO_ORDERS))
        writer = BatchedResultWriter(store, batch_size=64)  # the service's default write_batch
        inspector = Inspector(detector, store, batch_size=batch, journal=writer)

        def frames() -> Any:
            for i in range(count):
                data = blobs[i % len(blobs)]
                yield Frame(decode_image(data), camera_id=VIEW, unit_id=f"P-{i}", order_id=ORDER_ID,
                            captured_at=datetime.now(UTC), source="bench", source_seq=i, data=data)

        start, cpu, busy = time.perf_counter(), time.process_time(), _system_busy_seconds()
        summary = inspector.process(frames())
        writer.close()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        after = _system_busy_seconds()
        other = (after - busy - cpu) / elapsed if after is not None and busy is not None else None
        written = writer.stats.written
        store.close()
    return {"fps": count / elapsed, "seconds": elapsed, "frames": count, "judged": summary.frames,
            "written": written, "cpu": cpu / elapsed, "other_cpu": other}


# -- the service ----------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"qcline {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _system_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy since boot, all cores (Linux /proc/stat), None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    key: str
    log_path: Path

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log("server did not stop on SIGINT; sending SIGTERM")
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        return self.process.returncode


def start_server(data_dir: Path, batch: int, batch_wait_ms: float | None, threads: int,
                 model: Path | None = None) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}  # nothing stray from the shell
    env |= {"QC_DATA_DIR": str(data_dir), "QC_BATCH_SIZE": str(batch), "QC_THREADS": str(threads),
            "QC_METRICS_PUBLIC": "1"}  # its own throw-away server on loopback: the scrape needs no key
    if batch_wait_ms is not None:
        env["QC_BATCH_WAIT_MS"] = str(batch_wait_ms)
    if model is not None:
        env["QC_MODEL_PATH"] = str(model)
    _cli(["orders", "import", str(DEMO_ORDERS), "--data-dir", str(data_dir)], env)
    key = json.loads(_cli(["keys", "create", "--role", "camera", "--name", "bench", "--json", "--data-dir",
                           str(data_dir)], env).strip().splitlines()[-1])["key"]
    port = _free_port()
    log_path = data_dir.parent / "server.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
             str(data_dir), "--log-level", "warning"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(process, f"http://127.0.0.1:{port}", key, log_path)


def wait_ready(server: Server, timeout: float = 180.0) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise SystemExit(f"server exited ({server.process.returncode}) before ready:\n{server.log_tail()}")
            try:
                response = client.get("/readyz")
                if response.status_code == 200:
                    state: dict[str, Any] = response.json()
                    return state
            except httpx.TransportError:
                pass
            time.sleep(0.25)
    raise SystemExit(f"server not ready after {timeout:.0f} s:\n{server.log_tail()}")


def _metric_totals(text: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name in METRICS:
        for part in ("sum", "count"):
            match = re.search(rf"^{name}_{part} (\S+)$", text, re.MULTILINE)
            totals[f"{name}_{part}"] = float(match.group(1)) if match else 0.0
    return totals



@dataclass
class LevelRecord:
    latencies_ms: list[float] = field(default_factory=list)
    answered: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


async def run_level(server: Server, bodies: list[tuple[bytes, bytes]], cameras: int, warmup: float,
                    seconds: float) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    record = LevelRecord()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    window_start, window_end = t0 + warmup, t0 + warmup + seconds

    async def camera(index: int) -> None:
        share = bodies[index::cameras] or bodies
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits, timeout=60.0) as client:
            i = 0
            while loop.time() < window_end:
                head, tail = share[i % len(share)]
                body = head + f"B{cameras}-{index}-{i}".encode() + tail
                i += 1
                sent = loop.time()
                problem = ""
                try:
                    response = await client.post("/v1/frames", content=body)
                    if response.status_code != 200:
                        problem = f"HTTP {response.status_code}: {response.text[:200]}"
                    elif "verdict" not in response.json():
                        problem = "answer without verdict"
                except (httpx.HTTPError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                done = loop.time()
                if window_start <= done <= window_end:
                    if problem:
                        record.errors += 1
                        if len(record.error_samples) < 3:
                            record.error_samples.append(problem)
                    else:
                        record.answered += 1
                        if sent >= window_start:
                            record.latencies_ms.append((done - sent) * 1000)
                if problem:
                    await asyncio.sleep(0.01)  # do not spin on a refusing server

    async def scrape(client: httpx.AsyncClient) -> tuple[dict[str, float], float | None, float, float | None]:
        response = await client.get("/metrics")
        return (_metric_totals(response.text), _cpu_seconds(server.process.pid), time.process_time(),
                _system_busy_seconds())

    async with httpx.AsyncClient(base_url=server.url, timeout=30.0) as probe:
        tasks = [asyncio.create_task(camera(i)) for i in range(cameras)]
        await asyncio.sleep(max(0.0, window_start - loop.time()))
        before = await scrape(probe)
        await asyncio.sleep(max(0.0, window_end - loop.time()))
        after = await scrape(probe)
        await asyncio.gather(*tasks)

    delta = {k: after[0][k] - before[0][k] for k in after[0]}

    def mean(name: str, scale: float = 1.0) -> float | None:
        count = delta[f"{name}_count"]
        return round(delta[f"{name}_sum"] / count * scale, 2) if count else None

    lat = record.latencies_ms
    server_cpu = after[1] - before[1] if after[1] is not None and before[1] is not None else None
    client_cpu = after[2] - before[2]
    busy = after[3] - before[3] if after[3] is not None and before[3] is not None else None
    other_cpu = busy - server_cpu - client_cpu if busy is not None and server_cpu is not None else None
    result: dict[str, Any] = {
        "fps": round(record.answered / seconds, 2),
        "p50_ms": round(_percentile(lat, 50), 1) if lat else None,
        "p99_ms": round(_percentile(lat, 99), 1) if lat else None,
        "errors": record.errors,
        "frames": record.answered,
        "mean_batch": mean("qcline_batch_size"),
        "mean_forward_ms": mean("qcline_inference_batch_seconds", 1000),
        "mean_queue_wait_ms": mean("qcline_queue_wait_seconds", 1000),
        "inference_busy": round(delta["qcline_inference_batch_seconds_sum"] / seconds, 3),
        "server_cpu": round(server_cpu / seconds, 2) if server_cpu is not None else None,
        "client_cpu": round(client_cpu / seconds, 2),
        "other_cpu": round(other_cpu / seconds, 2) if other_cpu is not None else None,
    }
    if record.error_samples:
        result["error_samples"] = record.error_samples
    return result


# -- driver ---------------------------------------------------------------------------------------------

def _run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--part", "inprocess", "--data", str(args.data), "--images", str(args.images),
           "--batch", str(args.batch), "--threads", str(args.threads), "--min-baseline-frames",
           str(args.min_baseline_frames)] + (["--model", str(args.model)] if args.model else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"in-process baseline failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _warn_if_busy(what: str, other_cpu: float | None) -> None:
    if other_cpu is not None and other_cpu > 0.2:
        log(f"warning: other processes used {other_cpu:.2f} cores during {what}: its figures are not clean")


def main() -> None:
    from api.config import ServiceSettings

    defaults = ServiceSettings.model_fields
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", default="1,4,8,16", help="comma-separated camera counts (default 1,4,8,16)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds at the start of each level")
    parser.add_argument("--images", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--batch", type=int, default=int(defaults["batch_size"].default),
                        help="frames per forward pass (server QC_BATCH_SIZE and baseline)")
    parser.add_argument("--batch-wait-ms", type=float, default=float(defaults["batch_wait_ms"].default),
                        help="server QC_BATCH_WAIT_MS (dynamic batching wait)")
    parser.add_argument("--threads", type=int, default=0,
                        help="onnxruntime intra-op threads, server and baseline (0: onnxruntime's choice)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NEU-DET folder (with images/)")
    parser.add_argument("--model", type=Path, default=None,
                        help="model package the server and the baseline run (default: the bundled one)")
    parser.add_argument("--min-baseline-frames", type=int, default=400, help=argparse.SUPPRESS)
    parser.add_argument("--skip-baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["inprocess"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.stderr.write(f"dataset folder {args.data} is missing (see ../shared/datasets/README.md; pass --data)\n")
        raise SystemExit(2)
    try:
        levels = [int(n) for n in args.cameras.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--cameras {args.cameras!r} is not a comma-separated list of integers")
    if not levels or min(levels) < 1:
        parser.error("--cameras needs positive counts")
    files = _images(args.data, args.images)
    if args.part == "inprocess":
        print(json.dumps(part_inprocess(files, args.batch, args.threads, args.min_baseline_frames, args.model)))
        return

    baseline: dict[str, Any] = {"fps": None}
    if not args.skip_baseline:
        log(f"in-process baseline on {len(files)} images, batch {args.batch} ...")
        baseline = _run_baseline(args)
        log(f"in-process: {baseline['fps']:.1f} frames/s over {baseline['frames']} frames, "
            f"{baseline['cpu']:.2f} cores")
        _warn_if_busy("the in-process baseline", baseline["other_cpu"])

    bodies = [_multipart(p.read_bytes()) for p in files]
    cameras: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="qcline-bench-service-") as tmp:
        server = start_server(Path(tmp) / "data", args.batch, args.batch_wait_ms, args.threads, args.model)
        try:
            state = wait_ready(server)
            log(f"server ready at {server.url} (model {state.get('name')}, {str(state.get('sha256'))[:12]})")
            for n in levels:
                result = asyncio.run(run_level(server, bodies, n, args.warmup, args.seconds))
                cameras[str(n)] = result
                log(f"{n:>3} cameras: {json.dumps(result)}")
                _warn_if_busy(f"the {n}-camera level", result["other_cpu"])
                if server.process.poll() is not None:
                    raise SystemExit(f"server died during the {n}-camera level:\n{server.log_tail()}")
        finally:
            code = server.stop()
            log(f"server stopped (exit code {code})")

    at8 = cameras.get("8", {})
    fps_in = baseline.get("fps")
    print(json.dumps({
        "cameras": cameras,
        "inprocess_fps": round(fps_in, 2) if fps_in else None,
        "inprocess_cpu": round(baseline["cpu"], 2) if fps_in else None,
        "inprocess_other_cpu": round(baseline["other_cpu"], 2) if baseline.get("other_cpu") is not None else None,
        "vs_inprocess_at_8": round(at8["fps"] / fps_in, 3) if at8 and fps_in else None,
        "p99_over_p50_at_8": round(at8["p99_ms"] / at8["p50_ms"], 2) if at8.get("p50_ms") else None,
        "batch": args.batch,
        "batch_wait_ms": args.batch_wait_ms,
        "threads": args.threads or "engine-default",
        "images": len(files),
        "seconds_per_level": args.seconds,
        "machine": f"{os.cpu_count()} cpus",
        "note": "client (asyncio+httpx, one process) and server share these cpus; loopback HTTP",
    }))


if __name__ == "__main__":
    main()
