"""Triggers the MES publishes over MQTT, answered on MQTT with the trigger id for correlation.

Topics (``<base>`` = ``<prefix>/<station>``, as for the verdicts of ``inspection.signals``):

``<base>/trigger`` (subscribed, QoS 1)
    ``{"trigger_id": "T-1", "unit_id": "U-7", "order_id": "O-3", "at": "2026-12-01T10:00:00.120Z",
    "reply_to": "mes/replies/line4"}``; ``order_id``, ``at`` (when the unit was in place, with a time zone)
    and ``reply_to`` are optional. At most ``max_payload_bytes`` (4096).
``reply_to``, else ``<base>/trigger/answer`` (published, QoS 1)
    the answer (``schema`` ``qcline.trigger-answer/1``): trigger id, unit, order, outcome, verdict (or null),
    reasons, missing views, error, latency.
``<base>/trigger/error`` (published, QoS 1)
    a message that is no trigger (not JSON, over the size limit, a field missing or wrong): its reason and,
    where it could be read, the trigger id. Logged and counted ``malformed``; the loop goes on.

An ``at`` further than ``max_clock_skew_s`` (10 s) from the station's clock is refused the same way: frames
bound to a time that far off would belong to another unit (0 accepts any ``at``).

QoS 1 is at-least-once: the broker may deliver a trigger twice (a lost PUBACK). The last ``dedup_window``
trigger ids are remembered; a repeat is counted ``duplicates`` and not handed on, so a unit is judged once.
Answers are published through paho's queue (bounded by ``max_queued``); one the broker has not acknowledged
is sent again after a reconnect. The unit's verdict itself also goes to the MES through the durable spool of
``inspection.signals.mqtt``: the answer is the reply to the trigger, the verdict topic the record.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Annotated, Any

import paho.mqtt.client as paho
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from inspection.line.sources.base import MAX_ID_CHARS, SourceStats, StatsBox, now_utc
from inspection.line.triggers import Trigger, TriggerAnswer, TriggerChannel, TriggerSink
from inspection.signals.mqtt import MqttConfig, paho_client
from inspection.signals.payloads import Topics, encode

log = logging.getLogger(__name__)

ANSWER_SCHEMA = "qcline.trigger-answer/1"
ERROR_SCHEMA = "qcline.trigger-error/1"

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_CHARS)]


def check_topic(topic: str) -> str:
    """A topic the station may publish to: no wildcards, no ``$`` topics, no NUL, no empty level."""
    if (not topic or len(topic) > 256 or any(ch in topic for ch in "+#\x00") or topic.startswith("$")
            or "" in topic.split("/")):
        raise ValueError(f"{topic[:80]!r} is not a topic to publish to (no +, #, $, NUL or empty levels, "
                         "at most 256 characters)")
    return topic


def check_filter(topic: str) -> str:
    """A topic filter to subscribe to: ``+`` only as a whole level, ``#`` only as the last one."""
    levels = topic.split("/")
    bad = (not topic or len(topic) > 256 or "\x00" in topic
           or any(("+" in level and level != "+") or ("#" in level and level != "#") for level in levels)
           or "#" in levels[:-1])
    if bad:
        raise ValueError(f"topic {topic[:80]!r} is not a topic filter (+ and # only as whole levels, # last)")
    return topic


