"""MQTT triggers from the MES against the real Mosquitto: valid triggers, malformed and oversized payloads,
a re-delivered trigger id, and answers correlated by trigger id on the answer or reply_to topic."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drills.tcp_proxy import TcpProxy
from inspection.line.sources import build_trigger_sources
from inspection.line.sources.mqtt import ANSWER_SCHEMA, ERROR_SCHEMA, MqttTriggerSource
from inspection.line.triggers import TriggerChannel, TriggerOutcome
from inspection.types import Verdict
from tests.inspection.line.sources.helpers import Collected, judged, unjudged
from tests.inspection.signals.conftest import Subscriber
from tests.inspection.signals.peers import wait_until

STATION = "st-7"


class Mes:
    """The MES: publishes triggers at QoS 1 and waits for each PUBACK."""

    def __init__(self, host: str, port: int) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qctest-mes-{secrets.token_hex(4)}")
        self.client.connect(host, port)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def mes(broker: tuple[str, int]) -> Iterator[Mes]:
    m = Mes(*broker)
    yield m
    m.close()


@pytest.fixture
def source(broker: tuple[str, int], prefix: str) -> Iterator[tuple[MqttTriggerSource, Collected]]:
    [src] = build_trigger_sources([{"kind": "mqtt", "name": "mes", "url": f"mqtt://{broker[0]}:{broker[1]}",
                                    "topic_prefix": prefix, "max_payload_bytes": 512}], station_id=STATION)
    assert isinstance(src, MqttTriggerSource)
    got = Collected()
    src.start(got)
    assert src.subscribed.wait(10), src.stats
    yield src, got
    src.close()


def test_a_trigger_becomes_one_trigger_and_its_answer_carries_the_trigger_id(
        source: tuple[MqttTriggerSource, Collected], mes: Mes, subscriber: Subscriber, prefix: str) -> None:
    src, got = source
    at = datetime.now(UTC) - timedelta(seconds=1)
    mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-1", "unit_id": "DOOR/17", "order_id": "O-3",
                                             "at": at.isoformat(), "extra": "ignored"})
    [trigger] = got.wait(1)
    assert (trigger.trigger_id, trigger.unit_id, trigger.order_id, trigger.channel) == ("T-1", "DOOR/17", "O-3",
                                                                                        TriggerChannel.MQTT)
    assert trigger.at == at and trigger.reply_to == ""
    src.answer(judged(trigger, Verdict.FAIL))
    [(topic, answer)] = [m for m in subscriber.take(2) if not m[0].endswith("/trigger")]
    assert topic == f"{prefix}/{STATION}/trigger/answer"
    assert answer["schema"] == ANSWER_SCHEMA and answer["trigger_id"] == "T-1" and answer["unit_id"] == "DOOR/17"
    assert (answer["outcome"], answer["verdict"], answer["order_id"]) == ("judged", "FAIL", "O-3")
    assert answer["reasons"] and answer["station_id"] == STATION
    assert src.stats.received == 1 and src.stats.answered == 1


def test_an_answer_goes_to_reply_to_when_the_trigger_names_one(
        source: tuple[MqttTriggerSource, Collected], mes: Mes, broker: tuple[str, int], prefix: str) -> None:
    src, got = source
    replies = Subscriber(*broker, f"{prefix}/mes/replies")
    try:
        mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-2", "unit_id": "U-2",
                                                 "reply_to": f"{prefix}/mes/replies"})
        [trigger] = got.wait(1)
        assert trigger.reply_to == f"{prefix}/mes/replies" and trigger.at == trigger.received_at
        src.answer(unjudged(trigger, TriggerOutcome.UNKNOWN_UNIT, "no order lists unit U-2"))
        [(_, answer)] = replies.take(1)
    finally:
        replies.close()
    assert (answer["trigger_id"], answer["outcome"], answer["verdict"]) == ("T-2", "unknown_unit", None)
    assert answer["error"] == "no order lists unit U-2"


@pytest.mark.parametrize(("payload", "reason", "trigger_id"), [
    (b"{not json", "not JSON", None),
    (b'["T-3", "U-3"]', "a JSON object is expected", None),
    (b'{"trigger_id": "T-4"}', "unit_id: Field required", "T-4"),
    (b'{"trigger_id": "T-5", "unit_id": "  "}', "unit_id", "T-5"),
    (b'{"trigger_id": "T-6", "unit_id": "U-6", "at": "2026-12-01T10:00:00"}', "at: Input should have timezone",
     "T-6"),
    (b'{"trigger_id": "T-7", "unit_id": "U-7", "reply_to": "mes/#"}', "reply_to", "T-7"),
    (b'{"trigger_id": "T-9", "unit_id": "U-9", "at": "2020-01-01T00:00:00Z"}', "from the station's clock, more than",
     "T-9"),
    (b'{"trigger_id": "T-8", "unit_id": "' + b"x" * 600 + b'"}', "over the 512-byte limit", None),
    (b"\xff\xfe", "not JSON", None),
])
def test_a_malformed_trigger_is_answered_on_the_error_topic_and_the_loop_goes_on(
        source: tuple[MqttTriggerSource, Collected], mes: Mes, broker: tuple[str, int], prefix: str,
        payload: bytes, reason: str, trigger_id: str | None) -> None:
    src, got = source
    errors = Subscriber(*broker, f"{prefix}/{STATION}/trigger/error")
    try:
        mes.send(f"{prefix}/{STATION}/trigger", payload)
        [(_, error)] = errors.take(1)
        mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-ok", "unit_id": "U-ok"})
        assert [t.trigger_id for t in got.wait(1)] == ["T-ok"]  # the next good one still comes through
    finally:
        errors.close()
    assert error["schema"] == ERROR_SCHEMA and reason in error["error"] and error["trigger_id"] == trigger_id
    assert src.stats.malformed == 1 and src.stats.received == 1


def test_a_redelivered_trigger_id_is_judged_once(source: tuple[MqttTriggerSource, Collected], mes: Mes,
                                                 prefix: str) -> None:
    src, got = source
    for _ in range(3):
        mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-dup", "unit_id": "U-1"})
    mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-next", "unit_id": "U-2"})
    got.wait(2)
    assert wait_until(lambda: src.stats.duplicates == 2)
    assert [t.trigger_id for t in got.triggers] == ["T-dup", "T-next"]


def test_reply_to_can_be_refused_per_station(broker: tuple[str, int], prefix: str, mes: Mes) -> None:
    [src] = build_trigger_sources([{"kind": "mqtt", "url": f"mqtt://{broker[0]}:{broker[1]}",
                                    "topic_prefix": prefix, "allow_reply_to": False}], station_id=STATION)
    got = Collected()
    src.start(got)
    try:
        assert isinstance(src, MqttTriggerSource) and src.subscribed.wait(10)
        mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-r", "unit_id": "U-r", "reply_to": "other/topic"})
        assert wait_until(lambda: src.stats.malformed == 1)
        assert got.triggers == []
    finally:
        src.close()


def test_after_a_cut_to_the_broker_the_source_subscribes_again(broker: tuple[str, int], prefix: str,
                                                               mes: Mes) -> None:
    proxy = TcpProxy(*broker)
    [src] = build_trigger_sources([{"kind": "mqtt", "url": f"mqtt://127.0.0.1:{proxy.port}", "topic_prefix": prefix}],
                                  station_id=STATION)
    assert isinstance(src, MqttTriggerSource)
    got = Collected()
    src.start(got)
    try:
        assert src.subscribed.wait(10)
        proxy.cut()
        assert wait_until(lambda: not src.stats.connected, 20)
        proxy.restore()
        assert wait_until(lambda: src.subscribed.is_set(), 30), src.stats
        mes.send(f"{prefix}/{STATION}/trigger", {"trigger_id": "T-after", "unit_id": "U-after"})
        assert [t.trigger_id for t in got.wait(1)] == ["T-after"]
        assert src.stats.disconnects == 1
    finally:
        src.close()
        proxy.close()


def test_an_absent_broker_is_reported_not_raised() -> None:
    from tests.inspection.signals.peers import free_port

    [src] = build_trigger_sources([{"kind": "mqtt", "url": f"mqtt://127.0.0.1:{free_port()}"}], station_id=STATION)
    src.start(Collected())
    try:
        assert wait_until(lambda: "cannot reach the broker" in src.stats.last_error, 10)  # type: ignore[attr-defined]
        assert not src.stats.connected  # type: ignore[attr-defined]
    finally:
        src.close()
