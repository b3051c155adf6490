"""The simulated PLC's half of the result handshake (``drills.plc``): one scan's decision on a plain memory, and
``take_result`` over a real pymodbus server naming the step that did not come. The runs against the station's
``PlcOutput`` are in ``tests/inspection/signals`` and ``tests/drills/test_line_simulator.py``."""

from __future__ import annotations

import pytest

from drills.plc import ModbusMemory, ModbusServer, PlcHandshake, Taken, take_result


class Memory(dict[str, int | str]):
    """The PLC's signals in a dict: what a scan reads and the ack it writes."""

    def snapshot(self) -> dict[str, int | str]:
        return dict(self)

    def write(self, name: str, value: int) -> None:
        self[name] = value


@pytest.mark.parametrize(("four_step", "last", "valid", "sequence", "ack", "taken", "ack_after"), [
    (True, 0, 1, 3, 0, Taken(2, 3, "U-3", 4), 3),   # a new result: taken, ack = sequence
    (True, 3, 1, 3, 3, None, 3),                    # the same result again: nothing
    (True, 3, 0, 3, 3, None, 0),                    # step 4: result_valid dropped, ack back to 0
    (False, 3, 0, 3, 3, None, 3),                   # the sequence handshake leaves the ack
    (False, 3, 1, 4, 3, Taken(2, 4, "U-3", 4), 4),  # ... and tells the next result by its sequence
    (True, 0, 0, 0, 0, None, 0),                    # idle
])
def test_one_scan(four_step: bool, last: int, valid: int, sequence: int, ack: int, taken: Taken | None,
                  ack_after: int) -> None:
    memory = Memory(result_valid=valid, sequence=sequence, ack=ack, result_code=2, unit_id="U-3", error=4)
    assert PlcHandshake(four_step=four_step, last=last).scan(memory) == taken
    assert memory["ack"] == ack_after


def test_a_memory_without_unit_id_or_error_reads_them_as_empty() -> None:
    memory = Memory(result_valid=1, sequence=1, ack=0, result_code=1)
    assert PlcHandshake().scan(memory) == Taken(1, 1, "", 0)


def test_take_result_names_the_step_that_did_not_come() -> None:
    with ModbusServer() as server:
        plc = ModbusMemory(server.port)
        try:
            with pytest.raises(TimeoutError, match="result_valid never set"):
                take_result(plc, timeout_s=0.2)
            for name, value in (("result_code", 2), ("sequence", 7), ("unit_id", "U-7"), ("result_valid", 1)):
                plc.write(name, value)  # presented as the station does, and never withdrawn
            with pytest.raises(TimeoutError, match="did not clear result_valid"):
                take_result(plc, timeout_s=0.2)
            assert plc.read("ack") == 7 and plc.snapshot()["unit_id"] == "U-7"
        finally:
            plc.close()
