"""A durable, bounded queue of outgoing messages: one SQLite file in WAL mode under ``QC_DATA_DIR``.

The MQTT sink writes a message here (one small transaction) and returns; a background publisher reads
the oldest rows, sends them, and deletes each only after the broker acknowledged it. So a message the
inspection loop handed over survives a broker outage, a restart and a crash of the process
(``synchronous=NORMAL`` in WAL mode: a committed row survives a process crash; on power loss the last
transactions before the outage may be lost, which the results store, not this spool, is the record of).

Bounded: past ``max_messages`` a new message is refused, counted and logged (never dropped silently), and
from ``alarm_fraction`` of that a warning says the broker has been away too long.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inspection.errors import ConfigError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    created_at: float


@dataclass(frozen=True)
class SpoolStats:
    depth: int
    capacity: int
    refused: int
    oldest_age_s: float
    alarm: bool


class Spool:
    def __init__(self, path: Path, *, max_messages: int, alarm_fraction: float = 0.8) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open the message spool {path}: {e}") from e
        self.path = path
        self.capacity = max_messages
        self._alarm_at = max(1, int(max_messages * alarm_fraction))
        self._lock = threading.Lock()
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        self._refused = 0
        self._alarmed = False
        if self._depth:
            log.info("message spool %s holds %d undelivered messages from before", path, self._depth)

    def put(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Store one message; ``False`` (logged, counted) when the spool is full."""
        with self._lock:
            if self._depth >= self.capacity:
                self._refused += 1
                if self._refused == 1 or self._refused % 1000 == 0:
                    log.error("message spool %s is full (%d messages): %d messages refused so far, latest on %s",
                              self.path, self.capacity, self._refused, topic)
                return False
            self._db.execute("INSERT INTO messages (topic, payload, qos, retain, created_at) VALUES (?, ?, ?, ?, ?)",
                             (topic, payload, qos, int(retain), time.time()))
            self._depth += 1
            self._check_alarm()
            return True

    def _check_alarm(self) -> None:
        if self._depth >= self._alarm_at and not self._alarmed:
            self._alarmed = True
            log.warning("message spool %s is %d%% full (%d of %d undelivered): is the broker reachable?",
                        self.path, 100 * self._depth // self.capacity, self._depth, self.capacity)
        elif self._depth < self._alarm_at // 2 and self._alarmed:
            self._alarmed = False
            log.info("message spool %s drained below alarm level (%d messages)", self.path, self._depth)

    def after(self, last_id: int, limit: int) -> list[SpooledMessage]:
        """The oldest messages with an id above ``last_id``, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, created_at FROM messages WHERE id > ? ORDER BY id LIMIT ?",
                (last_id, limit)).fetchall()
        return [SpooledMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]

    def delete(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._db.execute("BEGIN")
            cur = self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])
            self._db.execute("COMMIT")
            self._depth = max(0, self._depth - max(cur.rowcount, 0))
            self._check_alarm()

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    def stats(self) -> SpoolStats:
        with self._lock:
            row = self._db.execute("SELECT created_at FROM messages ORDER BY id LIMIT 1").fetchone()  # by key
            depth, refused, alarm = self._depth, self._refused, self._alarmed
        oldest = time.time() - row[0] if row and row[0] is not None else 0.0
        return SpoolStats(depth=depth, capacity=self.capacity, refused=refused, oldest_age_s=max(0.0, oldest),
                          alarm=alarm)

    @property
    def depth(self) -> int:
        return self._depth

    def close(self) -> None:
        with self._lock:
            self._db.close()
