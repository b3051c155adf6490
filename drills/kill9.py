"""Drill: ``kill -9`` the service under load, again and again; nothing it acknowledged may be lost.

A real ``qcline serve`` (own data dir, SQLite by default, or a throw-away PostgreSQL database with
``--database-url``) gets the demo orders and a camera key through the CLI, then ``--cameras`` camera threads
stream real NEU-DET JPEGs (each frame a new unit, each request its own ``Idempotency-Key``). ``--rounds``
times, at a random moment, the service is killed with SIGKILL and restarted on the same data and port (in
some rounds, ``--kill-while-starting``, killed once more while it starts up); the cameras retry every
request that was not answered 200 with the same key until it is. At the end the service is stopped and
the database is read: every frame that was answered 200 must be there (``missing`` 0), none may be
stored twice (``duplicated`` 0).

Prints one JSON line. ``ok`` is true only when missing and duplicated are 0 and no frame was given up.

Usage: python -m drills.kill9 [--rounds 20] [--cameras 8] [--seed 1] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from typing import Any

from drills import _harness as h

log = logging.getLogger("drills.kill9")


def run(*, rounds: int = 20, cameras: int = 8, seed: int = 1, database_url: str | None = None,
        up_s: tuple[float, float] = (1.0, 4.0), down_s: tuple[float, float] = (0.0, 0.5), images: int = 64,
        early_p: float = 0.2, drain_s: float = 60.0, keep: bool = False) -> dict[str, Any]:
    """The drill; ``database_url`` names a PostgreSQL server on which a throw-away database is made."""
    rng = random.Random(seed)
    with h.workdir("qcline-drill-kill9-", keep) as tmp:
        if database_url:
            with h.throwaway_postgres(database_url) as url:
                return _drill(tmp, url, rounds, cameras, seed, rng, up_s, down_s, images, early_p, drain_s)
        return _drill(tmp, None, rounds, cameras, seed, rng, up_s, down_s, images, early_p, drain_s)


def _drill(tmp: Any, url: str | None, rounds: int, cameras: int, seed: int, rng: random.Random,
           up_s: tuple[float, float], down_s: tuple[float, float], images: int, early_p: float,
           drain_s: float) -> dict[str, Any]:
    station = h.Station(tmp, database_url=url)
    station.prepare()
    first_start = station.start()
    log.info("service ready in %.1f s at %s (%s)", first_start, station.url, "PostgreSQL" if url else "SQLite")
    fleet = h.CameraFleet(station.url, station.camera_key, cameras, h.image_files(images, seed=seed), seed=seed,
                          drain_s=drain_s)
    fleet.start()
    restarts: list[float] = []
    acked_at_kill: list[int] = []
    early_kills = 0
    try:
        for n in range(rounds):
            time.sleep(rng.uniform(*up_s))
            acked_at_kill.append(len(fleet.acked()))
            station.kill9()
            log.info("round %d/%d: killed with %d frames acknowledged so far", n + 1, rounds, acked_at_kill[-1])
            time.sleep(rng.uniform(*down_s))
            if rng.random() < early_p:  # also kill it while it starts (migrations, model load, first requests)
                station.start(wait=False)
                time.sleep(rng.uniform(0.2, 2.0))
                station.kill9()
                early_kills += 1
                log.info("round %d/%d: killed again while starting", n + 1, rounds)
            restarts.append(station.start())
        time.sleep(rng.uniform(*up_s))
    finally:
        fleet.stop()
        station.stop()
    records = fleet.all_records()
    figures = h.final_audit(station.store_url, fleet)
    seen = h.summarize(records)
    return {
        "drill": "kill9",
        "ok": figures["missing"] == 0 and figures["duplicated"] == 0 and seen["gave_up"] == 0,
        **{k: figures[k] for k in ("missing", "duplicated", "acknowledged")},
        "rounds": rounds,
        "kills_while_starting": early_kills,
        "cameras": cameras,
        "database": "postgresql" if url else "sqlite",
        "frames_sent": seen["frames"],
        "gave_up": seen["gave_up"],
        "stored_rows": figures["stored_rows"],
        "stored_but_not_acknowledged": figures["stored_but_not_acknowledged"],
        "retried_frames": seen["retried_frames"],
        "replayed_acks": seen["replayed_acks"],
        "conflict_409_frames": seen["conflict_409_frames"],
        "attempts_by_status": seen["attempts_by_status"],
        "first_start_s": round(first_start, 2),
        "restart_s_mean": round(sum(restarts) / len(restarts), 2) if restarts else None,
        "restart_s_max": round(max(restarts), 2) if restarts else None,
        "missing_samples": figures["missing_samples"],
        **{k: figures[k] for k in h.STORE_FACTS},
        "error_samples": h.error_samples(records),
        "seed": seed,
        "machine": f"{os.cpu_count()} cpus, service and cameras on one host (loopback)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="how many times the service is killed")
    parser.add_argument("--cameras", type=int, default=8, help="camera threads streaming frames")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill moments and the image order")
    parser.add_argument("--database-url", default=None,
                        help="a PostgreSQL server URL: the drill runs on a throw-away database it creates there "
                        "(and drops); default: SQLite in the drill's own data dir")
    parser.add_argument("--min-up-s", type=float, default=1.0, help="shortest run between kills (s)")
    parser.add_argument("--max-up-s", type=float, default=4.0, help="longest run between kills (s)")
    parser.add_argument("--images", type=int, default=64, help="how many distinct images the cameras cycle")
    parser.add_argument("--kill-while-starting", type=float, default=0.2, metavar="P",
                        help="chance per round of one more kill while the restarted service is starting")
    parser.add_argument("--keep", action="store_true", help="keep the drill's data dir (its path goes to stderr)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.cameras < 1 or not 0 < args.min_up_s <= args.max_up_s:
        parser.error("--rounds and --cameras must be >= 1 and 0 < --min-up-s <= --max-up-s")
    h.setup_logging(args.verbose)
    return h.main_guard(lambda: run(
        rounds=args.rounds, cameras=args.cameras, seed=args.seed, database_url=args.database_url,
        up_s=(args.min_up_s, args.max_up_s), images=args.images, early_p=args.kill_while_starting, keep=args.keep))


if __name__ == "__main__":
    raise SystemExit(main())
