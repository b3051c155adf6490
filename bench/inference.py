"""Inference benchmark: the full station pipeline against its own engine, raw onnxruntime and ultralytics.

Prints one JSON line. Each part runs in its own subprocess (same model, images, batch and thread
setting) so thread pools and memory of one part never colour another:

* ``pipeline``: read file -> decode -> letterbox -> forward -> decode head + NMS -> verdict against an
  order profile -> unit roll-up -> batched write to a real SQLite (WAL) results log, flushed at the end,
  on the engine ``--engine`` / ``--precision`` choose (default ``auto``, as a station);
* ``engine``: that same engine's ``forward`` alone, on uint8 batches letterboxed before the clock starts
  (``vs_engine``: how much of the engine's speed the whole pipeline keeps);
* ``ort``: onnxruntime fp32 ``InferenceSession.run`` alone on float tensors prepared before the clock starts;
* ``ultralytics``: ``YOLO(model.onnx).predict`` on the same files, ``batch`` images per call;
* ``ultralytics_openvino``: ``YOLO(<dir>_openvino_model).predict``, ultralytics' own OpenVINO backend at its
  defaults (which are bf16 on a CPU with bf16 units). The package ships no ``.pt``, so the IR is made the way
  ultralytics' exporter ends, ``openvino.convert_model`` + ``save_model`` (fp32 weights), from the package's
  ONNX (the same weights), with the ``metadata.yaml`` ultralytics' exporter writes beside it;
* ``startup``: opening the package on the engine plus warm-up, cold (empty compiled-model cache) and again
  with the cache the first start left.

The pipeline runs ``Inspector.process`` as a station does by default: one batch at a time;
``--compare-overlap`` also runs its overlapped loop (``--depth`` batches in the detector while the batch before
is judged and recorded; ``QC_PIPELINE_OVERLAP=1`` on a station) in the same rounds (``pipeline_overlap_fps``).

``--single-thread`` adds frames/s on one engine thread (``fps_1_thread`` for the pipeline, ``engine_fps_1thread``).
``--rounds N`` runs every part N times in alternation and keeps each part's best round (a shared machine's load
changes from one part to the next); ``load`` is the 1-minute load average before and after the run.

Usage: python bench/inference.py [--images DIR] [--model PKG] [--peer-model PKG] [--batch 8] [--limit N] [--threads N]
       [--engine auto|onnxruntime|openvino] [--precision auto|fp32|bf16|int8] [--single-thread] [--rounds N]
       [--depth N] [--compare-overlap]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_IMAGES = ROOT.parent / "shared" / "datasets" / "neu-det" / "images"
DEFAULT_MODEL = ROOT / "models" / "neu-det-yolov8n"
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _images(folder: Path, limit: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    if not files:
        raise SystemExit(f"no images under {folder}")
    return files[:limit] if limit else files


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s() -> float:
    """CPU seconds of this process, every thread (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _detector(model: Path, batch: int, threads: int, engine: str, precision: str, cache: Path | None = None) -> Any:
    from inspection.detector import OnnxDetector

    return OnnxDetector.from_package(model, threads=threads or None, max_batch=batch, engine=engine,
                                     precision=precision, cache_dir=cache)


def part_pipeline(files: list[Path], model: Path, batch: int, threads: int, engine: str,
                  precision: str, *, overlap: bool = False) -> dict[str, Any]:
    from datetime import UTC, datetime

    from inspection.imageio import decode_image
    from inspection.pipeline import Inspector
    from inspection.profiles import InspectionProfile, Order, OrderBook
    from inspection.store.repository import ResultsStore
    from inspection.store.writer import BatchedResultWriter
    from inspection.types import Frame, FrameFailure

    detector = _detector(model, batch, threads, engine, precision)
    detector.warmup()
    profile = InspectionProfile.model_validate({"name": "bench", "default": {"confidence": 0.5, "review_from": 0.3},
                                                "required_views": ["top"]})
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore.open(f"sqlite:///{tmp}/bench.db", Path(tmp) / "frames")
        store.import_order_book(OrderBook(profiles={"bench": profile},
                                          orders=(Order(id="BENCH", profile="bench"),)))
        writer = BatchedResultWriter(store, batch_size=64)
        inspector = Inspector(detector, store, batch_size=batch, journal=writer,
                              inference_depth=int(os.environ.get("QC_BENCH_DEPTH", "1")))
        now = datetime.now(UTC)

        def frames() -> object:
            for i, path in enumerate(files):
                data = path.read_bytes()
                try:
                    yield Frame(decode_image(data), camera_id="top", unit_id=f"U{i}", order_id="BENCH",
                                captured_at=now, source=str(path), source_seq=i, data=data)
                except Exception as exc:
                    yield FrameFailure("top", f"U{i}", "BENCH", now, str(path), str(exc), i)

        start, cpu = time.perf_counter(), _cpu_s()
        inspector.process(frames(), overlap=overlap)  # type: ignore[arg-type]
        writer.close()
        elapsed, cpu = time.perf_counter() - start, _cpu_s() - cpu
        written = writer.stats.written
        store.close()
    return {"fps": len(files) / elapsed, "seconds": elapsed, "written": written, "peak_rss_mb": _peak_rss_mb(),
            "cpu_ms_per_frame": 1000 * cpu / len(files),
            "engine": detector.engine_name, "precision": detector.precision, "depth": inspector.inference_depth}


def part_pipeline_overlap(files: list[Path], model: Path, batch: int, threads: int, engine: str,
                          precision: str) -> dict[str, Any]:
    return part_pipeline(files, model, batch, threads, engine, precision, overlap=True)


def part_engine(files: list[Path], model: Path, batch: int, threads: int, engine: str,
                precision: str) -> dict[str, Any]:
    import cv2

    from inspection.detector import pre_process

    detector = _detector(model, batch, threads, engine, precision)
    detector.warmup()
    meta = detector.metadata
    images: list[Any] = [cv2.imread(str(p)) for p in files]
    batches = [pre_process(images[i:i + batch], meta.input_width, meta.input_height)[0]
               for i in range(0, len(images), batch)]
    start, cpu = time.perf_counter(), _cpu_s()
    for tensor in batches:
        detector.forward(tensor)
    elapsed, cpu = time.perf_counter() - start, _cpu_s() - cpu
    return {"fps": len(files) / elapsed, "seconds": elapsed, "peak_rss_mb": _peak_rss_mb(),
            "cpu_ms_per_frame": 1000 * cpu / len(files),
            "engine": detector.engine_name, "precision": detector.precision}


def part_startup(files: list[Path], model: Path, batch: int, threads: int, engine: str,
                 precision: str) -> dict[str, Any]:
    """Seconds from nothing to a warmed-up detector, with an empty compiled-model cache and then with the
    cache the first start wrote (each start in a fresh process, as a station restart is)."""
    with tempfile.TemporaryDirectory() as cache:
        seconds = []
        for _ in range(2):
            code = ("import json, sys, time; t = time.perf_counter(); a = json.loads(sys.argv[1]); "
                    "sys.path.insert(0, a['root']); from pathlib import Path; "
                    "from inspection.detector import OnnxDetector; "
                    "d = OnnxDetector.from_package(a['model'], threads=a['threads'], max_batch=a['batch'], "
                    "engine=a['engine'], precision=a['precision'], cache_dir=Path(a['cache'])); d.warmup(); "
                    "print(time.perf_counter() - t)")
            params = {"root": str(ROOT), "model": str(model), "threads": threads or None, "batch": batch,
                      "engine": engine, "precision": precision, "cache": cache}
            done = subprocess.run([sys.executable, "-c", code, json.dumps(params)], capture_output=True, text=True,
                                  check=True)
            seconds.append(float(done.stdout.strip().splitlines()[-1]))
    return {"cold_s": seconds[0], "cached_s": seconds[1]}


def part_ort(files: list[Path], model: Path, batch: int, threads: int, engine: str,
             precision: str) -> dict[str, Any]:
    import cv2
    import numpy as np
    import onnxruntime as ort

    from inspection.detector import pre_process
    from inspection.engines import to_network_input
    from inspection.model_package import ModelPackage

    meta = ModelPackage.load(model).metadata
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model / "model.onnx"), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images: list[Any] = [cv2.imread(str(p)) for p in files]
    tensors = [to_network_input(pre_process(images[i:i + batch], meta.input_width, meta.input_height)[0])
               for i in range(0, len(images), batch)]
    session.run(None, {name: tensors[0]})
    start = time.perf_counter()
    for tensor in tensors:
        session.run(None, {name: np.ascontiguousarray(tensor)})
    elapsed = time.perf_counter() - start
    return {"fps": len(files) / elapsed, "seconds": elapsed, "peak_rss_mb": _peak_rss_mb()}


