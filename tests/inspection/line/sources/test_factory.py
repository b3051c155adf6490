"""The station config's ``triggers:`` entries: validated per kind with one-line errors naming entry and key,
and the Modbus register layout decoded from a block of registers."""

from __future__ import annotations

from typing import Any

import pytest

from inspection.errors import ConfigError
from inspection.line.sources import TRIGGER_KINDS, build_trigger_sources, parse_trigger_specs
from inspection.line.sources.modbus import ModbusTriggerLayout
from inspection.line.sources.plc import Slot
from inspection.signals.modbus import ascii_words
from tests.inspection.signals.peers import free_port

MODBUS = {"kind": "modbus", "host": "127.0.0.1"}


@pytest.mark.parametrize(("entry", "message"), [
    ({"kind": "serial"}, r"triggers\[0\]: kind must be one of modbus, opcua, mqtt, label, http, not 'serial'"),
    ({"host": "plc"}, r"triggers\[0\]: kind must be one of"),
    ({"kind": "modbus"}, r"triggers\[0\] \(kind modbus\): host: Field required"),
    ({**MODBUS, "name": "line 4"}, r"name: String should match pattern"),
    ({**MODBUS, "pol_ms": 5}, r"pol_ms: Extra inputs are not permitted"),
    ({**MODBUS, "mode": "edge"}, r"mode: Input should be 'counter' or 'bit'"),
    ({**MODBUS, "registers": {"trigger": 70000}}, r"registers.trigger: Input should be less than or equal to 65535"),
    ({**MODBUS, "unit_format": "float"}, r"unit_format: Input should be 'ascii', 'uint16' or 'uint32'"),
    ({**MODBUS, "results": {"handshake": "two-step"}}, r"results.handshake"),
    ({"kind": "opcua", "url": "http://plc:4840", "nodes": {"trigger": "t", "unit": "u"}}, r"url: String should match"),
    ({"kind": "opcua", "url": "opc.tcp://plc:4840"}, r"nodes: Field required"),
    ({"kind": "mqtt", "max_payload_bytes": 10}, r"max_payload_bytes: Input should be greater than or equal to 64"),
    ({"kind": "label"}, r"camera: Field required"),
    ({"kind": "label", "camera": "top", "label": {"formats": ["Qr"]}}, r"label.formats: .*unknown label format"),
    ({"kind": "label", "camera": "top", "label": {"pattern": "(.+)"}}, r"label.pattern: .*named group 'unit'"),
])
def test_a_bad_entry_is_a_one_line_error_naming_the_entry_and_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_trigger_specs([entry])
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("entry", "message"), [
    ({**MODBUS, "registers": {"trigger": 3}}, r"triggers\[0\] \(modbus-0\): registers: trigger register trigger "
                                              r"\(3\) overlaps result register sequence"),
    ({**MODBUS, "registers": {"trigger": 100, "unit": 100}}, r"registers unit and trigger overlap at 100"),
    ({**MODBUS, "mode": "bit", "slots": 2}, r"a trigger bit has one slot"),
    ({**MODBUS, "slots": 3}, r"slots must be 1, 2, 4, 8 or 16"),
    ({**MODBUS, "slots": 2, "slot_stride": 5}, r"overlap"),
    ({**MODBUS, "results": {"registers": {"colour": 9}}}, r"unknown signals \['colour'\]"),
    ({"kind": "mqtt"}, r"triggers\[0\] \(mqtt-0\): url: no url and no QC_MQTT_URL"),
    ({"kind": "mqtt", "url": "http://broker"}, r"must look like mqtt://"),
    ({"kind": "mqtt", "url": "mqtt://broker", "topic": "mes/tr#"}, r"not a topic filter"),
    ({"kind": "mqtt", "url": "mqtt://broker", "answer_topic": "mes/+/answer"}, r"not a topic to publish to"),
    ({"kind": "label", "camera": "top"}, r"needs the station's cameras"),
])
def test_an_entry_that_cannot_work_is_refused_before_anything_connects(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_trigger_sources([entry], station_id="st-1")


def test_names_default_to_kind_and_index_and_must_differ() -> None:
    specs = parse_trigger_specs([{"kind": "http", "max_body": 1}, {**MODBUS}, {**MODBUS, "name": "infeed"}])
    assert [getattr(s, "name", None) for s in specs] == [None, "modbus-1", "infeed"]
    with pytest.raises(ConfigError, match=r"triggers\[1\] \(a\): name 'a' is used by another"):
        parse_trigger_specs([{**MODBUS, "name": "a"}, {"kind": "label", "camera": "top", "name": "a"}])


def test_http_entries_are_the_api_s_and_build_nothing_here() -> None:
    assert build_trigger_sources([{"kind": "http"}], station_id="st-1") == []
    assert set(TRIGGER_KINDS) == {"modbus", "opcua", "mqtt", "label", "http"}


def test_a_built_source_is_closed_when_a_later_entry_fails() -> None:
    """Nothing half-built stays running: the first source's handshake thread is stopped."""
    import threading

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ConfigError):
        build_trigger_sources([{**MODBUS, "port": free_port()}, {"kind": "label", "camera": "x"}], station_id="s")
    assert not {t.name for t in threading.enumerate() if t.is_alive()} - before


