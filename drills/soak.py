"""Drill: cameras stream for N minutes; the service's memory and latency must stay flat.

A real ``qcline serve`` (SQLite in its own data dir) under ``--cameras`` cameras for ``--minutes``. Every
``--sample-s`` seconds the drill samples the service process's RSS and the p99 latency of the requests
answered in that window. The first ``--warmup-s`` seconds (model load, first allocations, SQLite cache
growth) are sampled but left out of the fits.

Figures (one JSON line): the least-squares slope of RSS (MB/min) and of p99 (ms/min), their start and end
values (the mean of the first and of the last three fitted samples), frames/s, failed requests, and the
acknowledged frames missing from / duplicated in the database at the end (0 / 0). Flat means a slope
near 0 relative to the values; a leak shows as an RSS slope that does not fall off with longer runs.

Usage: python -m drills.soak --minutes 10 [--cameras 8] [--sample-s 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from drills import _harness as h

log = logging.getLogger("drills.soak")


def run(*, minutes: float = 10.0, cameras: int = 8, sample_s: float = 5.0, warmup_s: float = 10.0, seed: int = 1,
        images: int = 64, keep: bool = False) -> dict[str, Any]:
    with h.workdir("qcline-drill-soak-", keep) as tmp:
        station = h.Station(tmp)
        station.prepare()
        first_start = station.start()
        pid = station.pid
        assert pid is not None
        fleet = h.CameraFleet(station.url, station.camera_key, cameras, h.image_files(images, seed=seed), seed=seed,
                              give_up_s=30.0, drain_s=30.0)
        samples: list[dict[str, float | None]] = []
        try:
            fleet.start()
            t0 = time.monotonic()
            end = t0 + minutes * 60
            window = t0
            while time.monotonic() < end and station.pid is not None:
                time.sleep(min(sample_s, max(0.0, end - time.monotonic())))
                now = time.monotonic()
                attempts = fleet.attempts_between(window, now)
                ok = [a.seconds * 1000 for a in attempts if a.status == 200]
                samples.append({
                    "t_min": (now - t0) / 60,
                    "rss_mb": h.rss_mb(pid),
                    "p99_ms": h.percentile(ok, 99) if ok else None,
                    "fps": len(ok) / (now - window) if now > window else None,
                    "failed": float(len(attempts) - len(ok)),
                })
                window = now
                last = samples[-1]
                log.debug("t=%.1f min rss=%s MB p99=%s ms", last["t_min"], last["rss_mb"], last["p99_ms"])
            died = station.pid is None
            if died:
                log.error("the service died during the soak:\n%s", station.log_tail())
        finally:
            fleet.stop()
            station.stop()
        records = fleet.all_records()
        figures = h.final_audit(station.store_url, fleet)
    seen = h.summarize(records)
    fitted = [s for s in samples if (s["t_min"] or 0) * 60 >= warmup_s] or samples

    def fit(name: str) -> dict[str, float | None]:
        points = [(s["t_min"], s[name]) for s in fitted if s[name] is not None and s["t_min"] is not None]
        xs = [float(x) for x, _ in points if x is not None]
        ys = [float(y) for _, y in points if y is not None]
        slope = h.linear_slope(xs, ys)
        head, tail = ys[:3], ys[-3:]
        return {"slope_per_min": None if slope is None else round(slope, 3),
                "start": round(sum(head) / len(head), 1) if head else None,
                "end": round(sum(tail) / len(tail), 1) if tail else None,
                "max": round(max(ys), 1) if ys else None}

    rss, p99 = fit("rss_mb"), fit("p99_ms")
    failed = seen["attempts"] - seen["attempts_by_status"].get("200", 0)
    fps = [float(s["fps"]) for s in fitted if s["fps"] is not None]
    return {
        "drill": "soak",
        "ok": not died and failed == 0 and figures["missing"] == 0 and figures["duplicated"] == 0,
        "service_died": died,
        "minutes": minutes,
        "cameras": cameras,
        "rss_mb_per_min": rss["slope_per_min"],
        "rss_mb_start": rss["start"],
        "rss_mb_end": rss["end"],
        "rss_mb_max": rss["max"],
        "p99_ms_per_min": p99["slope_per_min"],
        "p99_ms_start": p99["start"],
        "p99_ms_end": p99["end"],
        "p99_ms_max": p99["max"],
        "fps_mean": round(sum(fps) / len(fps), 2) if fps else None,
        "samples": len(samples),
        "fitted_samples": len(fitted),
        "sample_s": sample_s,
        "warmup_s": warmup_s,
        "requests": seen["attempts"],
        "failed_requests": failed,
        "acknowledged": figures["acknowledged"],
        "missing": figures["missing"],
        "duplicated": figures["duplicated"],
        **{k: figures[k] for k in h.STORE_FACTS},
        "error_samples": h.error_samples(records),
        "first_start_s": round(first_start, 2),
        "machine": f"{os.cpu_count()} cpus, service and cameras on one host (loopback)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup-s", type=float, default=10.0, help="first seconds left out of the fits")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.cameras < 1 or args.sample_s <= 0:
        parser.error("--minutes and --sample-s must be > 0, --cameras >= 1")
    h.setup_logging(args.verbose)
    return h.main_guard(lambda: run(
        minutes=args.minutes, cameras=args.cameras, sample_s=args.sample_s, warmup_s=args.warmup_s, seed=args.seed,
        keep=args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