def _openvino_ir(model: Path, folder: Path, batch: int) -> Path:
    """The package's ONNX as the ``<name>_openvino_model/`` folder ultralytics' exporter writes (IR + metadata)."""
    import openvino as ov
    import yaml

    from inspection.model_package import ModelPackage

    meta = ModelPackage.load(model).metadata
    out = folder / "model_openvino_model"
    out.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(model / "model.onnx")), str(out / "model.xml"), compress_to_fp16=False)
    (out / "metadata.yaml").write_text(yaml.safe_dump({
        "description": meta.name, "stride": 32, "task": "detect", "batch": batch, "channels": 3,
        "imgsz": [meta.input_height, meta.input_width], "names": dict(enumerate(meta.classes)),
        "args": {"batch": batch, "dynamic": True, "half": False, "int8": False, "nms": False}}))
    return out


def part_ultralytics_openvino(files: list[Path], model: Path, batch: int, threads: int, engine: str,
                              precision: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        weights = _openvino_ir(model, Path(tmp), batch)
        return part_ultralytics(files, model, batch, threads, engine, precision, weights=weights)


def part_ultralytics(files: list[Path], model: Path, batch: int, threads: int, engine: str, precision: str,
                     weights: Path | None = None) -> dict[str, Any]:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="qcline-yolo-"))
    from ultralytics import YOLO

    from inspection.model_package import ModelPackage

    meta = ModelPackage.load(model).metadata
    yolo = YOLO(str(weights or model / "model.onnx"), task="detect")
    kwargs: dict[str, Any] = {"imgsz": meta.input_width, "conf": meta.thresholds.confidence, "iou": meta.thresholds.iou,
              "verbose": False, "device": "cpu", "rect": False}
    yolo.predict([str(files[0])], **kwargs)
    start = time.perf_counter()
    for i in range(0, len(files), batch):
        yolo.predict([str(p) for p in files[i:i + batch]], **kwargs)
    elapsed = time.perf_counter() - start
    return {"fps": len(files) / elapsed, "seconds": elapsed, "peak_rss_mb": _peak_rss_mb()}


