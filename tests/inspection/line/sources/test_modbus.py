"""PLC triggers over Modbus TCP against a real pymodbus server playing the PLC: trigger counter and bit, two
units within one poll, a station restart, a PLC restart and a cut link, and every answer (also the ones
without a verdict) through the result handshake."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drills.peers import free_port, wait_until
from drills.plc import ModbusServer
from drills.tcp_proxy import TcpProxy
from inspection.line.sources import build_trigger_sources
from inspection.line.sources.modbus import ModbusTriggerLayout, ModbusTriggerReader
from inspection.line.sources.plc import PlcTriggerSource
from inspection.line.triggers import TriggerChannel, TriggerOutcome
from inspection.signals.handshake import PlcOutput, ResultError
from inspection.signals.modbus import ModbusBackend, ModbusLink, ascii_words
from inspection.types import Verdict
from tests.inspection.line.sources.helpers import (
    SLOT1,
    TRIGGER,
    UNIT,
    Collected,
    ModbusPlcPeer,
    judged,
    take,
    unjudged,
)

OK, NG, ERROR = 1, 2, 4


@pytest.fixture
def server() -> Iterator[ModbusServer]:
    with ModbusServer() as s:
        yield s


def source(port: int, tmp_path: Path | None = None, **entry: Any) -> PlcTriggerSource:
    spec = {"kind": "modbus", "name": "plc", "host": "127.0.0.1", "port": port, "poll_ms": 5,
            "results": {"heartbeat_s": 0.1}, **entry}
    [built] = build_trigger_sources([spec], station_id="st-1", data_dir=tmp_path)
    assert isinstance(built, PlcTriggerSource)
    return built


def started(src: PlcTriggerSource, got: Collected) -> PlcTriggerSource:
    """Started, with its first poll done (the counter it found is taken as seen)."""
    src.start(got)
    assert wait_until(lambda: src.stats.polls >= 1), src.stats
    return src


def test_each_counter_step_is_one_trigger_and_its_verdict_goes_back_through_the_handshake(
        server: ModbusServer) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port), got)
    try:
        plc.trigger(1, "CAB-0001")
        [first] = got.wait(1)
        assert (first.unit_id, first.order_id, first.channel, first.reply_to) == ("CAB-0001", None,
                                                                                  TriggerChannel.MODBUS, "1")
        src.answer(judged(first, Verdict.FAIL))
        assert take(plc) == (NG, 0, "CAB-0001")
        plc.trigger(2, "CAB-0002")
        second = got.wait(2)[1]
        src.answer(judged(second))
        assert take(plc) == (OK, 0, "CAB-0002")
        assert wait_until(lambda: src.stats.polls > 20)  # many polls later, still two triggers
        assert got.units == ["CAB-0001", "CAB-0002"] and first.trigger_id != second.trigger_id
        assert (src.stats.received, src.stats.answered, src.stats.duplicates) == (2, 2, 0)
    finally:
        src.close()


@pytest.mark.parametrize(("outcome", "error"), [
    (TriggerOutcome.UNKNOWN_UNIT, ResultError.UNKNOWN_UNIT),
    (TriggerOutcome.REJECTED, ResultError.REJECTED),
    (TriggerOutcome.FAILED, ResultError.FAILED),
])
def test_a_trigger_without_a_verdict_gets_result_code_error_and_the_reason_code(
        server: ModbusServer, outcome: TriggerOutcome, error: ResultError) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port), got)
    try:
        plc.trigger(1, "NOBODY-7")
        [trigger] = got.wait(1)
        src.answer(unjudged(trigger, outcome, "no order lists unit NOBODY-7"))
        assert take(plc) == (ERROR, int(error), "NOBODY-7")
    finally:
        src.close()


def test_a_verdict_with_missing_views_says_so_in_the_error_register(server: ModbusServer) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port), got)
    try:
        plc.trigger(1, "U-9")
        [trigger] = got.wait(1)
        answer = judged(trigger)
        from tests.inspection.signals.records import unit_verdict

        verdict = unit_verdict("U-9", Verdict.REVIEW, missing=("back",))
        src.answer(type(answer)(trigger, TriggerOutcome.MISSING_VIEWS, answer.answered_at, verdict=verdict))
        assert take(plc) == (3, int(ResultError.MISSING_VIEWS), "U-9")
    finally:
        src.close()


@pytest.mark.parametrize(("slots", "units", "expected", "missed"), [
    (2, ("A-1", "A-2"), ["A-1", "A-2"], 0),  # two units within one poll, each in its slot: none lost
    (1, ("A-1",), ["A-1"], 1),               # one slot: the newer unit overwrote the older; counted, logged
])
def test_two_triggers_faster_than_one_poll(server: ModbusServer, slots: int, units: tuple[str, ...],
                                           expected: list[str], missed: int,
                                           caplog: pytest.LogCaptureFixture) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port, slots=slots), got)
    try:
        with caplog.at_level(logging.ERROR, logger="inspection.line.sources.plc"):
            # counter 0 -> 2 in a single write: whenever the station polls, it sees both steps at once.
            # Slot of trigger n is n % slots: with 2 slots trigger 1 is in slot 1 and trigger 2 in slot 0.
            if slots == 2:
                plc.write_words(SLOT1, ascii_words(units[0]))
                plc.trigger(2, units[1])
            else:
                plc.trigger(2, units[0])
            got.wait(len(expected))
            assert wait_until(lambda: src.stats.polls > 10)
        assert got.units == expected and src.stats.missed == missed
        assert [t.reply_to for t in got.triggers] == (["1", "2"] if slots == 2 else ["2"])
    finally:
        src.close()
    assert any("1 oldest" in r.getMessage() for r in caplog.records) == bool(missed)


@pytest.mark.parametrize("entry", [
    {"registers": {"trigger": 199, "unit": 20}, "slots": 8, "slot_stride": 20, "unit_words": 10},  # > 125 registers
    {"registers": {"trigger": 130, "unit": 100}, "unit_words": 4},  # trigger after the unit
])
def test_a_layout_read_in_two_requests_reads_the_trigger_first(server: ModbusServer, entry: dict[str, Any]) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port, results={"registers": {"unit_id": 180, "error": 190}, "heartbeat_s": 0.1},
                         **entry), got)
    try:
        registers = entry["registers"]
        stride = entry.get("slot_stride", 0)
        words = entry["unit_words"]
        for n in (1, 2, 3):
            slot = n % entry.get("slots", 1)
            plc.write_words(registers["unit"] + slot * stride, ascii_words(f"L-{n}", words))
            plc.write_words(registers["trigger"], [n])
            got.wait(n)
        assert got.units == ["L-1", "L-2", "L-3"]
    finally:
        src.close()


def test_a_trigger_bit_is_taken_once_and_cleared(server: ModbusServer) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port, mode="bit", unit_format="uint32", registers={"trigger": 100, "unit": 101}),
                  got)
    try:
        for n, unit in enumerate((70001, 70002), start=1):
            plc.write_words(UNIT, [unit >> 16, unit & 0xFFFF])
            plc.write_words(TRIGGER, [1])
            got.wait(n)
            assert wait_until(lambda: plc.read_words(TRIGGER)[0] == 0)  # the station cleared it
        assert wait_until(lambda: src.stats.polls > 10)
        assert got.units == ["70001", "70002"] and src.stats.duplicates == 0
    finally:
        src.close()


def test_a_bit_already_set_when_the_station_starts_is_answered_missed_not_judged(server: ModbusServer) -> None:
    """The unit it was set for may be gone: judging frames of whatever is in front now would be wrong."""
    plc, got = ModbusPlcPeer(server.port), Collected()
    plc.write_words(TRIGGER, [1, *ascii_words("STALE-1")])
    src = started(source(server.port, mode="bit"), got)
    try:
        assert take(plc) == (ERROR, int(ResultError.MISSED), "STALE-1")
        assert plc.read_words(TRIGGER)[0] == 0 and src.stats.missed == 1
        plc.write_words(TRIGGER, [1, *ascii_words("FRESH-2")])
        assert [t.unit_id for t in got.wait(1)] == ["FRESH-2"]
    finally:
        src.close()


@pytest.mark.parametrize(("words", "problem"), [
    ([0] * 10, "empty"),
    ([0xC3A9] + [0] * 9, "not ASCII"),
])
def test_an_unreadable_unit_number_is_answered_not_handed_on(server: ModbusServer, words: list[int],
                                                            problem: str) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    src = started(source(server.port), got)
    try:
        plc.write_words(TRIGGER, [1, *words])
        assert take(plc) == (ERROR, int(ResultError.UNREADABLE), "")
        assert src.stats.malformed == 1 and got.triggers == []
    finally:
        src.close()


def test_a_restarted_station_takes_no_counter_value_twice_and_answers_what_came_while_it_was_down(
        server: ModbusServer, tmp_path: Path) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    first = started(source(server.port, tmp_path), got)
    try:
        plc.trigger(1, "R-1")
        [t1] = got.wait(1)
        first.answer(judged(t1))
        assert take(plc) == (OK, 0, "R-1")
    finally:
        first.close()
    assert (tmp_path / "line" / "trigger-plc.json").exists()
    plc.trigger(2, "R-2")  # the station is down: nobody sees this unit pass
    again, got_again = source(server.port, tmp_path), Collected()
    started(again, got_again)
    try:
        assert take(plc) == (ERROR, int(ResultError.MISSED), "R-2")  # answered, never judged
        plc.trigger(3, "R-3")
        [t3] = got_again.wait(1)
        assert t3.unit_id == "R-3" and again.stats.missed == 1
        assert wait_until(lambda: again.stats.polls > 10) and got_again.units == ["R-3"]
    finally:
        again.close()


def test_without_a_state_file_the_counter_found_on_start_is_taken_as_seen(server: ModbusServer) -> None:
    plc, got = ModbusPlcPeer(server.port), Collected()
    plc.trigger(41, "OLD")
    src = started(source(server.port), got)
    try:
        assert wait_until(lambda: src.stats.polls > 10)
        assert got.triggers == [] and plc.read("result_valid") == 0
        plc.trigger(42, "NEW")
        assert [t.unit_id for t in got.wait(1)] == ["NEW"]
    finally:
        src.close()


def test_a_plc_restart_is_counted_and_its_reset_counter_is_a_new_baseline() -> None:
    port = free_port()
    got = Collected()
    with ModbusServer(port=port):
        plc = ModbusPlcPeer(port)
        src = started(source(port), got)
        plc.trigger(1, "P-1")
        got.wait(1)
    try:
        assert wait_until(lambda: not src.stats.connected and src.stats.disconnects == 1)
        with ModbusServer(port=port):  # every register back to 0, the counter too
            plc = ModbusPlcPeer(port)
            assert wait_until(lambda: src.stats.connected, 20)
            polls = src.stats.polls
            assert wait_until(lambda: src.stats.polls > polls + 5)
            plc.trigger(1, "P-after")
            assert [t.unit_id for t in got.wait(2)] == ["P-1", "P-after"]  # counter 1 again: a new trigger
    finally:
        src.close()
    assert src.stats.missed == 0


def test_triggers_during_a_cut_link_are_answered_as_missed_and_the_line_goes_on(server: ModbusServer) -> None:
    proxy = TcpProxy("127.0.0.1", server.port)
    plc, got = ModbusPlcPeer(server.port), Collected()
    # the trigger reader goes through the cable that is cut; the results use the PLC's port directly
    output = PlcOutput(ModbusBackend("127.0.0.1", server.port), heartbeat_s=0.1)
    reader = ModbusTriggerReader(ModbusLink("127.0.0.1", proxy.port), ModbusTriggerLayout())
    src = started(PlcTriggerSource(reader, output, name="plc", channel=TriggerChannel.MODBUS, poll_s=0.005,
                                   max_backoff_s=0.5), got)
    try:
        proxy.cut()
        assert wait_until(lambda: not src.stats.connected)
        plc.trigger(1, "LOST-1")  # the station cannot see it
        proxy.restore()
        assert take(plc, timeout_s=20) == (ERROR, int(ResultError.MISSED), "LOST-1")
        plc.trigger(2, "SEEN-2")
        [trigger] = got.wait(1)
        src.answer(judged(trigger))
        assert take(plc) == (OK, 0, "SEEN-2")
        assert src.stats.disconnects >= 1 and src.stats.missed == 1 and got.units == ["SEEN-2"]
    finally:
        src.close()  # closes the output it owns
        proxy.close()


def test_with_the_stations_plc_output_only_verdictless_answers_are_added(server: ModbusServer) -> None:
    """QC_MODBUS_HOST names the same PLC: its PlcOutput presents every committed verdict; the source must not
    present it a second time, and adds the answers that have no verdict."""
    plc, got = ModbusPlcPeer(server.port), Collected()
    station_output = PlcOutput(ModbusBackend("127.0.0.1", server.port), heartbeat_s=0.1)
    [src] = build_trigger_sources([{"kind": "modbus", "host": "127.0.0.1", "port": server.port, "poll_ms": 5}],
                                  station_id="st-1", line_signals=[station_output])
    assert isinstance(src, PlcTriggerSource) and src.output is station_output
    started(src, got)
    try:
        plc.trigger(1, "S-1")
        plc_trigger = got.wait(1)[0]
        src.answer(judged(plc_trigger, Verdict.FAIL))  # the sink's job: not presented by the source
        plc.trigger(2, "S-2")
        src.answer(unjudged(got.wait(2)[1], TriggerOutcome.UNKNOWN_UNIT, "no order"))
        assert take(plc) == (ERROR, int(ResultError.UNKNOWN_UNIT), "S-2")  # the first result the PLC sees
        assert int(plc.read("sequence")) == 1
    finally:
        src.close()
        station_output.close()  # not closed by the source: the station's sink outlives it


def test_an_absent_plc_is_counted_and_retried() -> None:
    got = Collected()
    src = source(free_port())
    src.start(got)
    try:
        assert wait_until(lambda: src.stats.errors >= 2, 20)
        stats = src.stats
        assert not stats.connected and "cannot connect" in stats.last_error and stats.polls == 0
    finally:
        src.close()
