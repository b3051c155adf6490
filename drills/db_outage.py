"""Drill: the central PostgreSQL vanishes for a minute under load; nothing acknowledged may be lost.

The service runs on a throw-away PostgreSQL database that it reaches only through a loopback TCP proxy
(``drills.tcp_proxy``) started by the drill; the real server is never stopped. Under ``--cameras`` cameras
the proxy is cut (every connection closed, new ones refused) for ``--outage-s`` seconds, then restored. The
cameras retry every request that was not answered 200 with the same ``Idempotency-Key``.

Figures (one JSON line): ``lost`` (frames answered 200 that are not in PostgreSQL at the end: must be 0),
``duplicated`` (0), what the cameras got during the outage (200 / 503 / other / no answer), what
``/readyz`` said during it, the backlog the service reports (``/readyz`` or ``/metrics``; ``null`` when it
reports none) and ``drain_s``: from the restore until the backlog is 0 and every frame acknowledged up to
the restore is in PostgreSQL (``null`` if that did not happen within ``--drain-timeout-s``).

Usage: python -m drills.db_outage [--outage-s 60] [--cameras 8] [--database-url postgresql://127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections import Counter
from typing import Any

from drills import _harness as h
from drills.tcp_proxy import CutMode, TcpProxy

log = logging.getLogger("drills.db_outage")


def _backlog(station: h.Station) -> tuple[int | None, int, str]:
    """(backlog or None, /readyz status code, its ``status`` field)."""
    code, state = station.get("/readyz")
    backlog = h.backlog_from_readyz(state)
    status = str(state.get("status", "")) if isinstance(state, dict) else ""
    if backlog is None:
        mcode, text = station.get("/metrics")
        if mcode == 200 and isinstance(text, str):
            backlog = h.backlog_from_metrics(text)
    return backlog, code, status


def run(*, outage_s: float = 60.0, cameras: int = 8, database_url: str | None = None, warm_s: float = 5.0,
        after_s: float = 5.0, drain_timeout_s: float = 180.0, mode: CutMode = "reset", seed: int = 1,
        images: int = 64, keep: bool = False) -> dict[str, Any]:
    with h.workdir("qcline-drill-outage-", keep) as tmp, h.throwaway_postgres(database_url) as real_url:
        host, port = h.host_port(real_url)
        with TcpProxy(host, port) as proxy:
            station = h.Station(tmp, database_url=h.with_host_port(real_url, "127.0.0.1", proxy.port))
            station.prepare()
            first_start = station.start()
            fleet = h.CameraFleet(station.url, station.camera_key, cameras, h.image_files(images, seed=seed),
                                  seed=seed, give_up_s=outage_s + drain_timeout_s + 10,
                                  drain_s=min(drain_timeout_s, 30.0))
            readyz: Counter[str] = Counter()
            backlog_max: int | None = None
            stop_probe = threading.Event()

            def probe() -> None:  # what /readyz says while the database is away
                nonlocal backlog_max
                while not stop_probe.wait(1.0):
                    backlog, code, status = _backlog(station)
                    readyz[f"{code}:{status}" if status else str(code)] += 1
                    if backlog is not None:
                        backlog_max = max(backlog_max or 0, backlog)

            try:
                fleet.start()
                time.sleep(warm_s)
                acked_before = len(fleet.acked())
                prober = threading.Thread(target=probe, daemon=True)
                cut_at = time.monotonic()
                proxy.cut(mode)
                log.info("database cut (%s) for %.0f s with %d frames acknowledged", mode, outage_s, acked_before)
                prober.start()
                time.sleep(outage_s)
                stop_probe.set()
                prober.join(10)
                restored_at = time.monotonic()
                proxy.restore()
                during = fleet.attempts_between(cut_at, restored_at)
                acked_by_restore = [r for r in fleet.all_records() if r.acked and (r.acked_at or 0) < restored_at]
                log.info("database restored; %d frames acknowledged so far", len(acked_by_restore))
                drain_s, backlog_drain_s, rows_drain_s = _wait_drained(
                    station, fleet.run_id, acked_by_restore, restored_at, drain_timeout_s)
                time.sleep(max(0.0, after_s - (time.monotonic() - restored_at)))
                backlog_end, _, _ = _backlog(station)
                _, ready_end = station.get("/readyz")
            finally:
                stop_probe.set()
                fleet.stop()
                station.stop()
            figures = h.final_audit(real_url, fleet)  # read directly
        records = fleet.all_records()
    seen = h.summarize(records)
    statuses = Counter("no_answer" if a.status == h.STATUS_DOWN else str(a.status) for a in during)
    return {
        "drill": "db_outage",
        "ok": figures["missing"] == 0 and figures["duplicated"] == 0 and seen["gave_up"] == 0 and drain_s is not None,
        "lost": figures["missing"],
        "duplicated": figures["duplicated"],
        "acknowledged": figures["acknowledged"],
        "outage_s": outage_s,
        "cameras": cameras,
        "cut_mode": mode,
        "during_outage": {
            "requests": len(during),
            "ok_200": statuses.get("200", 0),
            "unavailable_503": statuses.get("503", 0),
            "no_answer": statuses.get("no_answer", 0),
            "other_failed": sum(n for k, n in statuses.items() if k not in ("200", "503", "no_answer")),
            "by_status": dict(sorted(statuses.items())),
        },
        "readyz_during_outage": dict(readyz),
        "backlog_max": backlog_max,
        "backlog_end": backlog_end,
        "station_end": ready_end.get("station") if isinstance(ready_end, dict) else None,
        "backlog_drain_s": backlog_drain_s,
        "rows_complete_s": rows_drain_s,
        "drain_s": drain_s,
        "frames_sent": seen["frames"],
        "gave_up": seen["gave_up"],
        "retried_frames": seen["retried_frames"],
        "replayed_acks": seen["replayed_acks"],
        "conflict_409_frames": seen["conflict_409_frames"],
        "stored_rows": figures["stored_rows"],
        "missing_samples": figures["missing_samples"],
        **{k: figures[k] for k in h.STORE_FACTS},
        "error_samples": h.error_samples(records),
        "first_start_s": round(first_start, 2),
        "machine": f"{os.cpu_count()} cpus, service, cameras, proxy and PostgreSQL on one host (loopback)",
    }


def _wait_drained(station: h.Station, run_id: str, acked: list[h.FrameRecord], restored_at: float,
                  timeout_s: float) -> tuple[float | None, float | None, float | None]:
    """Seconds from the restore until (both, the service's backlog is 0, every acked row is in the database)."""
    wanted = {(r.unit_id, r.camera_id) for r in acked}
    backlog_s: float | None = None
    rows_s: float | None = None
    reports_backlog = False
    deadline = restored_at + timeout_s
    while time.monotonic() < deadline:
        now = time.monotonic() - restored_at
        backlog, _, _ = _backlog(station)
        reports_backlog = reports_backlog or backlog is not None
        if backlog_s is None and backlog == 0:
            backlog_s = round(now, 2)
        if rows_s is None:
            try:
                present = h.count_rows(station.store_url, f"DR-{run_id}-")
            except Exception as e:  # the service's reconnect races ours; the database is back, try again
                log.debug("row count failed: %s", e)
                present = {}
            if wanted <= present.keys():
                rows_s = round(time.monotonic() - restored_at, 2)
        if rows_s is not None and (backlog_s is not None or not reports_backlog):
            return max(rows_s, backlog_s or 0.0), backlog_s, rows_s
        time.sleep(0.5)
    log.warning("not drained %.0f s after the restore (backlog reported: %s, rows complete: %s)",
                timeout_s, reports_backlog, rows_s is not None)
    return None, backlog_s, rows_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-s", type=float, default=60.0, help="how long the database is cut (s)")
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL server (a throw-away database is created there and dropped; default "
                        "$QC_TEST_POSTGRES_URL or postgresql://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--mode", choices=["reset", "refuse", "blackhole"], default="reset",
                        help="reset: connections closed, new ones reset; refuse: nothing listens; blackhole: "
                        "connections accepted and never answered")
    parser.add_argument("--warm-s", type=float, default=5.0, help="load before the cut (s)")
    parser.add_argument("--after-s", type=float, default=5.0, help="load after the restore, at least (s)")
    parser.add_argument("--drain-timeout-s", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.outage_s <= 0 or args.cameras < 1:
        parser.error("--outage-s must be > 0 and --cameras >= 1")
    h.setup_logging(args.verbose)
    return h.main_guard(lambda: run(
        outage_s=args.outage_s, cameras=args.cameras, database_url=args.database_url, warm_s=args.warm_s,
        after_s=args.after_s, drain_timeout_s=args.drain_timeout_s, mode=args.mode, seed=args.seed, keep=args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
