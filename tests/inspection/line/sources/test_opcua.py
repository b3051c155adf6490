"""PLC triggers over OPC UA against a real asyncua server playing the PLC: a counter node and a bit node,
a unit number as String or integer node, and answers through the result nodes' handshake."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from drills.peers import wait_until
from drills.plc import OpcUaServer, Taken, take_result
from inspection.settings import REPO_ROOT
from inspection.signals.handshake import ResultError
from inspection.types import Verdict
from tests.inspection.line.sources.helpers import Collected, judged, unjudged

pytest.importorskip("asyncua", reason="asyncua is not installed: pip install -e '.[opcua]' (or '.[dev]') to run the "
                    "OPC UA tests")

from asyncua import ua

from inspection.line.sources import build_trigger_sources
from inspection.line.sources.plc import PlcTriggerSource
from inspection.line.triggers import TriggerChannel, TriggerOutcome


class LinePlc(OpcUaServer):
    """The handshake nodes plus the trigger nodes a PLC program writes: ``line.trigger`` (UInt16),
    ``line.unit`` (String), ``line.unit_no`` (UInt32), ``line.order`` (String) and the ``error`` result node."""

    def __init__(self) -> None:
        super().__init__()
        ns = self.namespace
        folder = self.server.nodes.objects.add_object(ns, "line")
        for name, value, vtype in (("trigger", 0, ua.VariantType.UInt16), ("unit", "", ua.VariantType.String),
                                   ("unit_no", 0, ua.VariantType.UInt32), ("order", "", ua.VariantType.String)):
            node = folder.add_variable(ua.NodeId.from_string(f"ns={ns};s=line.{name}"), name, value, varianttype=vtype)
            node.set_writable()
            self.nodes[f"line.{name}"] = node
        node = folder.add_variable(ua.NodeId.from_string(f"ns={ns};s=line.bit"), "bit", False,
                                   varianttype=ua.VariantType.Boolean)
        node.set_writable()
        self.nodes["line.bit"] = node
        node = folder.add_variable(ua.NodeId.from_string(f"ns={ns};s=qcline.error"), "error", 0,
                                   varianttype=ua.VariantType.UInt16)
        node.set_writable()
        self.nodes["error"] = node

    def write(self, name: str, value: int | str) -> None:  # also the line's nodes
        if name == "line.bit":
            self.nodes[name].write_value(ua.Variant(bool(value), ua.VariantType.Boolean))
            return
        vtype = {"line.unit": ua.VariantType.String, "line.order": ua.VariantType.String,
                 "line.unit_no": ua.VariantType.UInt32}.get(name, ua.VariantType.UInt16)
        self.nodes[name].write_value(ua.Variant(value, vtype))


@pytest.fixture(scope="module")
def plc() -> Iterator[LinePlc]:
    s = LinePlc()
    with s:
        yield s


@pytest.fixture(autouse=True)
def _reset(plc: LinePlc) -> None:
    for name in ("ack", "sequence", "fault", "result_valid", "error", "line.trigger", "line.unit_no"):
        plc.write(name, 0)
    plc.write("line.unit", "")
    plc.write("line.order", "")


def source(plc: LinePlc, **entry: Any) -> PlcTriggerSource:
    ns = plc.namespace
    spec = {"kind": "opcua", "name": "opc", "url": plc.url, "poll_ms": 5,
            "nodes": {"trigger": f"ns={ns};s=line.trigger", "unit": f"ns={ns};s=line.unit",
                      "order": f"ns={ns};s=line.order"},
            "results": {"node_prefix": plc.node_prefix, "heartbeat_s": 0.1}, **entry}
    [built] = build_trigger_sources([spec], station_id="st-1")
    assert isinstance(built, PlcTriggerSource)
    return built


def started(src: PlcTriggerSource, got: Collected) -> PlcTriggerSource:
    src.start(got)
    assert wait_until(lambda: src.stats.polls >= 1, 20), src.stats
    return src


def test_a_counter_node_triggers_and_the_answer_goes_to_the_result_nodes(plc: LinePlc) -> None:
    got = Collected()
    src = started(source(plc), got)
    try:
        plc.write("line.unit", "PANEL-12")
        plc.write("line.order", "O-9")
        plc.write("line.trigger", 1)
        [trigger] = got.wait(1)
        assert (trigger.unit_id, trigger.order_id, trigger.channel) == ("PANEL-12", "O-9", TriggerChannel.OPCUA)
        src.answer(judged(trigger, Verdict.FAIL))
        assert take_result(plc) == Taken(2, 1, "PANEL-12")
        plc.write("line.unit", "PANEL-13")
        plc.write("line.trigger", 2)
        second = got.wait(2)[1]
        src.answer(unjudged(second, TriggerOutcome.UNKNOWN_UNIT, "no order lists PANEL-13"))
        taken = take_result(plc)
        assert (taken.code, taken.unit_id, taken.error) == (4, "PANEL-13", int(ResultError.UNKNOWN_UNIT))
        assert wait_until(lambda: src.stats.polls > 20) and got.units == ["PANEL-12", "PANEL-13"]
    finally:
        src.close()


def test_a_counter_that_moves_twice_within_a_poll_counts_the_older_trigger_missed(plc: LinePlc) -> None:
    got = Collected()
    src = started(source(plc), got)
    try:
        plc.write("line.unit", "B")
        plc.write("line.trigger", 2)  # 0 -> 2 at once: one slot, the older unit's number is gone
        assert [t.unit_id for t in got.wait(1)] == ["B"]
        assert src.stats.missed == 1
    finally:
        src.close()


def test_a_bit_node_with_an_integer_unit_is_taken_once_and_cleared(plc: LinePlc) -> None:
    got = Collected()
    ns = plc.namespace
    src = started(source(plc, mode="bit", nodes={"trigger": f"ns={ns};s=line.trigger",
                                                 "unit": f"ns={ns};s=line.unit_no"}), got)
    try:
        for n, unit in enumerate((900001, 900002), start=1):
            plc.write("line.unit_no", unit)
            plc.write("line.trigger", 1)
            got.wait(n)
            assert wait_until(lambda: plc.read("line.trigger") == 0)
        assert wait_until(lambda: src.stats.polls > 10)
        assert got.units == ["900001", "900002"] and got.triggers[0].order_id is None
    finally:
        src.close()


def test_a_boolean_bit_node_is_cleared_with_false(plc: LinePlc) -> None:
    got = Collected()
    ns = plc.namespace
    plc.write("line.bit", 0)
    src = started(source(plc, mode="bit", nodes={"trigger": f"ns={ns};s=line.bit", "unit": f"ns={ns};s=line.unit"}),
                  got)
    try:
        plc.write("line.unit", "GLASS-1")
        plc.write("line.bit", 1)
        assert got.wait(1)[0].unit_id == "GLASS-1"
        assert wait_until(lambda: plc.nodes["line.bit"].read_value() is False)
    finally:
        src.close()


def test_a_missing_trigger_node_is_retried_with_the_reason(plc: LinePlc) -> None:
    src = source(plc, nodes={"trigger": "ns=2;s=nowhere", "unit": "ns=2;s=line.unit"})
    src.start(Collected())
    try:
        assert wait_until(lambda: "nowhere" in src.stats.last_error, 20), src.stats
        assert not src.stats.connected
    finally:
        src.close()


def test_an_opcua_trigger_without_asyncua_says_how_to_install() -> None:
    script = ("import sys; sys.modules['asyncua'] = None; sys.modules['asyncua.sync'] = None\n"
              "from inspection.errors import ConfigError\n"
              "from inspection.line.sources import build_trigger_sources\n"
              "try:\n"
              "    build_trigger_sources([{'kind': 'opcua', 'url': 'opc.tcp://127.0.0.1:4840',\n"
              "                            'nodes': {'trigger': 'ns=2;s=t', 'unit': 'ns=2;s=u'}}], station_id='s')\n"
              "except ConfigError as e:\n"
              "    print(e)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "asyncua is not installed: pip install 'qcline[opcua]'" in out.stdout, out.stderr
    assert out.stdout.startswith("triggers[0] (opcua-0):")
