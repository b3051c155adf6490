"""What every trigger source shares: its counters for ``/metrics``, trigger ids, and the PLC's reason codes.

A source counts on its own thread and the station reads ``stats`` from another, so the counters live behind
one lock and ``stats`` hands out a copy: a scrape never sees half an update.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from inspection.line.triggers import TriggerOutcome
from inspection.signals.handshake import ResultError


@dataclass
class SourceStats:
    """Counters of one trigger source (totals since it started, except ``connected``).

    ``received``: triggers handed to the station. ``duplicates``: the same trigger seen again (an MQTT QoS 1
    re-delivery, a PLC trigger bit still set after a reconnect) and not handed on twice. ``malformed``:
    messages or registers that could not be a trigger (answered with the reason). ``missed``: triggers that
    came while the source could not see them (station down, PLC link down, more triggers than slots in one
    poll), answered as not judged where the channel allows. ``answered``: answers the station gave back.
    ``errors``: failures of the channel (a refused read, a publish that failed). ``disconnects``: links lost.
    ``polls``: reads of the PLC / frames looked at (a loop that stopped polling shows here).
    """

    received: int = 0
    duplicates: int = 0
    malformed: int = 0
    missed: int = 0
    answered: int = 0
    errors: int = 0
    disconnects: int = 0
    polls: int = 0
    connected: bool = False
    last_error: str = ""


class StatsBox:
    """``SourceStats`` behind a lock: ``add(received=1)``, ``set(connected=True)``, ``snapshot()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = SourceStats()

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self._stats, name, getattr(self._stats, name) + n)

    def set(self, **values: object) -> None:
        with self._lock:
            for name, value in values.items():
                setattr(self._stats, name, value)

    def snapshot(self) -> SourceStats:
        with self._lock:
            return dataclasses.replace(self._stats)


def now_utc() -> datetime:
    return datetime.now(UTC)


def run_token() -> str:
    """A short random token per source start: trigger ids built from a PLC counter stay unique per station
    after a restart or a counter reset (the counter repeats, the token does not)."""
    return secrets.token_hex(4)


ERROR_OF_OUTCOME: dict[TriggerOutcome, ResultError] = {
    TriggerOutcome.JUDGED: ResultError.NONE,
    TriggerOutcome.MISSING_VIEWS: ResultError.MISSING_VIEWS,
    TriggerOutcome.UNKNOWN_UNIT: ResultError.UNKNOWN_UNIT,
    TriggerOutcome.REJECTED: ResultError.REJECTED,
    TriggerOutcome.FAILED: ResultError.FAILED,
}
"""The PLC's ``error`` signal for a trigger that ended without a verdict (``handshake.ResultError``)."""

MAX_ID_CHARS = 128
