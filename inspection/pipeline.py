"""The station loop, wired from injected parts: a source, a detector, order lookups and sinks.

Frames are batched for one forward pass, judged against each frame's own order profile, rolled up
per unit, and handed to sinks. A sink that fails is logged and counted, never allowed to stop the line;
a frame that cannot be read is recorded against its unit and the line goes on.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from inspection.detector import OnnxDetector
from inspection.errors import ConflictError, NotFoundError, QCError
from inspection.profiles import InspectionProfile, Order
from inspection.rules import failed_frame, judge, roll_up
from inspection.types import (
    Detections,
    Frame,
    FrameFailure,
    FrameResult,
    FrameVerdict,
    SourceItem,
    UnitVerdict,
)

log = logging.getLogger(__name__)


class Detector(Protocol):
    @property
    def model_sha256(self) -> str: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    def detect(self, images: Sequence[npt.NDArray[np.uint8]], confidence: float | None = None) -> list[Detections]:
        ...


def review_floor(profile: InspectionProfile) -> float:
    """The lowest confidence this profile looks at: its lowest ``review_from`` (or ``confidence``) over the
    default rule and every class rule that is not ignored."""
    rules = [profile.default, *profile.classes.values()]
    floors = [r.review_threshold for r in rules if not r.ignore]
    return min(floors) if floors else 1.0


def detection_floor(detector: Detector, profiles: Sequence[InspectionProfile]) -> float | None:
    """The confidence to ask the model for: its package floor, lowered to the lowest floor any of these
    profiles needs. Without this a profile's review band below the package floor (mirror-polish
    ``review_from 0.2`` on a 0.25 package) would be cut silently and a 0.24 detection pass with no reason.
    Detections below a frame's own profile floor are still ignored by ``judge``; ``None``: the model's own."""
    if not isinstance(detector, OnnxDetector) or not profiles:
        return None
    package = detector.metadata.thresholds.confidence
    needed = min(review_floor(p) for p in profiles)
    if needed < package:
        log.debug("asking %s for detections from %.3f (package floor %.3f)", detector.model_sha256[:12], needed,
                  package)
        return needed
    return None


class Sink(Protocol):
    """Receives every frame result and every unit verdict (e.g. the results store, metrics, a PLC)."""

    def submit(self, result: FrameResult) -> None: ...

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None: ...


class OrderResolver(Protocol):
    """Looks up orders with their profiles, and what is already recorded about units."""

    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]: ...

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        """For each known unit: its order id and the frame verdicts recorded so far."""
        ...


@dataclass
class InspectionSummary:
    frames: int = 0
    failed_frames: int = 0
    duplicate_frames: int = 0
    rejected_frames: int = 0
    sink_errors: int = 0
    batches: int = 0
    unit_verdicts: dict[str, UnitVerdict] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


class FrameStatus(enum.StrEnum):
    JUDGED = "judged"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class FrameOutcome:
    """What became of one submitted frame, for callers that answer per frame (the HTTP service).

    ``result`` is set when the frame was judged; ``error`` says why it was rejected (unknown order, a unit
    scanned against another order); a duplicate was already judged in this unit and is not judged again.
    ``unit_verdict`` is the unit's verdict when this frame completed (or changed) it.
    """

    frame: Frame
    status: FrameStatus
    result: FrameResult | None = None
    error: QCError | None = None
    unit_verdict: UnitVerdict | None = None


@dataclass
class _UnitState:
    order_id: str
    profile: InspectionProfile
    frames: list[FrameVerdict]
    seen: set[tuple[str, str]]
    emitted: UnitVerdict | None = None


_END = object()


def prefetched(items: Iterable[SourceItem], depth: int) -> Generator[SourceItem, None, None]:
    """Read (and decode) the next frames in a background thread while the current batch runs.

    onnxruntime releases the GIL during ``run``, so file reads and JPEG decoding overlap with the
    forward pass. A source error is re-raised in the consumer, where it would have surfaced anyway.
    """
    buffer: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def offer(obj: object) -> bool:
        """Put ``obj`` unless the consumer has gone (``stop``); never blocks past its leaving."""
        while not stop.is_set():
            try:
                buffer.put(obj, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as exc:  # handed to the consumer, never lost in the thread
            offer(exc)

    thread = threading.Thread(target=produce, name="qcline-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


class Inspector:
    def __init__(self, detector: Detector, orders: OrderResolver, sinks: Sequence[Sink] = (), *,
                 batch_size: int = 8, on_unit_verdict: Callable[[UnitVerdict], None] | None = None,
                 max_units: int = 10_000) -> None:
        self._detector = detector
        self._pending_detector: Detector | None = None
        self._swap_lock = threading.Lock()
        self._orders = orders
        self._sinks = list(sinks)
        self.batch_size = max(1, batch_size)
        self._on_unit_verdict = on_unit_verdict
        self._units: OrderedDict[str, _UnitState] = OrderedDict()
        self.max_units = max_units
        self._profiles: dict[str, InspectionProfile] = {}
        self._history: dict[str, tuple[str, list[FrameVerdict]]] = {}
        self.summary = InspectionSummary()

    @property
    def detector(self) -> Detector:
        return self._detector

    def swap_detector(self, detector: Detector) -> None:
        """Queue a new (already verified and warmed-up) detector; it takes over at the next batch."""
        with self._swap_lock:
            self._pending_detector = detector

    def _current_detector(self) -> Detector:
        with self._swap_lock:
            if self._pending_detector is not None:
                log.info("switching model %s -> %s", self._detector.model_sha256[:12],
                         self._pending_detector.model_sha256[:12])
                self._detector, self._pending_detector = self._pending_detector, None
            return self._detector

    def forget_orders(self, order_ids: Iterable[str] | None = None) -> None:
        """Drop cached profiles (all, or of ``order_ids``) after orders were re-imported; units already in
        progress keep the profile they started with."""
        if order_ids is None:
            self._profiles.clear()
        else:
            for order_id in order_ids:
                self._profiles.pop(order_id, None)

    # -- per unit state ---------------------------------------------------------------------------
    def _profile(self, order_id: str) -> InspectionProfile:
        """Orders are looked up once per run, not once per frame: the hot path stays off the database."""
        if order_id not in self._profiles:
            self._profiles[order_id] = self._orders.get_order(order_id)[1]
        return self._profiles[order_id]

    def _load_units(self, items: Sequence[SourceItem]) -> None:
        """Fetch the history of every unit in ``items`` this run has not met yet, in one store call."""
        new = {item.unit_id for item in items if item.unit_id not in self._units}
        if not new:
            return
        for unit_id, (order_id, history) in self._orders.unit_histories(sorted(new)).items():
            self._history[unit_id] = (order_id, history)

    def _unit(self, unit_id: str, order_id: str) -> _UnitState:
        state = self._units.get(unit_id)
        if state is None:
            # Read, check, and only then drop the recorded history: a frame refused here (wrong order, unknown
            # order) must leave it in place for the unit's next frame.
            recorded_order, history = self._history.get(unit_id, (order_id, []))
            if recorded_order != order_id:
                raise ConflictError(f"unit {unit_id} belongs to order {recorded_order}, not {order_id}")
            state = _UnitState(order_id, self._profile(order_id), list(history),
                               {(f.camera_id, f.frame_sha256) for f in history if f.frame_sha256})
            self._history.pop(unit_id, None)
            self._units[unit_id] = state
            self._forget_old_units()
        elif state.order_id != order_id:
            raise ConflictError(f"unit {unit_id} belongs to order {state.order_id}, not {order_id}")
        return state

    def _forget_old_units(self) -> None:
        """A station runs for months: keep at most ``max_units`` units in memory, dropping the oldest
        *finished* ones first (a unit seen again is reloaded from the store's history)."""
        excess = len(self._units) - self.max_units
        if excess <= 0:
            return
        finished = [u for u, s in self._units.items() if s.emitted is not None and s.emitted.complete]
        for unit_id in finished[:excess]:
            del self._units[unit_id]

    # -- sinks ------------------------------------------------------------------------------------
    def _emit(self, result: FrameResult) -> None:
        for sink in self._sinks:
            try:
                sink.submit(result)
            except Exception:  # a failing sink must never stop the line
                self.summary.sink_errors += 1
                log.exception("sink %s failed on a frame of unit %s", type(sink).__name__, result.verdict.unit_id)

    def _emit_unit(self, verdict: UnitVerdict) -> None:
        self.summary.unit_verdicts[verdict.unit_id] = verdict
        for sink in self._sinks:
            try:
                sink.submit_unit_verdict(verdict)
            except Exception:
                self.summary.sink_errors += 1
                log.exception("sink %s failed on unit verdict %s", type(sink).__name__, verdict.unit_id)
        if self._on_unit_verdict is not None:
            self._on_unit_verdict(verdict)

    def _add(self, state: _UnitState, verdict: FrameVerdict, *, closing: bool = False) -> None:
        state.frames.append(verdict)
        unit_verdict = roll_up(state.frames, state.profile, closing=closing)
        if unit_verdict is not None and unit_verdict != state.emitted:
            state.emitted = unit_verdict
            self._emit_unit(unit_verdict)

    # -- the loop ---------------------------------------------------------------------------------
    def _reject(self, item: SourceItem, reason: str) -> None:
        self.summary.rejected_frames += 1
        message = f"{item.source or item.camera_id} (unit {item.unit_id}, order {item.order_id}): {reason}"
        self.summary.errors.append(message)
        log.error("frame rejected: %s", message)

    def _process_failure(self, item: FrameFailure) -> FrameResult | None:
        self._load_units([item])
        try:
            state = self._unit(item.unit_id, item.order_id)
        except QCError as exc:
            self._reject(item, str(exc))
            return None
        self.summary.failed_frames += 1
        verdict = failed_frame(unit_id=item.unit_id, order_id=item.order_id, camera_id=item.camera_id,
                               captured_at=item.captured_at, error=item.error, profile=state.profile,
                               model_sha256=self._detector.model_sha256)
        result = FrameResult(item, None, verdict)
        self._emit(result)
        self._add(state, verdict)
        return result

    def _process_batch(self, frames: list[Frame]) -> list[FrameResult]:
        return [o.result for o in self.inspect_frames(frames) if o.result is not None]

    def inspect_frames(self, frames: Sequence[Frame]) -> list[FrameOutcome]:
        """Judge ``frames`` in one forward pass; one outcome per frame, in order.

        Not thread-safe: one thread (a station loop, the service's batcher) owns an ``Inspector``.
        """
        outcomes: dict[int, FrameOutcome] = {}
        accepted: list[tuple[int, Frame, _UnitState]] = []
        try:
            self._load_units(frames)
        except QCError as exc:  # e.g. the store is down: every frame of the batch is refused, none lost silently
            for frame in frames:
                self._reject(frame, str(exc))
            return [FrameOutcome(f, FrameStatus.REJECTED, error=exc) for f in frames]
        for index, frame in enumerate(frames):
            try:
                state = self._unit(frame.unit_id, frame.order_id)
            except QCError as exc:
                self._reject(frame, str(exc))
                outcomes[index] = FrameOutcome(frame, FrameStatus.REJECTED, error=exc)
                continue
            if (frame.camera_id, frame.sha256) in state.seen:
                self.summary.duplicate_frames += 1
                log.info("frame %s of unit %s already judged; skipped", frame.sha256[:12], frame.unit_id)
                outcomes[index] = FrameOutcome(frame, FrameStatus.DUPLICATE)
                continue
            state.seen.add((frame.camera_id, frame.sha256))
            accepted.append((index, frame, state))
        if accepted:
            detector = self._current_detector()
            floor = detection_floor(detector, [state.profile for _, _, state in accepted])
            detections = detector.detect([f.image for _, f, _ in accepted], confidence=floor)
            self.summary.batches += 1
            for (index, frame, state), dets in zip(accepted, detections, strict=True):
                verdict = judge(dets, frame_width=frame.width, frame_height=frame.height, unit_id=frame.unit_id,
                                order_id=frame.order_id, camera_id=frame.camera_id,
                                captured_at=frame.captured_at, profile=state.profile,
                                model_sha256=detector.model_sha256, frame_sha256=frame.sha256)
                result = FrameResult(frame, dets, verdict)
                self.summary.frames += 1
                self._emit(result)
                before = state.emitted
                self._add(state, verdict)
                changed = state.emitted if state.emitted is not before else None
                outcomes[index] = FrameOutcome(frame, FrameStatus.JUDGED, result=result, unit_verdict=changed)
        return [outcomes[i] for i in range(len(frames))]

    def process(self, items: Iterable[SourceItem], progress: Callable[[int], None] | None = None, *,
                prefetch: bool = True) -> InspectionSummary:
        """Run every item through the line. Results go to the sinks, not into a list here: a live source
        never ends, and holding every frame would grow without bound."""
        if not prefetch:
            return self._process(iter(items), progress)
        source = prefetched(items, self.batch_size)
        try:
            return self._process(source, progress)
        finally:  # an error in a batch or a sink stops the prefetch thread (and releases its camera) now
            source.close()

    def _process(self, source: Iterator[SourceItem], progress: Callable[[int], None] | None) -> InspectionSummary:
        batch: list[Frame] = []
        for item in source:
            if isinstance(item, FrameFailure):
                self._process_failure(item)
                if progress:
                    progress(1)
                continue
            batch.append(item)
            if len(batch) >= self.batch_size:
                self._process_batch(batch)
                if progress:
                    progress(len(batch))
                batch = []
        if batch:
            self._process_batch(batch)
            if progress:
                progress(len(batch))
        return self.summary

    def close_unit(self, unit_id: str) -> UnitVerdict:
        """Close a unit now: its verdict, naming required views that never arrived."""
        state = self._units.get(unit_id)
        if state is None:  # not met in this run (e.g. the station restarted): its recorded frames count
            history = self._orders.unit_histories([unit_id])
            if unit_id not in history:
                raise NotFoundError(f"unit {unit_id!r} has no record")
            self._history[unit_id] = history[unit_id]
            state = self._unit(unit_id, history[unit_id][0])
        if not state.frames:
            raise ConflictError(f"unit {unit_id!r} has no frames yet: nothing to judge")
        verdict = roll_up(state.frames, state.profile, closing=True)
        assert verdict is not None
        if verdict != state.emitted or not verdict.complete:
            state.emitted = verdict
            self._emit_unit(verdict)
        return verdict

    def close_open_units(self) -> list[UnitVerdict]:
        """At the end of a replayed line: close every unit still waiting for views."""
        return [self.close_unit(u) for u, s in self._units.items() if s.emitted is None or not s.emitted.complete]