@pytest.mark.parametrize(("layout", "block", "slots"), [
    (ModbusTriggerLayout(unit_format="uint16", order=102), [7, 1234, *ascii_words("O-77")],
     (Slot("1234", "O-77"),)),
    (ModbusTriggerLayout(unit_format="uint16", order=102), [7, 1234] + [0] * 10, (Slot("1234", None),)),
    (ModbusTriggerLayout(unit_format="uint32"), [1, 0x0001, 0x0002], (Slot("65538"),)),
    (ModbusTriggerLayout(unit_format="uint16"), [1, 0], (Slot("", None, "unit number is 0 (not written by the "
                                                               "PLC?)"),)),
    (ModbusTriggerLayout(unit_words=2), [1, *ascii_words(" A1 ", 2)], (Slot("A1"),)),
    (ModbusTriggerLayout(unit_words=2, order=103, order_words=1, slots=2),
     [2, *ascii_words("U1", 2), *ascii_words("O1", 1), *ascii_words("U2", 2), *ascii_words("O2", 1)],
     (Slot("U1", "O1"), Slot("U2", "O2"))),
])
def test_the_register_layout_decodes_each_slot(layout: ModbusTriggerLayout, block: list[int],
                                               slots: tuple[Slot, ...]) -> None:
    start, count = layout.span()
    assert start == 100 and count == len(block)
    snapshot = layout.decode(block, start)
    assert snapshot.trigger == block[0] and snapshot.slots == slots


def test_the_example_entries_in_the_deployment_guide_are_valid() -> None:
    import yaml

    from inspection.settings import REPO_ROOT

    text = (REPO_ROOT / "docs" / "deployment.md").read_text()
    block = text.split("### One entry per kind", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    entries = yaml.safe_load(block)["triggers"]
    specs = parse_trigger_specs(entries)
    assert [s.kind for s in specs] == ["modbus", "opcua", "mqtt", "label", "http"]


def test_a_config_record_with_kind_options_and_where_is_taken_as_an_entry() -> None:
    """The station config hands its entries over as records that know their file and line."""
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Entry:
        kind: str
        options: dict[str, Any] = field(default_factory=dict)
        where: str = ""

    [spec] = parse_trigger_specs([Entry("label", {"camera": "top", "name": "tag"}, "station.yaml:12")])
    assert (spec.kind, getattr(spec, "camera", None)) == ("label", "top")
    with pytest.raises(ConfigError, match=r"^station.yaml:14 \(kind modbus\): host: Field required"):
        parse_trigger_specs([Entry("modbus", {}, "station.yaml:14")])


@pytest.mark.parametrize("content", ["{not json", '{"counter": "7"}', "[]", ""])
def test_an_unreadable_counter_state_is_no_state(tmp_path: Any, content: str) -> None:
    from inspection.line.sources.plc import CounterState

    path = tmp_path / "trigger-plc.json"
    path.write_text(content)
    state = CounterState(path)
    assert state.load() is None
    state.save(65535)
    assert state.load() == 65535 and not path.with_suffix(".tmp").exists()
