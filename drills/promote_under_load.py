"""Drill: promote a new champion and roll it back, several times, while cameras stream; no request may fail.

A real ``qcline serve`` follows the registry's champion. The bundled ``models/neu-det-yolov8n`` is
registered and made champion (A); a copy of it whose ONNX file carries one more metadata entry (same
weights, different bytes, so a different sha256) is registered as B. Under ``--cameras`` cameras, each
cycle runs ``qcline models promote B --force --reason ...`` and then ``qcline models rollback --reason ...``
(the CLI, as an engineer would), waiting each time until every camera's answers carry the new model's
sha256.

Figures (one JSON line): ``failed_requests`` (attempts not answered 200: must be 0), per camera how many
model changes it saw (``changes_per_camera``; each camera must see every one: ``2 * cycles``), the
swap delay from the CLI command to the first and to the last camera's answer from the new model,
and the acknowledged frames missing from / duplicated in the database (0 / 0).

Usage: python -m drills.promote_under_load [--cycles 3] [--cameras 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from drills import _harness as h

log = logging.getLogger("drills.promote_under_load")
BUNDLED = h.ROOT / "models" / "neu-det-yolov8n"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def variant_package(source: Path, target: Path, note: str) -> str:
    """Copy a model package; the copy's ONNX gets one more ``metadata_props`` entry (ModelProto field 14).

    Protobuf messages concatenate: appending a field to the serialized model adds it, so the weights and the
    graph are untouched while the file's sha256 changes. ``metadata.json`` gets the new sha256 and name.
    Returns the new sha256.
    """
    from inspection.hashing import sha256_file

    shutil.copytree(source, target)
    entry = _field(1, b"qcline_drill") + _field(2, note.encode())
    with (target / "model.onnx").open("ab") as f:
        f.write(_field(14, entry))
    sha = sha256_file(target / "model.onnx")
    meta_path = target / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = sha
    meta["name"] = f"{meta.get('name', 'model')}-drill"
    meta_path.write_text(json.dumps(meta, indent=2))
    return sha


def _wait_all_on(fleet: h.CameraFleet, sha: str, since: float, timeout_s: float) -> tuple[float | None, float | None]:
    """Seconds after ``since`` until the first and until the last camera answered with model ``sha``."""
    deadline = since + timeout_s
    first: float | None = None
    while time.monotonic() < deadline:
        per_camera: list[float | None] = []
        for records in fleet.records:
            at = next((r.acked_at for r in records
                       if r.acked and r.model_sha256 == sha and (r.acked_at or 0) >= since), None)
            per_camera.append(at)
        seen = [t for t in per_camera if t is not None]
        if seen and first is None:
            first = min(seen) - since
        if len(seen) == len(per_camera):
            return first, max(seen) - since
        time.sleep(0.1)
    return first, None


def run(*, cycles: int = 3, cameras: int = 8, seed: int = 1, warm_s: float = 3.0, hold_s: float = 2.0,
        swap_timeout_s: float = 60.0, images: int = 64, keep: bool = False) -> dict[str, Any]:
    with h.workdir("qcline-drill-promote-", keep) as tmp:
        station = h.Station(tmp, extra_env={"QC_MODEL_POLL_S": "0.5"})
        station.prepare()
        sha_b = variant_package(BUNDLED, tmp / "model-b", f"drill copy {seed}")
        a = station.cli_json("models", "register", str(BUNDLED))
        if a.get("stage") != "champion":  # a fresh install already has the bundled model as its champion
            station.cli_json("models", "promote", str(a["id"]), "--force", "--reason", "drill: baseline champion")
        b = station.cli_json("models", "register", str(tmp / "model-b"))
        sha_a = str(a["sha256"])
        assert b["sha256"] == sha_b
        first_start = station.start()
        fleet = h.CameraFleet(station.url, station.camera_key, cameras, h.image_files(images, seed=seed), seed=seed,
                              give_up_s=swap_timeout_s)
        swaps: list[dict[str, Any]] = []
        try:
            fleet.start()
            time.sleep(warm_s)
            for n in range(cycles):
                for action, target in (("promote", sha_b), ("rollback", sha_a)):
                    if action == "promote":
                        args = ["models", "promote", str(b["id"]), "--force", "--reason", f"drill cycle {n + 1}"]
                    else:
                        args = ["models", "rollback", "--reason", f"drill cycle {n + 1}"]
                    station.cli_json(*args)
                    done = time.monotonic()
                    first, last = _wait_all_on(fleet, target, done, swap_timeout_s)
                    swaps.append({"action": action, "first_camera_s": _r(first), "all_cameras_s": _r(last)})
                    log.info("cycle %d %s: first camera after %s s, all after %s s", n + 1, action, _r(first), _r(last))
                    time.sleep(hold_s)
        finally:
            fleet.stop()
            station.stop()
        records = fleet.all_records()
        figures = h.final_audit(station.store_url, fleet)
    changes = []
    for per in fleet.records:
        models = [r.model_sha256 for r in per if r.acked]
        changes.append(sum(1 for x, y in itertools.pairwise(models) if x != y))
    seen = h.summarize(records)
    failed = seen["attempts"] - seen["attempts_by_status"].get("200", 0)
    expected = 2 * cycles
    all_seen = all(c >= expected for c in changes) and all(s["all_cameras_s"] is not None for s in swaps)
    slowest = [s["all_cameras_s"] for s in swaps if s["all_cameras_s"] is not None]
    return {
        "drill": "promote_under_load",
        "ok": failed == 0 and all_seen and figures["missing"] == 0 and figures["duplicated"] == 0,
        "failed_requests": failed,
        "cameras_saw_every_change": all_seen,
        "changes_per_camera": changes,
        "expected_changes": expected,
        "cycles": cycles,
        "cameras": cameras,
        "requests": seen["attempts"],
        "acknowledged": figures["acknowledged"],
        "missing": figures["missing"],
        "duplicated": figures["duplicated"],
        **{k: figures[k] for k in h.STORE_FACTS},
        "swap_all_cameras_s_max": max(slowest) if slowest else None,
        "swaps": swaps,
        "error_samples": h.error_samples(records),
        "first_start_s": round(first_start, 2),
        "model_poll_s": 0.5,
        "machine": f"{os.cpu_count()} cpus, service and cameras on one host (loopback)",
    }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=3, help="promote + rollback cycles")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hold-s", type=float, default=2.0, help="load on each model after every camera saw it")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.cameras < 1:
        parser.error("--cycles and --cameras must be >= 1")
    h.setup_logging(args.verbose)
    return h.main_guard(lambda: run(
        cycles=args.cycles, cameras=args.cameras, seed=args.seed, hold_s=args.hold_s, keep=args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
