"""The test's PLC: reads the handshake signals the station wrote and acknowledges like a PLC program."""

from __future__ import annotations

from typing import Protocol

from tests.inspection.signals.peers import wait_until


class PlcView(Protocol):
    def read(self, name: str) -> int | str: ...

    def write(self, name: str, value: int) -> None: ...


def take_result(plc: PlcView, timeout_s: float = 10.0) -> tuple[int, int, str]:
    """The four-step handshake from the PLC's side: wait for result_valid, read (result_code, sequence,
    unit_id), ack = sequence, wait for result_valid to drop, ack = 0."""
    assert wait_until(lambda: plc.read("result_valid") == 1, timeout_s), "result_valid never set"
    code, seq, unit = int(plc.read("result_code")), int(plc.read("sequence")), str(plc.read("unit_id"))
    plc.write("ack", seq)
    assert wait_until(lambda: plc.read("result_valid") == 0, timeout_s), "station did not clear result_valid"
    plc.write("ack", 0)
    return code, seq, unit


def take_by_sequence(plc: PlcView, last: int, timeout_s: float = 10.0) -> tuple[int, int, str]:
    """The ``sequence`` handshake from the PLC's side: a result is new when result_valid = 1 and its sequence
    differs from the last one taken; ack = sequence, and never back to 0."""
    assert wait_until(lambda: plc.read("result_valid") == 1 and plc.read("sequence") != last, timeout_s)
    code, seq, unit = int(plc.read("result_code")), int(plc.read("sequence")), str(plc.read("unit_id"))
    plc.write("ack", seq)
    return code, seq, unit
