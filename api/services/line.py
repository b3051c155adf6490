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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from api.composition import ServiceContext
from inspection.errors import BadRequestError, NotFoundError
from inspection.ids import check_identifier
from inspection.line.config import CameraSpec
from inspection.line.station import LineStation, answer_json
from inspection.line.triggers import Trigger, TriggerChannel
from inspection.sources.base import as_utc, parse_timestamp, utc_now

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


def _pending(trigger: Trigger) -> dict[str, Any]:
    return {"trigger_id": trigger.trigger_id, "status": "pending", "channel": trigger.channel.value,
            "unit_id": trigger.unit_id, "order_id": trigger.order_id, "at": trigger.at.isoformat(),
            "received_at": trigger.received_at.isoformat()}


class LineService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    @property
    def station(self) -> LineStation:
        return self.ctx.require_line()

    async def trigger(self, request: TriggerRequest) -> tuple[int, dict[str, Any]]:
        """(200, the answer) when it came within the budget, else (202, the pending trigger)."""
        station = self.station
        if not station.config.http_triggers:
            raise NotFoundError(f"station {station.config.station} takes no http triggers (its config's triggers: "
                                f"{', '.join(t.kind for t in station.config.triggers) or 'none'})")
        trigger = request.build(utc_now())
        if request.trigger_id:  # a retry: never judged twice
            known = await run_in_threadpool(self._known, trigger.trigger_id)
            if known is not None:
                return 200 if known.get("status") == "answered" else 202, known
        future = station.submit(trigger)
        waiting = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({waiting}, timeout=station.config.budgets.answer_within_ms / 1000.0)
        if not done:  # the answer comes later; it is recorded, and GET /v1/triggers/{id} reads it
            return 202, _pending(trigger)
        return 200, {"status": "answered", **answer_json(waiting.result())}

    def _known(self, trigger_id: str) -> dict[str, Any] | None:
        pending = self.station.pending(trigger_id)
        if pending is not None:
            return _pending(pending)
        records = self.station.records
        if records is None:
            return None
        try:
            return {"status": "answered", **records.get(trigger_id).as_json()}
        except NotFoundError:
            return None

    def get(self, trigger_id: str) -> dict[str, Any]:
        known = self._known(check_identifier("trigger_id", trigger_id))
        if known is None:
            raise NotFoundError(f"no trigger {trigger_id!r} at station {self.station.config.station}")
        return known

    def recent(self, limit: int) -> list[dict[str, Any]]:
        station = self.station
        if station.records is None:
            return [{"status": "answered", **answer_json(a)} for a in station.recent(limit)]
        return [{"status": "answered", **r.as_json()} for r in station.records.recent(limit)]

    # -- cameras ---------------------------------------------------------------------------------------------

    def cameras(self) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.station.hub.stats()]

    def add_camera(self, spec: CameraSpec) -> dict[str, Any]:
        """Open a camera now (it connects in the background); it stays until removed or the service stops
        (add it to the station file to keep it over a restart)."""
        camera = self.station.hub.add(spec)
        log.info("camera %s (%s) added over the API", spec.name, camera.label)
        return camera.stats().as_json()

    def remove_camera(self, name: str) -> None:
        self.station.hub.remove(name)


__all__ = ["LineService", "TriggerRequest"]
