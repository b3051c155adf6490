"""The station's local outbox: store-and-forward while the central database is unreachable.

A station on a central PostgreSQL must keep inspecting through a network cut. When a group commit cannot
reach the database, the writer appends the group here instead (one SQLite transaction, WAL,
``synchronous=FULL``: one fsync), and the cameras are answered because their results are *in the outbox*,
which is as durable as the database. Once the database answers again, entries are replayed oldest first and
removed only after the central commit; a crash in between replays them again, which the store's unique keys
make harmless (exactly once). Entries the database refuses for good (an order it never heard of) are kept in
``dead`` for an operator, never dropped.

The same file caches what a station needs to keep going during a cut: API keys (their sha256 only), orders
with their profiles, and answers to Idempotency-Keys given while the database was away.

Bounded by disk: past ``warn_fraction`` of ``max_bytes`` (or with less than ``min_free_bytes`` free on the
disk) it logs an alarm and says so in ``status``; at ``max_bytes`` it refuses new entries
(``OutboxFullError``: the cameras get 503, nothing is acknowledged that is not stored).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from inspection.boxes import Box
from inspection.errors import NotFoundError, StoreError
from inspection.profiles import InspectionProfile, Order
from inspection.store.repository import ResultRecord, ResultsStore
from inspection.store.tables.base import utcnow
from inspection.types import ConformanceResult, DefectFinding, FrameVerdict, Verdict

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,               -- 'frame' or 'close'
    body TEXT NOT NULL,               -- JSON: a ResultRecord, or {"unit_id": ...}
    evidence_path TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    evidence_path TEXT,
    created_at REAL NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY, key_id INTEGER NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, body TEXT NOT NULL, profile TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS answers (
    scope TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL, status_code INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (scope, key)
);
"""


class OutboxFullError(StoreError):
    """The outbox reached its size bound: new results are refused (HTTP 503), never dropped after a 200."""


def verdict_to_json(v: FrameVerdict) -> dict[str, Any]:
    return {"unit_id": v.unit_id, "order_id": v.order_id, "camera_id": v.camera_id, "verdict": v.verdict.value,
            "findings": [[f.class_name, f.confidence, list(f.box), f.outcome.value, f.rule] for f in v.findings],
            "reasons": list(v.reasons), "model_sha256": v.model_sha256, "profile_hash": v.profile_hash,
            "captured_at": v.captured_at.isoformat(), "frame_sha256": v.frame_sha256, "error": v.error,
            "conformance": [c.to_json() for c in v.conformance], "engine": v.engine, "precision": v.precision}


def _conformance_from_json(c: dict[str, Any]) -> ConformanceResult:
    return ConformanceResult(kind=c["kind"], name=c["name"], outcome=Verdict(c["outcome"]), measured=c["measured"],
                             expected=c["expected"], tolerance=c["tolerance"], deviation=c["deviation"],
                             reason=c["reason"], values=tuple((k, float(x)) for k, x in c.get("values", {}).items()))


