"""The station loop, wired from injected parts: a source, a detector, order lookups and sinks.

Frames are batched for one forward pass, judged against each frame's own order profile, rolled up
per unit, and handed to sinks. A sink that fails is logged and counted, never allowed to stop the line;
a frame that cannot be read is recorded against its unit and the line goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from inspection.conformance import CameraCalibration, check_conformance
from inspection.conformance.dimensions import Scale
from inspection.detector import OnnxDetector
from inspection.errors import ConflictError, NotFoundError, QCError, StoreError
from inspection.identity import check_identity
from inspection.profiles import InspectionProfile, Order
from inspection.rules import failed_frame, judge, roll_up
from inspection.tiling import detect_tiled
from inspection.types import (
    Committed,
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

    @property
    def engine_name(self) -> str: ...

    @property
    def precision(self) -> str: ...

    @property
    def input_size(self) -> tuple[int, int]:
        """The model's (width, height): the tile size of tiled inference."""
        ...

    max_batch: int

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


class Journal(Protocol):
    """Where results become durable (the group-commit writer): a result is done when its future resolves."""

    def submit(self, result: FrameResult, provisional: UnitVerdict | None = None) -> Future[Committed]:
        """``provisional``: this process's roll-up, the verdict to act on if the result waits in an outbox."""
        ...

    def close_unit(self, unit_id: str) -> Future[UnitVerdict | None]:
        """``None``: the close is queued (outbox) and applied centrally later."""
        ...


class OrderResolver(Protocol):
    """Looks up orders with their profiles, and what is already recorded about units."""

    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]: ...

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        """For each known unit: its order id and the frame verdicts recorded so far."""
        ...


class CalibrationLookup(Protocol):
    """Per-camera colour and scale calibration (the results store keeps them)."""

    def camera_calibration(self, camera_id: str) -> CameraCalibration | None: ...


@dataclass
class InspectionSummary:
    """Counters of a run, plus the most recent unit verdicts and errors: bounded, since a station runs for
    months (``max_recent`` of each are kept; the results store holds them all)."""

    frames: int = 0
    failed_frames: int = 0
    duplicate_frames: int = 0
    rejected_frames: int = 0
    not_recorded: int = 0
    sink_errors: int = 0
    batches: int = 0
    units_judged: int = 0
    error_count: int = 0
    max_recent: int = 1000
    unit_verdicts: OrderedDict[str, UnitVerdict] = field(default_factory=OrderedDict)
    errors: deque[str] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_unit(self, verdict: UnitVerdict) -> None:
        """Keep ``verdict`` as its unit's latest (thread-safe: commits report from the writer's thread)."""
        with self._lock:
            if verdict.unit_id in self.unit_verdicts:
                self.unit_verdicts.move_to_end(verdict.unit_id)
            else:
                self.units_judged += 1
            self.unit_verdicts[verdict.unit_id] = verdict
            while len(self.unit_verdicts) > self.max_recent:
                self.unit_verdicts.popitem(last=False)

    def record_error(self, message: str) -> None:
        with self._lock:
            self.error_count += 1
            self.errors.append(message)
            while len(self.errors) > self.max_recent:
                self.errors.popleft()


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
    committed: Future[Committed] | None = None
    """With a journal: resolves once the result is durable (answer only then), or fails if it is not."""


@dataclass
class _UnitState:
    order_id: str
    profile: InspectionProfile
    order: Order
    frames: list[FrameVerdict]
    seen: set[tuple[str, str]]
    emitted: UnitVerdict | None = None


@dataclass
class _Admitted:
    """A batch between admission and judgement: outcomes already decided (refused, duplicate), the frames to
    detect with their unit state, and the detector (and confidence floor) they run on."""

    frames: list[Frame]
    outcomes: dict[int, FrameOutcome] = field(default_factory=dict)
    accepted: list[tuple[int, Frame, _UnitState]] = field(default_factory=list)
    detector: Detector | None = None
    """Set once a frame is accepted: the detector the batch runs on."""
    floor: float | None = None

    def inputs(self) -> list[tuple[Frame, InspectionProfile]]:
        return [(frame, state.profile) for _, frame, state in self.accepted]

    def outcomes_in_order(self) -> list[FrameOutcome]:
        return [self.outcomes[i] for i in range(len(self.frames))]


_END = object()


