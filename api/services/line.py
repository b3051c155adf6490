"""The line station as the HTTP service offers it: the ``http`` trigger channel, the trigger record, the
cameras an engineer adds and removes. No HTTP types here; the routes (``api/http/routes/line.py``) are thin.

``POST /v1/triggers`` waits for its answer up to the station's ``answer_within_ms`` (the line's cycle
budget) and otherwise answers 202 with the trigger id, to be read back with ``GET /v1/triggers/{id}``: a
slow unit never holds a connection past the budget, and the answer is never lost (it is recorded).
A client-chosen ``trigger_id`` makes a retry safe: an id already answered returns its recorded answer, one
still open is reported pending, and neither is judged twice.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool

from inspection.errors import BadRequestError, NotFoundError
from inspection.ids import check_identifier
from inspection.line.cameras import CameraStats
from inspection.line.config import CameraSpec
from inspection.line.station import LineStation
from inspection.line.triggers import Trigger, TriggerAnswer, TriggerChannel
from inspection.sources.base import as_utc, parse_timestamp, utc_now
from inspection.store.triggers import TriggerRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriggerRequest:
    unit_id: str
    order_id: str | None = None
    at: str | None = None
    trigger_id: str | None = None

    def build(self, received_at: datetime) -> Trigger:
        unit_id = check_identifier("unit_id", self.unit_id)
        order_id = check_identifier("order_id", self.order_id) if self.order_id else None
        trigger_id = check_identifier("trigger_id", self.trigger_id) if self.trigger_id else \
            f"http-{secrets.token_hex(8)}"
        if self.at:
            try:
                at = parse_timestamp(self.at)
            except ValueError as exc:
                raise BadRequestError(f"at {self.at[:64]!r} is not an ISO 8601 time: {exc}") from exc
        else:
            at = received_at
        return Trigger(trigger_id=trigger_id, unit_id=unit_id, order_id=order_id, channel=TriggerChannel.HTTP,
                       received_at=received_at, at=as_utc(at))


ANSWERED, PENDING = "answered", "pending"


@dataclass(frozen=True)
class TriggerState:
    """What the line service says of one trigger: ``answered`` (by the station just now, or as recorded) or
    ``pending`` (queued or being judged: read it back later). An answered trigger has its outcome, answer time
    and latency; a pending one has none of them. ``latency_ms`` is unrounded (the answer rounds it)."""

    trigger_id: str
    status: str
    channel: str
    unit_id: str
    order_id: str | None
    at: datetime
    received_at: datetime
    answered_at: datetime | None = None
    outcome: str | None = None
    verdict: str | None = None
    reasons: tuple[str, ...] = ()
    missing_views: tuple[str, ...] = ()
    error: str = ""
    latency_ms: float | None = None
    frames: Mapping[str, Any] = field(default_factory=dict)
    """Per view, the frame bound to the unit or why there is none (recorded triggers only)."""

    def __post_init__(self) -> None:
        answered = (self.answered_at, self.outcome, self.latency_ms)
        if self.status == ANSWERED and any(x is None for x in answered):
            raise ValueError(f"trigger {self.trigger_id} is answered without its outcome, time and latency")
        if self.status == PENDING and any(x is not None for x in answered):
            raise ValueError(f"trigger {self.trigger_id} is pending but has an answer")
        if self.status not in (ANSWERED, PENDING):
            raise ValueError(f"trigger {self.trigger_id} has status {self.status!r}, not {ANSWERED} or {PENDING}")

    @property
    def answered(self) -> bool:
        return self.status == ANSWERED

    @classmethod
    def pending(cls, trigger: Trigger) -> TriggerState:
        return cls(trigger.trigger_id, PENDING, trigger.channel.value, trigger.unit_id, trigger.order_id, trigger.at,
                   trigger.received_at)

    @classmethod
    def of_answer(cls, answer: TriggerAnswer) -> TriggerState:
        """The station's answer (``inspection.line.station.answer_json`` says the same)."""
        t, v = answer.trigger, answer.verdict
        return cls(t.trigger_id, ANSWERED, t.channel.value, t.unit_id, v.order_id if v is not None else t.order_id,
                   t.at, t.received_at, answer.answered_at, answer.outcome.value,
                   v.verdict.value if v is not None else None, tuple(v.reasons) if v is not None else (),
                   tuple(v.missing_views) if v is not None else (), answer.error, answer.latency_ms)

    @classmethod
    def of_record(cls, record: TriggerRecord) -> TriggerState:
        """A trigger as the station's trigger log recorded it (no reasons: the unit's record has them)."""
        return cls(record.trigger_id, ANSWERED, record.channel, record.unit_id, record.order_id, record.at,
                   record.received_at, record.answered_at, record.outcome, record.verdict, (), (), record.error,
                   record.latency_ms, dict(record.frames))


class LineContext(Protocol):
    """What the line service needs of the running service (``api.composition.ServiceContext`` is one): the
    service sits below the composition root and takes the context it is handed, never imports it."""

    def require_line(self) -> LineStation: ...


class LineService:
    def __init__(self, ctx: LineContext) -> None:
        self.ctx = ctx

    @property
    def station(self) -> LineStation:
        return self.ctx.require_line()

    async def trigger(self, request: TriggerRequest) -> tuple[int, TriggerState]:
        """(200, the answer) when it came within the budget, else (202, the pending trigger)."""
        station = self.station
        if not station.config.http_triggers:
            raise NotFoundError(f"station {station.config.station} takes no http triggers (its config's triggers: "
                                f"{', '.join(t.kind for t in station.config.triggers) or 'none'})")
        trigger = request.build(utc_now())
        if request.trigger_id:  # a retry: never judged twice
            known = await run_in_threadpool(self._known, trigger.trigger_id)
            if known is not None:
                return 200 if known.answered else 202, known
        future = station.submit(trigger)
        waiting = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({waiting}, timeout=station.config.budgets.answer_within_ms / 1000.0)
        if not done:  # the answer comes later; it is recorded, and GET /v1/triggers/{id} reads it
            return 202, TriggerState.pending(trigger)
        return 200, TriggerState.of_answer(waiting.result())

    def _known(self, trigger_id: str) -> TriggerState | None:
        pending = self.station.pending(trigger_id)
        if pending is not None:
            return TriggerState.pending(pending)
        records = self.station.records
        if records is None:
            return None
        try:
            return TriggerState.of_record(records.get(trigger_id))
        except NotFoundError:
            return None

    def get(self, trigger_id: str) -> TriggerState:
        known = self._known(check_identifier("trigger_id", trigger_id))
        if known is None:
            raise NotFoundError(f"no trigger {trigger_id!r} at station {self.station.config.station}")
        return known

    def recent(self, limit: int) -> list[TriggerState]:
        station = self.station
        if station.records is None:
            return [TriggerState.of_answer(a) for a in station.recent(limit)]
        return [TriggerState.of_record(r) for r in station.records.recent(limit)]

    # -- cameras ---------------------------------------------------------------------------------------------

    def cameras(self) -> list[CameraStats]:
        return self.station.hub.stats()

    def add_camera(self, spec: CameraSpec) -> CameraStats:
        """Open a camera now (it connects in the background); it stays until removed or the service stops
        (add it to the station file to keep it over a restart)."""
        camera = self.station.hub.add(spec)
        log.info("camera %s (%s) added over the API", spec.name, camera.label)
        return camera.stats()

    def remove_camera(self, name: str) -> None:
        self.station.hub.remove(name)


__all__ = ["ANSWERED", "PENDING", "LineService", "TriggerRequest", "TriggerState"]
