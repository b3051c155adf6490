"""What the trigger-source tests share: the station's side (a sink collecting triggers, answers to give back)
and the PLC's side of the Modbus registers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from pymodbus.client import ModbusTcpClient

from inspection.line.triggers import Trigger, TriggerAnswer, TriggerOutcome
from inspection.signals.modbus import DEFAULT_REGISTERS, UNIT_ID_WORDS, ascii_words, words_ascii
from inspection.types import Verdict
from tests.inspection.signals.peers import wait_until
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


class ModbusPlcPeer:
    """The PLC program's side: writes triggers into its own registers, takes results by the handshake."""

    def __init__(self, port: int) -> None:
        self.client = ModbusTcpClient("127.0.0.1", port=port)
        assert self.client.connect()

    def regs(self, address: int, count: int = 1) -> list[int]:
        response = self.client.read_holding_registers(address, count=count)
        assert not response.isError(), response
        return list(response.registers)

    def put(self, address: int, words: list[int]) -> None:
        assert not self.client.write_registers(address, words).isError()

    def trigger(self, counter: int, *units: str) -> None:
        """One write request: units into slots 0, 1, ... and the counter, so every poll sees all or nothing."""
        words = [counter]
        for unit in units:
            words += ascii_words(unit, UNIT_ID_WORDS)
        self.put(TRIGGER, words)

    # the PlcView of tests.inspection.signals.plc, on the default result map
    def read(self, name: str) -> int | str:
        if name == "unit_id":
            return words_ascii(self.regs(DEFAULT_REGISTERS[name], UNIT_ID_WORDS))
        return self.regs(DEFAULT_REGISTERS[name])[0]

    def write(self, name: str, value: int) -> None:
        self.put(DEFAULT_REGISTERS[name], [value])

    def close(self) -> None:
        self.client.close()


def take(plc: ModbusPlcPeer, timeout_s: float = 10.0) -> tuple[int, int, str]:
    """The four-step handshake from the PLC's side: (result_code, error, unit_id) of the next result."""
    assert wait_until(lambda: plc.read("result_valid") == 1, timeout_s), "result_valid never set"
    code, error, seq, unit = (int(plc.read("result_code")), int(plc.read("error")), int(plc.read("sequence")),
                              str(plc.read("unit_id")))
    plc.write("ack", seq)
    assert wait_until(lambda: plc.read("result_valid") == 0, timeout_s), "station did not clear result_valid"
    plc.write("ack", 0)
    return code, error, unit