def _tiled(frame: Frame, profile: InspectionProfile) -> bool:
    return profile.tiling is not None and max(frame.width, frame.height) >= profile.tiling.min_side_px


def prefetched(items: Iterable[SourceItem], depth: int) -> Generator[SourceItem, None, None]:
    """Read (and decode) the next frames in a background thread while the current batch runs.

    The engines release the GIL during ``forward``, so file reads and JPEG decoding overlap with the
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
    """Judges frames and rolls units up. With a ``journal`` (the station's group-commit writer) every result
    is handed to it and a frame is *done* only when its commit future resolves; unit verdicts then come from
    the journal (rolled up in the store, under a lock), and the in-memory roll-up only steers this process.
    A result whose commit failed makes the inspector forget its unit, so the retry of that frame is judged
    again against what the store really holds (never "already judged" for a row that is not there).
    """

    def __init__(self, detector: Detector, orders: OrderResolver, sinks: Sequence[Sink] = (), *,
                 batch_size: int = 8, on_unit_verdict: Callable[[UnitVerdict], None] | None = None,
                 max_units: int = 10_000, journal: Journal | None = None, max_recent: int = 1000,
                 store_retry_s: float = 0.5, calibrations: CalibrationLookup | None = None,
                 calibration_ttl_s: float = 60.0, inference_depth: int = 1, overlap: bool = False) -> None:
        self._detector = detector
        self._pending_detector: Detector | None = None
        self._swap_lock = threading.Lock()
        self._orders = orders
        self._sinks = list(sinks)
        self.batch_size = max(1, batch_size)
        self.inference_depth = max(1, inference_depth)
        """Batches in the detector at once while this thread judges the one before (``process``). 1 by default:
        on the shared 2-core machine 2 was not measurably faster (bench/inference.py --depth), and each extra
        batch in flight holds its frames and an infer request more."""
        self.overlap = overlap
        """``process`` detects batch k+1 in an inference thread while this thread judges batch k. Off by default:
        on a quiet 2-core machine the serial loop was faster (bench/inference.py --compare-overlap: 61.0 vs 56.8
        frames/s), because judging, the journal and decoding share the engine's two cores; a station with
        cores to spare turns it on (``QC_PIPELINE_OVERLAP``)."""
        self._on_unit_verdict = on_unit_verdict
        self._units: OrderedDict[str, _UnitState] = OrderedDict()
        self.max_units = max_units
        self._profiles: dict[str, tuple[Order, InspectionProfile]] = {}
        self._calibrations = calibrations
        self._calibration_ttl_s = calibration_ttl_s
        self._calibration_cache: dict[str, tuple[float, CameraCalibration | None]] = {}
        self._history: dict[str, tuple[str, list[FrameVerdict]]] = {}
        self._journal = journal
        self._stale: set[str] = set()
        self._stale_lock = threading.Lock()
        self.store_retry_s = store_retry_s
        self.summary = InspectionSummary(max_recent=max_recent)

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
    def _order(self, order_id: str) -> tuple[Order, InspectionProfile]:
        """Orders are looked up once per run, not once per frame: the hot path stays off the database."""
        if order_id not in self._profiles:
            self._profiles[order_id] = self._orders.get_order(order_id)
        return self._profiles[order_id]

    def forget_units(self, unit_ids: Iterable[str]) -> None:
        """Thread-safe: drop what this inspector believes about these units (their results were not
        committed); the next frame of each reloads its history from the store."""
        with self._stale_lock:
            self._stale.update(unit_ids)

    def _apply_forgotten(self) -> None:
        with self._stale_lock:
            stale, self._stale = self._stale, set()
        for unit_id in stale:
            self._units.pop(unit_id, None)
            self._history.pop(unit_id, None)

    def camera_calibration(self, camera_id: str) -> CameraCalibration | None:
        """The camera's calibration as this inspector uses it (cached; safe to call from other threads: a
        stale read only costs one more lookup)."""
        return self._calibration(camera_id)

    def _calibration(self, camera_id: str) -> CameraCalibration | None:
        """A camera's calibration, re-read at most every ``calibration_ttl_s``: a recalibration reaches a
        running station within a minute, and the hot path stays off the database."""
        if self._calibrations is None:
            return None
        now = time.monotonic()
        cached = self._calibration_cache.get(camera_id)
        if cached is None or now - cached[0] > self._calibration_ttl_s:
            try:
                found = self._calibrations.camera_calibration(camera_id)
            except QCError as exc:  # store unreachable: conformance goes to REVIEW ("not calibrated"), line goes on
                log.error("calibration of camera %s unavailable: %s", camera_id, exc)
                return cached[1] if cached is not None else None
            cached = (now, found)
            self._calibration_cache[camera_id] = cached
        return cached[1]

    def _load_units(self, items: Sequence[SourceItem]) -> None:
        """Fetch the history of every unit in ``items`` this run has not met yet, in one store call."""
        new = {item.unit_id for item in items if item.unit_id not in self._units and item.unit_id not in self._history}
        if not new:
            return
        if len(self._history) > self.max_units:  # histories of units whose frames were all refused: re-read later
            self._history.clear()
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
            order, profile = self._order(order_id)
            state = _UnitState(order_id, profile, order, list(history),
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

    def _record(self, result: FrameResult, provisional: UnitVerdict | None) -> Future[Committed] | None:
        """Hand ``result`` to the journal (blocks while it is full: back-pressure). ``provisional`` is this
        process's roll-up when the frame changed it: used only if the result waits in an outbox."""
        if self._journal is None:
            return None
        future = self._journal.submit(result, provisional)
        unit_id = result.verdict.unit_id
        future.add_done_callback(lambda f: self._on_committed(unit_id, f))
        return future

    def _on_committed(self, unit_id: str, future: Future[Committed]) -> None:
        """Runs in the journal's thread once a result is durable (or is not)."""
        error = future.exception()
        if error is not None:
            self.forget_units([unit_id])
            with self.summary._lock:
                self.summary.not_recorded += 1
            self.summary.record_error(f"unit {unit_id}: result NOT recorded ({error})")
            return
        verdict = future.result().unit_verdict
        if verdict is not None:
            self._durable_unit(verdict)

    def _durable_unit(self, verdict: UnitVerdict) -> None:
        self.summary.record_unit(verdict)
        if self._on_unit_verdict is not None:
            try:
                self._on_unit_verdict(verdict)
            except Exception:
                log.exception("unit verdict callback failed on %s", verdict.unit_id)

    def _emit_unit(self, verdict: UnitVerdict) -> None:
        if self._journal is None:  # with a journal, the store's roll-up is the verdict (_on_committed)
            self._durable_unit(verdict)
        for sink in self._sinks:
            try:
                sink.submit_unit_verdict(verdict)
            except Exception:
                self.summary.sink_errors += 1
                log.exception("sink %s failed on unit verdict %s", type(sink).__name__, verdict.unit_id)

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
        self.summary.record_error(message)
        log.error("frame rejected: %s", message)

    def _process_failure(self, item: FrameFailure) -> FrameOutcome | None:
        self._apply_forgotten()
        self._load_units([item])
        try:
            state = self._unit(item.unit_id, item.order_id)
        except QCError as exc:
            self._reject(item, str(exc))
            return None
        self.summary.failed_frames += 1
        verdict = failed_frame(unit_id=item.unit_id, order_id=item.order_id, camera_id=item.camera_id,
                               captured_at=item.captured_at, error=item.error, profile=state.profile,
                               model_sha256=self._detector.model_sha256, engine=self._detector.engine_name,
                               precision=self._detector.precision)
        result = FrameResult(item, None, verdict)
        self._emit(result)
        before = state.emitted
        self._add(state, verdict)
        committed = self._record(result, state.emitted if state.emitted is not before else None)
        return FrameOutcome(item, FrameStatus.JUDGED, result=result, committed=committed)  # type: ignore[arg-type]

    def _wait_for_store(self, items: Sequence[SourceItem]) -> None:
        """A replayed line pauses while the store is unreachable instead of rejecting frames: retry reading the
        units' histories and orders until they answer (a missing order is not retried; it is refused later)."""
        delay = self.store_retry_s
        while True:
            try:
                self._apply_forgotten()
                self._load_units(items)
                for order_id in sorted({i.order_id for i in items}):
                    with contextlib.suppress(NotFoundError):  # refused with its reason when judged
                        self._order(order_id)
                return
            except StoreError as e:
                log.error("results store unavailable (%s): the line waits %.1f s and retries", e, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _process_batch(self, frames: list[Frame]) -> list[FrameOutcome]:
        self._wait_for_store(frames)
        return self.inspect_frames(frames)

    def inspect_frames(self, frames: Sequence[Frame]) -> list[FrameOutcome]:
        """Judge ``frames`` in one forward pass; one outcome per frame, in order.

        Not thread-safe: one thread (a station loop, the service's batcher) owns an ``Inspector``. If the
        detector fails, the exception is raised and none of these frames counts as seen: a retry is judged.
        """
        admitted = self._admit(frames)
        if admitted.detector is None:  # nothing accepted
            return admitted.outcomes_in_order()
        try:
            detections = self._detect(admitted.detector, admitted.inputs(), admitted.floor)
        except BaseException:
            self._unadmit(admitted)
            raise
        return self._judge(admitted, detections)

    def _admit(self, frames: Sequence[Frame]) -> _Admitted:
        """The first half of ``inspect_frames``, in the owning thread: load the units, refuse what cannot be
        judged, mark the rest as seen, and fix the detector (a swap takes effect here, between batches)."""
        admitted = _Admitted(list(frames))
        self._apply_forgotten()
        try:
            self._load_units(frames)
        except QCError as exc:  # e.g. the store is down: every frame of the batch is refused, none lost silently
            for index, frame in enumerate(frames):
                self._reject(frame, str(exc))
                admitted.outcomes[index] = FrameOutcome(frame, FrameStatus.REJECTED, error=exc)
            return admitted
        for index, frame in enumerate(frames):
            try:
                state = self._unit(frame.unit_id, frame.order_id)
            except QCError as exc:
                self._reject(frame, str(exc))
                admitted.outcomes[index] = FrameOutcome(frame, FrameStatus.REJECTED, error=exc)
                continue
            key = (frame.camera_id, frame.sha256)
            if key in state.seen:
                self.summary.duplicate_frames += 1
                log.info("frame %s of unit %s already judged; skipped", frame.sha256[:12], frame.unit_id)
                admitted.outcomes[index] = FrameOutcome(frame, FrameStatus.DUPLICATE)
                continue
            state.seen.add(key)
            admitted.accepted.append((index, frame, state))
        if admitted.accepted:
            admitted.detector = self._current_detector()
            admitted.floor = detection_floor(admitted.detector, [state.profile for _, _, state in admitted.accepted])
        return admitted

    @staticmethod
    def _unadmit(admitted: _Admitted) -> None:
        """Undo ``_admit``'s marks for frames that were never judged (their detection failed): a retry of
        one must be judged, not refused as already judged while the store never got it."""
        for _, frame, state in admitted.accepted:
            state.seen.discard((frame.camera_id, frame.sha256))

    def _judge(self, admitted: _Admitted, detections: Sequence[Detections]) -> list[FrameOutcome]:
        """The second half of ``inspect_frames``, in the owning thread: judge each accepted frame against its
        order, roll its unit up, hand the result to the sinks and the journal, in frame order."""
        outcomes, detector = admitted.outcomes, admitted.detector
        if detector is None:  # nothing accepted
            return admitted.outcomes_in_order()
        self.summary.batches += 1
        for (index, frame, state), found in zip(admitted.accepted, detections, strict=True):
            dets = found.scaled(frame.scale)  # boxes in the original frame's pixels
            calibration = self._calibration(frame.camera_id)
            if calibration is not None and calibration.scale is not None and frame.scale != 1:
                # decoded reduced (a large frame): the camera's px/mm was measured at full resolution
                calibration = dataclasses.replace(calibration, scale=Scale(
                    calibration.scale.px_per_mm / frame.scale, calibration.scale.method))
            conformance = check_conformance(
                frame.image, dets, camera_id=frame.camera_id, order=state.order, profile=state.profile,
                calibration=calibration) if state.profile.conformance else ()
            if calibration is not None and calibration.label is not None:  # the label must name this unit
                identity = check_identity(frame.image, unit_id=frame.unit_id, order_id=frame.order_id,
                                          settings=calibration.label)
                conformance = ((identity,) if identity is not None else ()) + tuple(conformance)
            verdict = judge(dets, frame_width=frame.width * frame.scale,
                            frame_height=frame.height * frame.scale, unit_id=frame.unit_id,
                            order_id=frame.order_id, camera_id=frame.camera_id,
                            captured_at=frame.captured_at, profile=state.profile,
                            model_sha256=detector.model_sha256, frame_sha256=frame.sha256,
                            conformance=conformance, engine=getattr(detector, "engine_name", ""),
                            precision=getattr(detector, "precision", ""))
            result = FrameResult(frame, dets, verdict)
            self.summary.frames += 1
            self._emit(result)
            before = state.emitted
            self._add(state, verdict)
            changed = state.emitted if state.emitted is not before else None
            committed = self._record(result, changed)
            outcomes[index] = FrameOutcome(frame, FrameStatus.JUDGED, result=result, unit_verdict=changed,
                                           committed=committed)
        self._forget_old_units()  # units this batch finished may go now (the next batch may be admitted already)
        return admitted.outcomes_in_order()

    @staticmethod
    def _detect(detector: Detector, frames: Sequence[tuple[Frame, InspectionProfile]],
                confidence: float | None = None) -> list[Detections]:
        """Whole frames in one forward pass; frames whose profile asks for tiling as one tile batch each.
        ``confidence``: the floor to ask the model for (``detection_floor``); ``None``: the package's."""
        whole = [i for i, (f, p) in enumerate(frames) if not _tiled(f, p)]
        results: list[Detections | None] = [None] * len(frames)
        if whole:
            images = [frames[i][0].image for i in whole]
            for i, dets in zip(whole, detector.detect(images, confidence=confidence), strict=True):
                results[i] = dets
        for i, (frame, profile) in enumerate(frames):
            if results[i] is None:
                assert profile.tiling is not None
                width, height = detector.input_size
                results[i] = detect_tiled(detector, frame.image, width, height, overlap=profile.tiling.overlap,
                                          confidence=confidence, join_ios=profile.tiling.join_ios)
        return [r for r in results if r is not None]

    def process(self, items: Iterable[SourceItem], progress: Callable[[int], None] | None = None, *,
                prefetch: bool = True, overlap: bool | None = None) -> InspectionSummary:
        """Run every item through the line. Results go to the sinks, not into a list here: a live source
        never ends, and holding every frame would grow without bound.

        ``prefetch``: read and decode the next frames in a background thread. ``overlap``: run each batch's
        detection (letterbox, forward, decode of the head) in an inference thread while this thread judges
        and records the batch before it (``False``: one batch at a time, as ``inspect_frames``; ``None``: the
        inspector's ``overlap``).
        """
        run = self._process_overlapped if (self.overlap if overlap is None else overlap) else self._process
        if not prefetch:
            return run(iter(items), progress)
        source = prefetched(items, self.batch_size)
        try:
            return run(source, progress)
        finally:  # an error in a batch or a sink stops the prefetch thread (and releases its camera) now
            source.close()

    def _done_callback(self, progress: Callable[[int], None] | None) -> Callable[[FrameOutcome | None], None]:
        """``progress(n)``: ``n`` frames are done: durable with a journal (called from its thread then), else
        judged; a frame refused or already judged is done at once."""

        def done(outcome: FrameOutcome | None) -> None:
            if not progress:
                return
            if outcome is None or outcome.committed is None:
                progress(1)
            else:
                outcome.committed.add_done_callback(lambda f: None if f.exception() else progress(1))

        return done

    def _process(self, source: Iterator[SourceItem], progress: Callable[[int], None] | None) -> InspectionSummary:
        """One batch at a time: admit, detect, judge (the detector waits while a batch is judged)."""
        done = self._done_callback(progress)
        batch: list[Frame] = []
        for item in source:
            if isinstance(item, FrameFailure):
                self._wait_for_store([item])
                done(self._process_failure(item))
                continue
            batch.append(item)
            if len(batch) >= self.batch_size:
                for outcome in self._process_batch(batch):
                    done(outcome)
                batch = []
        if batch:
            for outcome in self._process_batch(batch):
                done(outcome)
        return self.summary

    def _process_overlapped(self, source: Iterator[SourceItem],
                            progress: Callable[[int], None] | None) -> InspectionSummary:
        """Batches k+1 .. k+depth are detected in inference threads while this thread judges and records batch k.

        This thread still owns every piece of the inspector's state: admission (units, duplicates, the swap
        of a detector) and judgement run here, in source order, as in ``_process``; the inference threads only
        run the pure ``_detect`` (whose letterbox, forward and head decoding release the GIL). With a depth of 2
        the engine gets the next batch while the thread of the one before still letterboxes or decodes (an
        OpenVINO model with one stream runs one request at a time: the two requests queue, they do not split
        the cores). Results reach the sinks and the journal in the order the serial loop gives them, and a
        frame is done only when its commit resolves. If a detection fails, the batches before it are judged
        and recorded, it and the batches admitted after it are un-admitted (a retry is judged), and the
        error is raised.
        """
        done = self._done_callback(progress)
        depth = max(1, self.inference_depth)
        in_flight: deque[tuple[_Admitted, Future[list[Detections]] | None]] = deque()

        def abandon() -> None:
            """After an error: wait for (or cancel) what is still in the inference threads, judge none of it."""
            while in_flight:
                admitted, future = in_flight.popleft()
                if future is not None and not future.cancel():
                    wait([future])
                self._unadmit(admitted)

        def finish(keep: int = 0) -> None:
            """Judge the oldest batches, in order, until at most ``keep`` are left in the inference threads."""
            while len(in_flight) > keep:
                admitted, future = in_flight[0]
                try:
                    detections = future.result() if future is not None else []
                except BaseException:
                    abandon()
                    raise
                in_flight.popleft()
                for outcome in self._judge(admitted, detections):
                    done(outcome)

        with ThreadPoolExecutor(max_workers=depth, thread_name_prefix="qcline-infer") as pool:

            def submit(frames: list[Frame]) -> None:
                self._wait_for_store(frames)
                admitted = self._admit(frames)
                future = None
                if admitted.detector is not None:
                    future = pool.submit(self._detect, admitted.detector, admitted.inputs(), admitted.floor)
                in_flight.append((admitted, future))
                finish(keep=depth)  # batch k, while the batches after it run in the inference threads

            try:
                batch: list[Frame] = []
                for item in source:
                    if isinstance(item, FrameFailure):  # recorded after the batches read before it
                        finish()
                        self._wait_for_store([item])
                        done(self._process_failure(item))
                        continue
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        submit(batch)
                        batch = []
                if batch:
                    submit(batch)
                finish()
            except BaseException:
                # the source or a sink failed: what was read before the error is judged, as serially; a failed
                # detection has already abandoned the rest
                try:
                    finish()
                finally:
                    abandon()
                raise
        return self.summary

    def close_unit_durably(self, unit_id: str) -> Future[UnitVerdict]:
        """With a journal: close the unit in the store, after every result handed to it before; the future
        holds the verdict rolled up from every frame the store has of it."""
        if self._journal is None:
            future: Future[UnitVerdict] = Future()
            try:
                future.set_result(self.close_unit(unit_id))
            except Exception as exc:
                future.set_exception(exc)
            return future
        state = self._units.get(unit_id)
        local = None
        if state is not None and state.frames:
            local = self.close_unit(unit_id)  # this process's view; the store's roll-up is the verdict
        answer: Future[UnitVerdict] = Future()

        def done(f: Future[UnitVerdict | None]) -> None:
            error = f.exception()
            verdict = f.result() if error is None else None
            if error is None and verdict is None:  # queued in the outbox: what this station knows, for now
                verdict = local
                error = None if local is not None else NotFoundError(
                    f"unit {unit_id!r} is closed once the central database is back; its verdict is not known here")
            if verdict is not None:
                self._durable_unit(verdict)
                answer.set_result(verdict)
            else:
                answer.set_exception(error or ConflictError(f"unit {unit_id!r} could not be closed"))

        self._journal.close_unit(unit_id).add_done_callback(done)
        return answer

    def close_unit(self, unit_id: str) -> UnitVerdict:
        """Close a unit now: its verdict, naming required views that never arrived."""
        self._apply_forgotten()
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
        """At the end of a replayed line: close every unit still waiting for views (durably, with a journal;
        a unit that cannot be closed is recorded as an error)."""
        open_units = [u for u, s in self._units.items() if s.emitted is None or not s.emitted.complete]
        if self._journal is None:
            return [self.close_unit(u) for u in open_units]
        futures = [(u, self.close_unit_durably(u)) for u in open_units]
        verdicts = []
        for unit_id, future in futures:
            try:
                verdicts.append(future.result())
            except QCError as exc:
                self.summary.record_error(f"unit {unit_id}: not closed ({exc})")
        return verdicts
