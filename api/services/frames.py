"""Frames pushed by cameras over HTTP: validate, decode, batch with other cameras, answer per frame.

Retries are safe twice over: a request repeated with its ``Idempotency-Key`` gets the first answer back,
and the same image sent again for the same unit and camera is never judged or stored twice (the
recorded verdict is returned, marked ``duplicate``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import anyio.to_thread

from api.config import ServiceSettings
from api.services.auth import Principal
from api.services.batching import MicroBatcher
from api.services.idempotency import IdempotencyStore, StoredAnswer
from inspection.errors import BadRequestError, InvalidFrameError, QCError, UnsupportedMediaError
from inspection.identity import identify
from inspection.ids import check_identifier
from inspection.imageio import DEFAULT_LONG_SIDE, decode
from inspection.pipeline import FrameOutcome, FrameStatus
from inspection.store.records import InspectionRecord, StoredConformance, StoredFinding
from inspection.store.repository import ResultsStore
from inspection.store.writer import BatchedResultWriter, NotRecordedError
from inspection.types import ConformanceResult, DefectFinding, Detections, Frame, UnitVerdict

log = logging.getLogger(__name__)

IMAGE_TYPES = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
MAX_ID_LENGTH = 128


def sniff_image_type(data: bytes) -> str:
    """``image/jpeg`` or ``image/png`` from the bytes themselves (a camera's Content-Type can lie)."""
    if not data:
        raise InvalidFrameError("image is empty (0 bytes)")
    for media_type, magic in IMAGE_TYPES.items():
        if data.startswith(magic):
            return media_type
    raise UnsupportedMediaError("image must be a JPEG or PNG file (its bytes are neither)")


def check_id(name: str, value: str | None) -> str:
    """An id as sent, refused (422) when empty, too long, or a look-alike of another (``inspection.ids``)."""
    return check_identifier(name, value)


def parse_captured_at(value: str | None) -> datetime:
    """ISO 8601 with a time zone (``Z`` allowed); absent means now. A naive time is refused: guessing the
    camera's zone would shift the record by hours."""
    if value is None or not value.strip():
        return datetime.now(UTC)
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise BadRequestError(f"captured_at {value[:64]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise BadRequestError("captured_at must include a time zone (e.g. 2026-11-26T08:00:00Z)")
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class FrameRequest:
    data: bytes
    unit_id: str
    order_id: str
    camera_id: str
    captured_at: datetime
    captured_at_given: str = ""
    """``captured_at`` as sent ("" when the server stamped it): a retry without one is the same request."""

    @classmethod
    def build(cls, data: bytes, *, unit_id: str | None, order_id: str | None, camera_id: str | None,
              captured_at: str | None) -> FrameRequest:
        sniff_image_type(data)
        # Without unit_id the part's label names the unit (and its order): resolved once the image is decoded.
        labelled = not (unit_id or "").strip()
        return cls(data, "" if labelled else check_id("unit_id", unit_id),
                   "" if labelled and not (order_id or "").strip() else check_id("order_id", order_id),
                   check_id("camera_id", camera_id), parse_captured_at(captured_at), (captured_at or "").strip())

    @property
    def fingerprint(self) -> str:
        fields = [hashlib.sha256(self.data).hexdigest(), self.unit_id, self.order_id, self.camera_id,
                  self.captured_at_given]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


def unit_verdict_json(uv: UnitVerdict) -> dict[str, Any]:
    return {"unit_id": uv.unit_id, "order_id": uv.order_id, "verdict": uv.verdict.value, "reasons": list(uv.reasons),
            "missing_views": list(uv.missing_views), "complete": uv.complete, "frames": len(uv.frames)}


@dataclass(frozen=True)
class AnsweredDetection:
    """One thing the model saw, as the answer carries it."""

    class_name: str
    confidence: float
    box: tuple[float, float, float, float]
    """``(x1, y1, x2, y2)`` in pixels of the uploaded image."""

    def to_json(self) -> dict[str, Any]:
        return {"class": self.class_name, "confidence": self.confidence, "box": list(self.box)}


def answered_detections(detections: Detections) -> tuple[AnsweredDetection, ...]:
    """The model's rows as ``Detections.to_list`` rounds them (confidence to 4 places, the box to 0.1 px)."""
    return tuple(AnsweredDetection(str(row["class"]), cast(float, row["confidence"]),
                                   cast(tuple[float, float, float, float], tuple(cast(list[float], row["box"]))))
                 for row in detections.to_list())


@dataclass(frozen=True)
class FrameAnswer:
    """The answer to one frame: judged now (``duplicate`` false: the verdict just committed, with the unit's
    roll-up when this frame changed it, and ``queued`` when it went to the outbox), or judged before
    (``duplicate``: read back from its record, values as stored, no roll-up)."""

    unit_id: str
    order_id: str
    camera_id: str
    captured_at: str | None
    """As recorded (ISO text); a judged frame always has it."""
    frame_sha256: str
    verdict: str
    reasons: tuple[str, ...]
    detections: tuple[AnsweredDetection, ...]
    findings: tuple[DefectFinding | StoredFinding, ...]
    conformance: tuple[ConformanceResult | StoredConformance, ...]
    model_sha256: str
    profile_hash: str
    duplicate: bool = False
    unit_verdict: UnitVerdict | None = None
    queued: bool = False

    def __post_init__(self) -> None:
        if self.duplicate and (self.unit_verdict is not None or self.queued):
            raise ValueError("a duplicate frame's answer is its record: no unit roll-up, never queued")

    @classmethod
    def judged(cls, outcome: FrameOutcome, unit_verdict: UnitVerdict | None, *, queued: bool = False) -> FrameAnswer:
        """A judged, committed frame; ``unit_verdict`` is the store's roll-up if this frame changed it."""
        assert outcome.result is not None and outcome.result.detections is not None
        v = outcome.result.verdict
        return cls(v.unit_id, v.order_id, v.camera_id, v.captured_at.isoformat(), v.frame_sha256, v.verdict.value,
                   tuple(v.reasons), answered_detections(outcome.result.detections), tuple(v.findings),
                   tuple(v.conformance), v.model_sha256, v.profile_hash, unit_verdict=unit_verdict, queued=queued)

    @classmethod
    def recorded(cls, row: InspectionRecord) -> FrameAnswer:
        """A frame judged before, as its record has it (the detections are its findings' boxes)."""
        return cls(row.unit_id, row.order_id, row.camera_id, row.captured_at, row.frame_sha256, row.verdict,
                   row.reasons, tuple(AnsweredDetection(f.class_name, f.confidence, f.box) for f in row.findings),
                   row.findings, row.conformance, row.model_sha256, row.profile_hash, duplicate=True)

    def to_json(self) -> dict[str, Any]:
        """The answer's body, in the key order each kind of answer has always had (a duplicate's follows its
        record)."""
        head = {"unit_id": self.unit_id, "order_id": self.order_id, "camera_id": self.camera_id,
                "captured_at": self.captured_at, "frame_sha256": self.frame_sha256, "verdict": self.verdict,
                "reasons": list(self.reasons)}
        detections = [d.to_json() for d in self.detections]
        findings = [f.to_json() for f in self.findings]
        conformance = [c.to_json() for c in self.conformance]
        if self.duplicate:
            return {**head, "model_sha256": self.model_sha256, "profile_hash": self.profile_hash,
                    "conformance": conformance, "detections": detections, "findings": findings, "duplicate": True,
                    "unit_verdict": None}
        body = {**head, "detections": detections, "findings": findings, "conformance": conformance,
                "model_sha256": self.model_sha256, "profile_hash": self.profile_hash, "duplicate": False,
                "unit_verdict": unit_verdict_json(self.unit_verdict) if self.unit_verdict else None}
        return {**body, "queued": True} if self.queued else body


def decode_long_side(detector: object) -> int:
    """How far a large frame may be decoded reduced: its long side stays at least twice the model's input
    (``DEFAULT_LONG_SIDE`` for a detector that does not say its input size)."""
    metadata = getattr(detector, "metadata", None)
    size = max(int(getattr(metadata, "input_width", 0) or 0), int(getattr(metadata, "input_height", 0) or 0))
    return 2 * size if size else DEFAULT_LONG_SIDE


class FrameContext(Protocol):
    """What the frame service needs of the running service (``api.composition.ServiceContext`` is one): the
    service sits below the composition root and takes the context it is handed, never imports it."""

    @property
    def settings(self) -> ServiceSettings: ...

    @property
    def store(self) -> ResultsStore: ...

    @property
    def writer(self) -> BatchedResultWriter: ...

    @property
    def idempotency(self) -> IdempotencyStore: ...

    def require_batcher(self) -> MicroBatcher: ...


class FrameService:
    def __init__(self, ctx: FrameContext) -> None:
        self.ctx = ctx

    async def submit(self, request: FrameRequest, principal: Principal,
                     idempotency_key: str | None) -> tuple[StoredAnswer, bool]:
        """Judge the frame; returns the answer and whether it was replayed from an earlier request."""
        if idempotency_key is None:
            return StoredAnswer(200, (await self._judge(request, principal)).to_json()), False
        store: IdempotencyStore = self.ctx.idempotency
        key = IdempotencyStore.check_key(idempotency_key)
        scope = f"key:{principal.key_id}"
        fingerprint = request.fingerprint
        racing = store.join_inflight(scope, key, fingerprint)
        if racing is not None:
            return await asyncio.shield(racing), True
        stored = await anyio.to_thread.run_sync(store.lookup, scope, key, fingerprint)
        if stored is not None:
            return stored, True
        racing = store.join_inflight(scope, key, fingerprint)  # again: another retry may have begun meanwhile
        if racing is not None:
            return await asyncio.shield(racing), True
        future = store.begin(scope, key, fingerprint)  # no await between this check and this claim
        try:
            try:
                answer = StoredAnswer(200, (await self._judge(request, principal)).to_json())
            except QCError as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody raced this request
                raise
            await anyio.to_thread.run_sync(store.save, scope, key, fingerprint, answer)
            future.set_result(answer)
            return answer, False
        finally:
            store.end(scope, key)

    async def _judge(self, request: FrameRequest, principal: Principal) -> FrameAnswer:
        batcher = self.ctx.require_batcher()
        with batcher.arriving():
            limits = self.ctx.settings
            long_side: int | None = decode_long_side(batcher.inspector.detector)
            calibration = await anyio.to_thread.run_sync(batcher.inspector.camera_calibration, request.camera_id)
            if not request.unit_id or (calibration is not None and calibration.label is not None):
                long_side = None  # a part label is read at full resolution: small codes do not survive reduction
            decoded = await anyio.to_thread.run_sync(
                lambda: decode(request.data, max_pixels=limits.max_frame_pixels, long_side=long_side))
            unit_id, order_id = request.unit_id, request.order_id
            if not unit_id:  # the part's label names the unit (and maybe its order)
                unit_id, order_id = await anyio.to_thread.run_sync(self._identify, decoded.image, request.camera_id,
                                                            order_id)
            frame = Frame(image=decoded.image, camera_id=request.camera_id, unit_id=unit_id,
                          order_id=order_id, captured_at=request.captured_at,
                          source=f"http:{principal.name}", data=request.data, scale=decoded.scale)
            future = batcher.submit(frame)
        outcome = await asyncio.wrap_future(future)
        if outcome.status is FrameStatus.REJECTED:
            assert outcome.error is not None
            raise outcome.error
        if outcome.status is FrameStatus.DUPLICATE:
            return await anyio.to_thread.run_sync(self._recorded, frame)
        assert outcome.committed is not None  # the service's inspector always has the journal
        # Durable before acknowledged: the answer waits for the group commit that holds this result. A failed
        # commit raises NotRecordedError (503): nothing was stored and the inspector forgot the unit, so the
        # camera's retry (same Idempotency-Key) is judged and stored exactly once.
        committed = await asyncio.wrap_future(outcome.committed)
        if committed.queued:  # in the outbox: what this station knows now, re-checked centrally on replay
            return FrameAnswer.judged(outcome, committed.unit_verdict, queued=True)
        if not committed.inserted:  # another process (or an earlier try) recorded this very frame first
            return await anyio.to_thread.run_sync(self._recorded, frame)
        return FrameAnswer.judged(outcome, committed.unit_verdict)

    def _identify(self, image: Any, camera_id: str, order_id: str) -> tuple[str, str]:
        """Unit from the label; order as sent, else from the label, else from the order book. A label whose
        order contradicts the one sent is caught by the inspector's identity check (REVIEW)."""
        calibration = self.ctx.store.camera_calibration(camera_id)
        book = self.ctx.store.order_of_unit
        unit_id, resolved = identify(image, calibration.label if calibration else None, camera_id=camera_id,
                                     order_of_unit=(lambda _unit: order_id) if order_id else book)
        # a label is client input like a form field: the same look-alike and length checks apply
        return check_identifier("unit_id", unit_id), check_identifier("order_id", resolved)

    def _recorded(self, frame: Frame) -> FrameAnswer:
        self.ctx.writer.flush(timeout=10)  # the first copy of this frame may still be in a group commit
        row = self.ctx.store.find_inspection(frame.unit_id, frame.camera_id, frame.sha256)
        if row is None:
            raise NotRecordedError(f"this frame of unit {frame.unit_id} was judged moments ago but its record is "
                                   "not committed (yet): retry shortly")
        return FrameAnswer.recorded(row)


