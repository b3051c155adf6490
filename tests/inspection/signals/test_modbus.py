"""PLC output over Modbus TCP against a real pymodbus server; the test plays the PLC through a Modbus client
(``drills.plc``: the PLC's registers on the station's map, its half of the handshake)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from drills.peers import free_port, wait_until
from drills.plc import ModbusMemory, ModbusServer, Taken, take_result
from inspection.errors import ConfigError
from inspection.signals.handshake import PlcOutput, ResultCodes, ResultError
from inspection.signals.modbus import ModbusBackend, register_map
from inspection.types import Verdict
from tests.inspection.signals.records import unit_verdict


@pytest.fixture
def server() -> Iterator[ModbusServer]:
    with ModbusServer() as s:
        yield s


def output(port: int, registers: dict[str, int] | None = None, **options: object) -> PlcOutput:
    backend = ModbusBackend("127.0.0.1", port, registers=registers)
    return PlcOutput(backend, heartbeat_s=0.1, **options)  # type: ignore[arg-type]


def test_results_are_handed_over_in_order_with_the_ack_handshake(server: ModbusServer) -> None:
    plc = ModbusMemory(server.port)
    out = output(server.port)
    try:
        assert wait_until(lambda: plc.read("ready") == 1)
        for unit, verdict in [("U-1", Verdict.PASS), ("U-2", Verdict.FAIL), ("CABINET-0003-LEFT-DOOR", Verdict.REVIEW)]:
            out.submit_unit_verdict(unit_verdict(unit, verdict, missing=("back",) if verdict is Verdict.REVIEW else ()))
        taken = [take_result(plc) for _ in range(3)]
        assert wait_until(lambda: out.stats().acknowledged == 3)
    finally:
        out.close()
    assert taken == [Taken(1, 1, "U-1"), Taken(2, 2, "U-2"),  # 20 ASCII chars; the REVIEW says why:
                     Taken(3, 3, "CABINET-0003-LEFT-DO", int(ResultError.MISSING_VIEWS))]
    assert plc.read("ready") == 0 and plc.read("result_valid") == 0  # a clean stop says so


def test_heartbeat_counts_while_idle(server: ModbusServer) -> None:
    plc = ModbusMemory(server.port)
    out = output(server.port)
    try:
        assert wait_until(lambda: plc.read("heartbeat") != 0)
        first = plc.read("heartbeat")
        assert wait_until(lambda: plc.read("heartbeat") != first)
    finally:
        out.close()


def test_an_unacknowledged_result_times_out_visibly_and_the_next_follows(
        server: ModbusServer, caplog: pytest.LogCaptureFixture) -> None:
    plc = ModbusMemory(server.port)
    out = output(server.port, ack_timeout_s=0.3)
    try:
        with caplog.at_level(logging.ERROR, logger="inspection.signals.handshake"):
            out.submit_unit_verdict(unit_verdict("ignored", Verdict.FAIL))
            out.submit_unit_verdict(unit_verdict("next"))
            assert wait_until(lambda: plc.read("fault") == 1)
            taken = take_result(plc)
        assert taken == Taken(1, 2, "next")
        assert wait_until(lambda: plc.read("fault") == 0)  # cleared by the next acknowledgement
        assert out.stats().ack_timeouts == 1
    finally:
        out.close()
    assert any("did not acknowledge unit ignored" in r.getMessage() for r in caplog.records)


def test_a_waiting_queue_is_bounded_and_says_what_it_dropped(
        server: ModbusServer, caplog: pytest.LogCaptureFixture) -> None:
    plc = ModbusMemory(server.port)
    out = output(server.port, max_pending=2)
    try:
        out.submit_unit_verdict(unit_verdict("first"))
        assert wait_until(lambda: plc.read("result_valid") == 1)  # presented, waiting for the ack
        with caplog.at_level(logging.ERROR, logger="inspection.signals.handshake"):
            for unit in ("a", "b", "c"):
                out.submit_unit_verdict(unit_verdict(unit))
        assert [take_result(plc).unit_id for _ in range(3)] == ["first", "b", "c"]
        assert out.stats().dropped == 1
    finally:
        out.close()
    assert any("unit a" in r.getMessage() for r in caplog.records)


def test_sequence_continues_after_a_restart_and_custom_map_and_codes_apply(server: ModbusServer) -> None:
    registers = {"heartbeat": 100, "ready": 101, "result_code": 102, "sequence": 103, "result_valid": 104,
                 "ack": 105, "fault": -1, "unit_id": 120}
    plc = ModbusMemory(server.port, registers)
    out = output(server.port, registers, codes=ResultCodes(ok=10, ng=20, review=30))
    try:
        out.submit_unit_verdict(unit_verdict("U-1", Verdict.FAIL))
        assert take_result(plc) == Taken(20, 1, "U-1")
    finally:
        out.close()
    again = output(server.port, registers, codes=ResultCodes(ok=10, ng=20, review=30))
    try:
        again.submit_unit_verdict(unit_verdict("U-2"))
        assert take_result(plc) == Taken(10, 2, "U-2")
    finally:
        again.close()
    assert ModbusMemory(server.port).read("result_valid") == 0  # defaults untouched


def test_the_station_waits_for_an_absent_plc_and_delivers_when_it_appears() -> None:
    port = free_port()
    out = output(port)
    try:
        out.submit_unit_verdict(unit_verdict("early", Verdict.FAIL))
        assert wait_until(lambda: bool(out.stats().last_error), 5) and not out.stats().connected
        with ModbusServer(port=port) as server:
            plc = ModbusMemory(server.port)
            assert take_result(plc, timeout_s=20) == Taken(2, 1, "early")
    finally:
        out.close()


def test_the_sequence_handshake_goes_on_without_the_plc_clearing_ack(server: ModbusServer) -> None:
    plc = ModbusMemory(server.port)
    out = output(server.port, mode="sequence")
    try:
        for unit in ("S-1", "S-2", "S-3"):
            out.submit_unit_verdict(unit_verdict(unit, Verdict.FAIL))
        taken: list[Taken] = []
        for _ in range(3):
            taken.append(take_result(plc, four_step=False, last=taken[-1].sequence if taken else 0))
        assert wait_until(lambda: out.stats().acknowledged == 3)
        assert wait_until(lambda: plc.read("result_valid") == 0)
    finally:
        out.close()
    assert taken == [Taken(2, 1, "S-1"), Taken(2, 2, "S-2"), Taken(2, 3, "S-3")]
    assert plc.read("ack") == 3 and out.stats().ack_timeouts == 0


def test_the_sequence_handshake_times_out_like_the_other_and_goes_on(
        server: ModbusServer, caplog: pytest.LogCaptureFixture) -> None:
    plc = ModbusMemory(server.port)
    out = output(server.port, mode="sequence", ack_timeout_s=0.3)
    try:
        with caplog.at_level(logging.ERROR, logger="inspection.signals.handshake"):
            out.submit_unit_verdict(unit_verdict("first"))
            assert take_result(plc, four_step=False) == Taken(1, 1, "first")  # ack stays 1: this PLC never clears it
            out.submit_unit_verdict(unit_verdict("ignored", Verdict.FAIL))
            out.submit_unit_verdict(unit_verdict("next"))
            assert wait_until(lambda: plc.read("fault") == 1)
            assert take_result(plc, four_step=False, last=2) == Taken(1, 3, "next")
            assert wait_until(lambda: plc.read("fault") == 0)  # cleared by the acknowledgement
        assert out.stats().ack_timeouts == 1 and out.stats().acknowledged == 2
    finally:
        out.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not acknowledge unit ignored" in m for m in messages)
    assert not any("did not clear ack" in m for m in messages)  # no step 4 in this handshake


def test_an_unknown_handshake_is_refused() -> None:
    with pytest.raises(ConfigError, match="QC_PLC_HANDSHAKE"):
        PlcOutput(ModbusBackend("127.0.0.1", free_port()), mode="two-step")


def test_a_result_in_hand_when_the_plc_restarts_is_presented_again_under_its_sequence() -> None:
    port = free_port()
    with ModbusServer(port=port) as server:
        plc = ModbusMemory(server.port)
        out = output(port)
        out.submit_unit_verdict(unit_verdict("U-1"))
        assert take_result(plc) == Taken(1, 1, "U-1")
        out.submit_unit_verdict(unit_verdict("U-2", Verdict.FAIL))
        assert wait_until(lambda: plc.read("result_valid") == 1)  # presented, then the PLC goes away
    try:
        assert wait_until(lambda: not out.stats().connected, 10)
        with ModbusServer(port=port) as server:  # a PLC that restarted: every register back to 0
            plc = ModbusMemory(server.port)
            assert take_result(plc, timeout_s=20) == Taken(2, 2, "U-2")
            assert wait_until(lambda: out.stats().acknowledged == 2)
    finally:
        out.close()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"ack": 4}, "overlap"),
    ({"unit_id": 0}, "overlap"),
    ({"result_valid": -1}, "required"),
    ({"colour": 9}, "unknown"),
    ({"unit_id": 65530}, "beyond"),
])
def test_bad_register_maps_are_refused(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        register_map(overrides)
