"""What the trigger-source tests share: the station's side (a sink collecting triggers, answers to give back)
and the PLC's side of the Modbus registers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from drills.peers import wait_until
from drills.plc import ModbusMemory, PlcMemory, take_result
from inspection.line.triggers import Trigger, TriggerAnswer, TriggerOutcome
from inspection.signals.modbus import UNIT_ID_WORDS, ascii_words
from inspection.types import Verdict
from tests.inspection.signals.records import unit_verdict


class Collected:
    """The station's queue: every trigger a source hands on, in order."""

    def __init__(self) -> None:
        self.triggers: list[Trigger] = []
        self._lock = threading.Lock()

    def __call__(self, trigger: Trigger) -> None:
        with self._lock:
            self.triggers.append(trigger)

    def wait(self, n: int, timeout_s: float = 10.0) -> list[Trigger]:
        assert wait_until(lambda: len(self.triggers) >= n, timeout_s), f"{len(self.triggers)} triggers, not {n}"
        with self._lock:
            return list(self.triggers)

    @property
    def units(self) -> list[str]:
        with self._lock:
            return [t.unit_id for t in self.triggers]


def judged(trigger: Trigger, verdict: Verdict = Verdict.PASS) -> TriggerAnswer:
    return TriggerAnswer(trigger, TriggerOutcome.JUDGED, datetime.now(UTC),
                         verdict=unit_verdict(trigger.unit_id, verdict, order_id=trigger.order_id or "O-1"))


def unjudged(trigger: Trigger, outcome: TriggerOutcome, error: str) -> TriggerAnswer:
    return TriggerAnswer(trigger, outcome, datetime.now(UTC), error=error)


TRIGGER, UNIT, SLOT1 = 100, 101, 111  # the default trigger block: counter, slot 0 unit, slot 1 unit (ASCII x 10)


class ModbusPlcPeer(ModbusMemory):
    """The PLC program's side (``drills.plc``'s registers on the station's map) that also writes triggers into
    its own registers, in one request with the units."""

    def trigger(self, counter: int, *units: str) -> None:
        """One write request: units into slots 0, 1, ... and the counter, so every poll sees all or nothing."""
        words = [counter]
        for unit in units:
            words += ascii_words(unit, UNIT_ID_WORDS)
        self.write_words(TRIGGER, words)


def take(plc: PlcMemory, timeout_s: float = 10.0) -> tuple[int, int, str]:
    """The four-step handshake from the PLC's side: (result_code, error, unit_id) of the next result."""
    taken = take_result(plc, timeout_s)
    return taken.code, taken.error, taken.unit_id
