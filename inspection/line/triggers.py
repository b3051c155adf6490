"""The records every trigger channel shares: "unit U of order O is at station S now", and the answer to it.

A trigger arrives from the PLC (Modbus holding registers / OPC UA nodes the PLC writes), an MQTT topic the MES
publishes to, an HTTP call (``POST /v1/triggers``) or a part label read in a frame. Whatever the channel, it
becomes one ``Trigger``; the line station binds camera frames to it, judges the unit and hands a
``TriggerAnswer`` back to the ``TriggerSource`` it came from, which answers on its own channel (result
registers with their handshake, the MQTT verdict, the HTTP response). Every trigger gets exactly one answer,
also when it failed, so a trigger is never silent.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from inspection.types import UnitVerdict


class TriggerChannel(enum.StrEnum):
    MODBUS = "modbus"
    OPCUA = "opcua"
    MQTT = "mqtt"
    HTTP = "http"
    LABEL = "label"


@dataclass(frozen=True)
class Trigger:
    """One unit in front of the station. ``at`` is when the unit was in place (the PLC/MES time when the
    channel carries one, else ``received_at``); frames captured at or after ``at`` (minus the camera clock
    tolerance) belong to it. ``order_id`` is ``None`` when the channel only knows the unit: it is looked up.
    ``trigger_id`` is unique per station (the channel's own id or sequence where it has one)."""

    trigger_id: str
    unit_id: str
    order_id: str | None
    channel: TriggerChannel
    received_at: datetime
    at: datetime
    reply_to: str = ""  # channel-specific correlation (an MQTT reply topic, a PLC sequence, ...)

    def __post_init__(self) -> None:
        for name in ("trigger_id", "unit_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Trigger.{name} must be a non-empty string, got {value!r}")
        if self.order_id is not None and not self.order_id.strip():
            raise ValueError("Trigger.order_id must be None or a non-empty string")
        if self.received_at.tzinfo is None or self.at.tzinfo is None:
            raise ValueError("Trigger times must be timezone-aware (UTC)")


class TriggerOutcome(enum.StrEnum):
    """How a trigger ended: judged from its frames, or why not."""

    JUDGED = "judged"            # every view the profile requires had a frame
    MISSING_VIEWS = "missing_views"  # some views got no frame within the budget: a non-PASS verdict says which
    UNKNOWN_UNIT = "unknown_unit"    # no order for the unit: nothing judged, answered with the reason
    REJECTED = "rejected"        # refused before judging (bad trigger, queue full, station stopping)
    DUPLICATE = "duplicate"      # the unit is already queued or being judged: judged once, its verdict goes
    #                              with the first trigger's answer
    FAILED = "failed"            # judging or recording failed (e.g. the store): answered with the reason


@dataclass(frozen=True)
class TriggerAnswer:
    """What the line is told for one trigger. ``verdict`` is the unit's durable verdict when there is one
    (JUDGED / MISSING_VIEWS); otherwise ``error`` says why there is none."""

    trigger: Trigger
    outcome: TriggerOutcome
    answered_at: datetime
    verdict: UnitVerdict | None = None
    error: str = ""

    def __post_init__(self) -> None:
        if self.verdict is None and not self.error:
            raise ValueError("a TriggerAnswer without a verdict must say why (error is empty)")

    @property
    def latency_ms(self) -> float:
        return (self.answered_at - self.trigger.received_at).total_seconds() * 1000.0


TriggerSink = Callable[[Trigger], None]
"""What a source hands each trigger to (the line station's queue); it must not block for long."""


class TriggerSource(Protocol):
    """A channel triggers arrive on. ``start`` begins delivering triggers to ``submit`` (from the source's own
    thread); ``answer`` is called once per trigger it delivered, from the station's thread, and must not block
    (queue and deliver on the source's thread); ``close`` stops it and releases its connection."""

    name: str
    channel: TriggerChannel

    def start(self, submit: TriggerSink) -> None: ...

    def answer(self, answer: TriggerAnswer) -> None: ...

    def close(self) -> None: ...