PARTS: dict[str, Callable[..., dict[str, Any]]] = {
    "pipeline": part_pipeline, "pipeline_overlap": part_pipeline_overlap,
    "engine": part_engine, "ort": part_ort, "ultralytics": part_ultralytics,
    "ultralytics_openvino": part_ultralytics_openvino, "startup": part_startup}


PEER_PARTS = ("ort", "ultralytics", "ultralytics_openvino")
"""The parts that measure other software: they run ``--peer-model`` (an int8 package's float source, say)."""


def _run(part: str, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    model = (args.peer_model or args.model) if part in PEER_PARTS else args.model
    cmd = [sys.executable, __file__, "--part", part, "--images", str(args.images), "--model", str(model),
           "--batch", str(args.batch), "--limit", str(args.limit), "--threads", str(threads),
           "--engine", args.engine, "--precision", args.precision]
    env = {**os.environ, "QC_BENCH_DEPTH": str(args.depth)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{part} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    from inspection.engines import decline_openvino_telemetry

    decline_openvino_telemetry()  # every part, the peers' OpenVINO included, runs offline
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--peer-model", type=Path, default=None,
                        help="package the peers (onnxruntime fp32, ultralytics) run (default: --model); for an "
                             "int8 --model, its float source: the peers then run what a user would otherwise run")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: the engine's default)")
    parser.add_argument("--engine", default="auto", help="the pipeline's engine (auto, onnxruntime, openvino)")
    parser.add_argument("--precision", default="auto", help="the pipeline's precision (auto, fp32, bf16, int8)")
    parser.add_argument("--single-thread", action="store_true", help="also measure pipeline and engine on 1 thread")
    parser.add_argument("--rounds", type=int, default=1, help="run every part N times, alternating; best counts")
    parser.add_argument("--depth", type=int, default=1, help="pipeline: batches in the detector at once (default 1)")
    parser.add_argument("--compare-overlap", action="store_true",
                        help="also run the pipeline's overlapped loop (pipeline_overlap_fps)")
    parser.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.images.is_dir():
        raise SystemExit(f"--images {args.images} is not a folder")
    files = _images(args.images, args.limit)
    if args.part:
        result = PARTS[args.part](files, args.model, args.batch, args.threads, args.engine, args.precision)
        print(json.dumps(result))
        return
    # On a shared machine the load changes from one part to the next: with --rounds N every part runs N times,
    # in alternation, and each part's best round counts (all rounds are listed under "rounds").
    load_before = os.getloadavg()[0]
    parts: tuple[str, ...] = ("pipeline", "engine", "ort", "ultralytics", "ultralytics_openvino", "startup")
    if args.compare_overlap:
        parts = ("pipeline_overlap", *parts)
    rounds: dict[str, list[dict[str, Any]]] = {part: [] for part in parts}
    for _ in range(max(1, args.rounds)):
        for part in parts:
            rounds[part].append(_run(part, args, args.threads))
    r = {part: max(runs, key=lambda x: x.get("fps", -x.get("cached_s", 0.0))) for part, runs in rounds.items()}
    r["startup"] = {"cold_s": min(x["cold_s"] for x in rounds["startup"]),
                    "cached_s": min(x["cached_s"] for x in rounds["startup"])}
    pipeline = r["pipeline"]["fps"]
    line: dict[str, Any] = {
        "engine": r["pipeline"]["engine"],
        "precision": r["pipeline"]["precision"],
        "pipeline_fps": round(pipeline, 2),
        "engine_fps": round(r["engine"]["fps"], 2),
        "ort_fps": round(r["ort"]["fps"], 2),
        "ultralytics_fps": round(r["ultralytics"]["fps"], 2),
        "ultralytics_openvino_fps": round(r["ultralytics_openvino"]["fps"], 2),
        "vs_engine": round(pipeline / r["engine"]["fps"], 3),
        "vs_ort": round(pipeline / r["ort"]["fps"], 3),
        "vs_ultralytics": round(pipeline / r["ultralytics"]["fps"], 3),
        "vs_ultralytics_openvino": round(pipeline / r["ultralytics_openvino"]["fps"], 3),
        "peak_rss_mb": round(r["pipeline"]["peak_rss_mb"], 1),
        "startup_cold_s": round(r["startup"]["cold_s"], 3),
        "startup_cached_s": round(r["startup"]["cached_s"], 3),
    }
    # CPU per frame (every thread, user + system): on a machine other work shares, frames/s follow the load, but
    # the CPU one frame costs hardly does; pipeline_cpu_ms - engine_cpu_ms is what decoding, letterbox, judging
    # and the results log add to the forward pass.
    line["pipeline_cpu_ms"] = round(r["pipeline"]["cpu_ms_per_frame"], 2)
    line["engine_cpu_ms"] = round(r["engine"]["cpu_ms_per_frame"], 2)
    if args.compare_overlap:
        line["pipeline_overlap_cpu_ms"] = round(r["pipeline_overlap"]["cpu_ms_per_frame"], 2)
        line["pipeline_overlap_fps"] = round(r["pipeline_overlap"]["fps"], 2)
        line["overlap_vs_engine"] = round(r["pipeline_overlap"]["fps"] / r["engine"]["fps"], 3)
    if args.single_thread:
        line["fps_1_thread"] = round(max(_run("pipeline", args, 1)["fps"] for _ in range(args.rounds)), 2)
        line["engine_fps_1thread"] = round(max(_run("engine", args, 1)["fps"] for _ in range(args.rounds)), 2)
    if args.rounds > 1:
        line["rounds"] = {part: [round(x["fps"], 1) for x in runs]
                          for part, runs in rounds.items() if part != "startup"}
    line.update({"batch": args.batch, "depth": r["pipeline"]["depth"], "images": len(files),
                 "threads": args.threads or "engine-default",
                 "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                 "model": str(args.model.name), "results_written": r["pipeline"]["written"]})
    if args.peer_model:
        line["peer_model"] = str(args.peer_model.name)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