def verdict_from_json(d: dict[str, Any]) -> FrameVerdict:
    return FrameVerdict(
        unit_id=d["unit_id"], order_id=d["order_id"], camera_id=d["camera_id"], verdict=Verdict(d["verdict"]),
        findings=tuple(DefectFinding(c, float(conf), Box(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                                     Verdict(o), r) for c, conf, b, o, r in d["findings"]),
        reasons=tuple(d["reasons"]), model_sha256=d["model_sha256"], profile_hash=d["profile_hash"],
        captured_at=datetime.fromisoformat(d["captured_at"]), frame_sha256=d["frame_sha256"], error=d["error"],
        conformance=tuple(_conformance_from_json(c) for c in d.get("conformance", ())),
        engine=d.get("engine", ""), precision=d.get("precision", ""))


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    record: ResultRecord | None  # a frame result
    close_unit: str | None  # or the closing of a unit
    evidence_path: str | None
    created_at: float


@dataclass(frozen=True)
class OutboxStatus:
    backlog: int
    oldest_age_s: float | None
    size_bytes: int
    max_bytes: int
    dead: int
    alarm: str  # "" when all is well

    def as_json(self) -> dict[str, Any]:
        return {"backlog": self.backlog, "oldest_age_s": self.oldest_age_s, "size_bytes": self.size_bytes,
                "max_bytes": self.max_bytes, "dead": self.dead, "alarm": self.alarm}


class Outbox:
    """A durable FIFO of results waiting for the central database, plus the station's local caches.

    Thread-safe (one connection behind a lock; the writer thread appends and replays, request threads read the
    caches). ``path`` is normally ``<QC_DATA_DIR>/outbox.db``.
    """

    def __init__(self, path: Path, *, max_bytes: int = 2 * 1024**3, warn_fraction: float = 0.8,
                 min_free_bytes: int = 512 * 1024**2) -> None:
        if max_bytes <= 0 or not 0 < warn_fraction <= 1:
            raise ValueError("max_bytes > 0 and 0 < warn_fraction <= 1")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.warn_fraction = warn_fraction
        self.min_free_bytes = min_free_bytes
        self._lock = threading.Lock()
        self._alarmed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an entry acknowledged to a camera survives power loss
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the station outbox {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- the queue ------------------------------------------------------------------------------------

    def append(self, records: Sequence[ResultRecord], evidence_paths: dict[int, str] | None = None,
               close_units: Sequence[str] = ()) -> None:
        """Keep a group (frames, then closes) in ONE transaction; ``OutboxFullError`` if the bound is reached."""
        status = self.status()
        if status.size_bytes >= self.max_bytes:
            raise OutboxFullError(f"station outbox {self.path} is full ({status.size_bytes} bytes, bound "
                                  f"{self.max_bytes}): results refused until the central database is back")
        self._check_alarm(status)
        now = time.time()
        paths = evidence_paths or {}
        rows = [("frame", json.dumps({"verdict": verdict_to_json(r.verdict), "key": r.key, "source": r.source,
                                      "error": r.error}), paths.get(i), now) for i, r in enumerate(records)]
        rows += [("close", json.dumps({"unit_id": u}), None, now) for u in close_units]
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany("INSERT INTO entries (kind, body, evidence_path, created_at) "
                                         "VALUES (?, ?, ?, ?)", rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as e:
            raise StoreError(f"cannot write the station outbox {self.path}: {e}") from e

    def peek(self, limit: int = 256) -> list[OutboxEntry]:
        """The oldest ``limit`` entries, in order."""
        with self._lock:
            rows = self._db.execute("SELECT seq, kind, body, evidence_path, created_at FROM entries ORDER BY seq "
                                    "LIMIT ?", (limit,)).fetchall()
        entries = []
        for seq, kind, body, path, created in rows:
            data = json.loads(body)
            if kind == "frame":
                record = ResultRecord(verdict_from_json(data["verdict"]), data["key"], data["source"], data["error"])
                entries.append(OutboxEntry(seq, record, None, path, created))
            else:
                entries.append(OutboxEntry(seq, None, data["unit_id"], path, created))
        return entries

    def remove(self, seqs: Sequence[int]) -> None:
        """Forget entries once the central database has committed them."""
        with self._lock:
            self._db.executemany("DELETE FROM entries WHERE seq = ?", [(s,) for s in seqs])

    def bury(self, entry: OutboxEntry, error: str) -> None:
        """Move an entry the database refuses for good to ``dead`` (kept for an operator, never dropped)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR REPLACE INTO dead SELECT seq, kind, body, evidence_path, created_at, ? "
                             "FROM entries WHERE seq = ?", (error, entry.seq))
            self._db.execute("DELETE FROM entries WHERE seq = ?", (entry.seq,))
            self._db.execute("COMMIT")
        log.error("outbox entry %d refused by the central database for good (kept in 'dead'): %s", entry.seq, error)

    def backlog(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def status(self) -> OutboxStatus:
        with self._lock:
            count, oldest = self._db.execute("SELECT count(*), min(created_at) FROM entries").fetchone()
            dead = int(self._db.execute("SELECT count(*) FROM dead").fetchone()[0])
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        alarm = ""
        if size >= self.warn_fraction * self.max_bytes:
            alarm = f"outbox at {size / self.max_bytes:.0%} of its bound ({self.max_bytes} bytes)"
        try:
            free = shutil.disk_usage(self.path.parent).free
        except OSError:
            free = self.min_free_bytes
        if free < self.min_free_bytes:
            alarm = (alarm + "; " if alarm else "") + f"only {free} bytes free on the outbox's disk"
        return OutboxStatus(int(count), time.time() - oldest if oldest is not None else None, size,
                            self.max_bytes, dead, alarm)

    def _check_alarm(self, status: OutboxStatus) -> None:
        if status.alarm and not self._alarmed:
            log.error("ALARM: %s; %d results wait for the central database", status.alarm, status.backlog)
        self._alarmed = bool(status.alarm)

    # -- local caches (what a station needs during a cut) -----------------------------------------------

    def cache_key(self, key_hash: str, key_id: int, name: str, role: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO api_keys VALUES (?, ?, ?, ?)", (key_hash, key_id, name, role))

    def forget_keys_except(self, key_hashes: Sequence[str]) -> None:
        """Keep only keys still valid centrally (a revoked key stops working during a cut too)."""
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT key_hash FROM api_keys")}
            self._db.executemany("DELETE FROM api_keys WHERE key_hash = ?",
                                 [(h,) for h in known - set(key_hashes)])

    def cached_key(self, key_hash: str) -> tuple[int, str, str] | None:
        with self._lock:
            row = self._db.execute("SELECT key_id, name, role FROM api_keys WHERE key_hash = ?",
                                   (key_hash,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]), str(row[2]))

    def cache_order(self, order_id: str, order: dict[str, Any], profile: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO orders VALUES (?, ?, ?)",
                             (order_id, json.dumps(order, default=str), json.dumps(profile)))

    def cached_order(self, order_id: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT body, profile FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def save_answer(self, scope: str, key: str, request_hash: str, status_code: int, body: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?)",
                             (scope, key, request_hash, status_code, json.dumps(body)))

    def answer(self, scope: str, key: str) -> tuple[str, int, dict[str, Any]] | None:
        with self._lock:
            row = self._db.execute("SELECT request_hash, status_code, body FROM answers WHERE scope = ? AND key = ?",
                                   (scope, key)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), json.loads(row[2]))


def read_status(data_dir: Path, max_bytes: int) -> OutboxStatus | None:
    """The outbox of the station at ``data_dir`` (``None`` if it has none), for ``qcline station status``."""
    path = Path(data_dir) / OUTBOX_FILE
    if not path.exists():
        return None
    outbox = Outbox(path, max_bytes=max_bytes)
    try:
        return outbox.status()
    finally:
        outbox.close()


class StationOrders:
    """The inspector's orders and unit histories: from the central store, from the local cache while it is away.

    Every order read centrally is cached (with its profile) in the outbox file, so a cut does not stop the
    line at the first unit of an order this process has not met yet. A unit's history cannot be read during
    a cut: the unit starts from what this station knows (its own frames), and the central roll-up re-checks
    it on replay.
    """

    def __init__(self, store: ResultsStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]:
        try:
            order, profile = self.store.get_order(order_id)
        except NotFoundError:
            raise
        except StoreError as e:
            cached = self.outbox.cached_order(order_id)
            if cached is None:
                raise StoreError(f"order {order_id!r} is not cached at this station and the central database is "
                                 f"unreachable ({e})") from e
            return Order.model_validate(cached[0]), InspectionProfile.model_validate(cached[1])
        try:
            self.outbox.cache_order(order_id, order.model_dump(mode="json"), profile.canonical())
        except sqlite3.Error as e:  # a cache that cannot be written costs resilience, not this frame
            log.warning("cannot cache order %s locally: %s", order_id, e)
        return order, profile

    def sync(self, recent_days: float = 60.0) -> int:
        """Cache the orders imported or changed in the last ``recent_days`` (with their profiles) from the central
        database: the ones a line may still build; older ones are cached when first read. The count cached."""
        pairs = self.store.orders_with_profiles(utcnow() - timedelta(days=recent_days))
        for order, profile in pairs:
            self.outbox.cache_order(order.id, order.model_dump(mode="json"), profile.canonical())
        return len(pairs)

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        try:
            return self.store.unit_histories(unit_ids)
        except StoreError as e:
            log.warning("unit histories unavailable (%s): units start from what this station knows", e)
            return {}