class TriggerMessage(BaseModel):
    """The MES's trigger message; fields beyond these are ignored (an MES may send more)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    trigger_id: Id
    unit_id: Id
    order_id: Id | None = None
    at: AwareDatetime | None = None
    reply_to: str | None = Field(default=None, max_length=256)

    @field_validator("reply_to")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return None if value is None else check_topic(value)


def _reason(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, x['loc'])) or '(root)'}: {x['msg']}" for x in e.errors())


def answer_payload(answer: TriggerAnswer, station_id: str) -> dict[str, object]:
    t, v = answer.trigger, answer.verdict
    return {
        "schema": ANSWER_SCHEMA,
        "station_id": station_id,
        "trigger_id": t.trigger_id,
        "unit_id": t.unit_id,
        "order_id": v.order_id if v is not None else t.order_id,
        "outcome": answer.outcome.value,
        "verdict": v.verdict.value if v is not None else None,
        "reasons": list(v.reasons) if v is not None else [],
        "missing_views": list(v.missing_views) if v is not None else [],
        "error": answer.error,
        "latency_ms": round(answer.latency_ms, 1),
        "answered_at": answer.answered_at.isoformat(timespec="milliseconds"),
    }


class MqttTriggerSource:
    """A ``TriggerSource`` subscribed to the MES's trigger topic."""

    channel = TriggerChannel.MQTT

    def __init__(self, config: MqttConfig, *, name: str, topic: str | None = None, answer_topic: str | None = None,
                 error_topic: str | None = None, allow_reply_to: bool = True, max_payload_bytes: int = 4096,
                 dedup_window: int = 4096, max_queued: int = 10_000, client_id: str | None = None,
                 max_clock_skew_s: float = 10.0) -> None:
        base = Topics(config.topic_prefix, config.station_id).base
        self.name = name
        self.config = config
        self.topic = check_filter(topic or f"{base}/trigger")
        self.answer_topic = check_topic(answer_topic or f"{base}/trigger/answer")
        self.error_topic = check_topic(error_topic or f"{base}/trigger/error")
        self.allow_reply_to = allow_reply_to
        self.max_payload_bytes = max_payload_bytes
        self.max_clock_skew_s = max_clock_skew_s
        self._dedup_window = dedup_window
        self._seen: OrderedDict[str, None] = OrderedDict()  # touched on paho's thread only
        self._stats = StatsBox()
        self._submit: TriggerSink | None = None
        self._client = paho_client(config, client_id or f"qcline-{config.station_id}-trigger-{name}")
        self._client.max_queued_messages_set(max_queued)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self.subscribed = threading.Event()

    @property
    def stats(self) -> SourceStats:
        return self._stats.snapshot()

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, submit: TriggerSink) -> None:
        if self._submit is not None:
            raise RuntimeError(f"trigger source {self.name} is already started")
        self._submit = submit
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._stats.set(connected=False)

    # -- paho callbacks ---------------------------------------------------------------------------
    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: Any,
                    properties: object) -> None:
        if getattr(reason, "is_failure", False):
            error = f"broker refused the connection: {reason}"
            if self.stats.last_error != error:
                log.error("trigger source %s: MQTT %s:%d %s", self.name, self.config.host, self.config.port, error)
            self._stats.set(last_error=error)
            return
        client.subscribe(self.topic, qos=1)  # again on every connect: the session is clean
        self._stats.set(connected=True, last_error="")
        log.info("trigger source %s: MQTT connected to %s:%d, triggers on %s", self.name, self.config.host,
                 self.config.port, self.topic)

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, reasons: Any,
                      properties: object) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons):
            self._stats.add(errors=1)
            log.error("trigger source %s: the broker refused the subscription to %s: %s", self.name, self.topic,
                      reasons)
            return
        self.subscribed.set()

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        error = f"cannot reach the broker at {self.config.host}:{self.config.port}"
        if self.stats.last_error != error:
            log.warning("trigger source %s: MQTT %s (retrying)", self.name, error)
        self._stats.add(errors=1)
        self._stats.set(last_error=error)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                       properties: object) -> None:
        if self.stats.connected:
            self._stats.add(disconnects=1)
            log.warning("trigger source %s: MQTT connection lost (%s); triggers published meanwhile are not "
                        "received", self.name, reason)
        self.subscribed.clear()
        self._stats.set(connected=False)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            self._take(message.payload, message.topic)
        except Exception as e:  # paho's loop must never die of one message
            self._stats.add(errors=1)
            log.exception("trigger source %s: message on %s could not be handled", self.name, message.topic)
            self._publish_error(f"internal error: {e}", None, message.topic)

    # -- triggers ---------------------------------------------------------------------------------
    def _take(self, payload: bytes | bytearray, topic: str) -> None:
        received_at = now_utc()
        if len(payload) > self.max_payload_bytes:
            self._malformed(f"payload of {len(payload)} bytes is over the {self.max_payload_bytes}-byte limit",
                            None, topic)
            return
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            self._malformed(f"not JSON: {e}", None, topic)
            return
        if not isinstance(raw, dict):
            self._malformed(f"a JSON object is expected, not {type(raw).__name__}", None, topic)
            return
        try:
            msg = TriggerMessage.model_validate(raw)
        except ValidationError as e:
            trigger_id = raw.get("trigger_id")
            self._malformed(_reason(e), trigger_id if isinstance(trigger_id, str) else None, topic)
            return
        if msg.reply_to and not self.allow_reply_to:
            self._malformed("reply_to is not allowed on this station (allow_reply_to: false)", msg.trigger_id, topic)
            return
        skew = (msg.at - received_at).total_seconds() if msg.at is not None else 0.0
        if self.max_clock_skew_s and abs(skew) > self.max_clock_skew_s:  # frames would be bound to the wrong unit
            self._malformed(f"at is {skew:+.1f} s from the station's clock, more than max_clock_skew_s "
                            f"{self.max_clock_skew_s:g} (is the MES clock synchronised?)", msg.trigger_id, topic)
            return
        if msg.trigger_id in self._seen:
            self._stats.add(duplicates=1)
            log.info("trigger source %s: trigger %s again (QoS 1 re-delivery or a repeat): taken once", self.name,
                     msg.trigger_id)
            return
        self._seen[msg.trigger_id] = None
        while len(self._seen) > self._dedup_window:
            self._seen.popitem(last=False)
        trigger = Trigger(trigger_id=msg.trigger_id, unit_id=msg.unit_id, order_id=msg.order_id,
                          channel=TriggerChannel.MQTT, received_at=received_at, at=msg.at or received_at,
                          reply_to=msg.reply_to or "")
        self._stats.add(received=1)
        assert self._submit is not None
        try:
            self._submit(trigger)
        except Exception as e:
            self._stats.add(errors=1)
            log.exception("trigger source %s: the station refused trigger %s", self.name, trigger.trigger_id)
            self._publish_error(f"station refused the trigger: {e}", trigger.trigger_id, topic)

    def _malformed(self, reason: str, trigger_id: str | None, topic: str) -> None:
        self._stats.add(malformed=1)
        log.warning("trigger source %s: message on %s is no trigger: %s", self.name, topic, reason)
        self._publish_error(reason, trigger_id, topic)

    def _publish_error(self, reason: str, trigger_id: str | None, topic: str) -> None:
        payload: dict[str, object] = {"schema": ERROR_SCHEMA, "station_id": self.config.station_id, "topic": topic,
                   "trigger_id": trigger_id[:MAX_ID_CHARS] if trigger_id else None, "error": reason[:1000],
                   "time": now_utc().isoformat(timespec="milliseconds")}
        self._publish(self.error_topic, payload)

    def _publish(self, topic: str, payload: dict[str, object]) -> bool:
        info = self._client.publish(topic, encode(payload), qos=1)
        # NO_CONN: paho keeps a QoS 1 message and sends it once the link is back
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self._stats.add(errors=1)
            log.error("trigger source %s: publish to %s failed: %s", self.name, topic, paho.error_string(info.rc))
            return False
        return True

    def answer(self, answer: TriggerAnswer) -> None:
        """Publish the answer (paho queues it: never blocks on the broker)."""
        self._stats.add(answered=1)
        topic = answer.trigger.reply_to or self.answer_topic
        self._publish(topic, answer_payload(answer, self.config.station_id))
