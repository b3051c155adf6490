"""The line station: triggers in, frames bound to units, verdicts out, every trigger answered and recorded.

``LineStation`` takes each ``Trigger`` (from any ``TriggerSource``, or ``submit`` directly: the HTTP
channel) into a bounded, ordered queue. One worker thread handles them in order:

1. **Order.** The trigger's order, else the unit's recorded order (its history), else the one the station
   config's ``order_from_unit`` reads from the unit id. None: answered ``UNKNOWN_UNIT``, nothing judged.
2. **Views.** The order profile's ``required_views``, else every camera of the station.
3. **Frames.** From each view's camera, in parallel, the frame the capture policy picks among those
   captured at/after the trigger (``first``, sharpest of a ``burst`` / ``window``), within ``frame_wait_ms``.
   A frame is claimed by this trigger and never given to another one, so overlapping units never share a
   frame. A view that got none becomes a ``FrameFailure`` naming the camera and why ("camera top: no frame
   within 800 ms after the trigger", "camera top: down: <last error>"): the unit cannot PASS and says why.
4. **Judge and close.** Through the ``InspectorRunner``: the service's ``MicroBatcher.call`` (its one thread
   owns the Inspector, ordered with the camera frames pushed over HTTP) or ``InlineRunner`` in
   ``qcline station run`` (this worker owns it). The frames are judged in one forward pass, the failures
   recorded, and the unit closed durably (``Inspector.close_unit_durably``): the verdict is the store's.
5. **Answer.** One ``TriggerAnswer`` to the source it came from (and to ``submit``'s future), one row in
   ``line_triggers`` (``inspection.store.triggers.TriggerLog``), whatever happened.

Never silent: a full queue answers ``REJECTED`` (queue full) at once; a trigger for a unit that is already
queued or being judged answers ``DUPLICATE`` at once (the unit is judged once; its verdict goes with the
first trigger's answer); stopping answers every queued trigger ``REJECTED`` (station stopping) after the
one in progress is finished.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from inspection.errors import NotFoundError, QCError
from inspection.line.cameras import CameraHub, CapturedFrame
from inspection.line.config import StationConfig
from inspection.line.triggers import Trigger, TriggerAnswer, TriggerOutcome, TriggerSource
from inspection.pipeline import FrameStatus, Inspector, OrderResolver
from inspection.sources.base import utc_now
from inspection.store.triggers import TriggerLog, TriggerRecord
from inspection.types import Frame, FrameFailure, UnitVerdict

log = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_FILE = Path("line") / "status.json"
"""Where a running station writes its figures, under ``QC_DATA_DIR`` (read by ``qcline station status``)."""


class InspectorRunner(Protocol):
    """Runs ``fn(inspector)`` on the one thread that owns the Inspector (``MicroBatcher.call`` has this shape)."""

    def call(self, fn: Callable[[Inspector], T]) -> Future[T]: ...


class InlineRunner:
    """For a station process without HTTP: the station's worker thread is the Inspector's only user."""

    def __init__(self, inspector: Inspector) -> None:
        self.inspector = inspector

    def call(self, fn: Callable[[Inspector], T]) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(self.inspector))
        except Exception as exc:  # handed to the caller like MicroBatcher.call does
            future.set_exception(exc)
        return future


@dataclass
class StationStats:
    received: int = 0
    answered: Counter[str] = field(default_factory=Counter)
    late: int = 0
    record_errors: int = 0
    source_errors: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"received": self.received, "answered": dict(self.answered), "late": self.late,
                "record_errors": self.record_errors, "source_errors": self.source_errors}


@dataclass
class _Pending:
    trigger: Trigger
    source: TriggerSource | None
    future: Future[TriggerAnswer]


def answer_json(answer: TriggerAnswer) -> dict[str, Any]:
    """An answer as the API, the status file and logs show it."""
    t, v = answer.trigger, answer.verdict
    return {"trigger_id": t.trigger_id, "channel": t.channel.value, "unit_id": t.unit_id,
            "order_id": v.order_id if v is not None else t.order_id, "at": t.at.isoformat(),
            "received_at": t.received_at.isoformat(), "answered_at": answer.answered_at.isoformat(),
            "outcome": answer.outcome.value, "verdict": v.verdict.value if v is not None else None,
            "reasons": list(v.reasons) if v is not None else [], "missing_views": list(v.missing_views) if v else [],
            "error": answer.error, "latency_ms": round(answer.latency_ms, 1)}


class LineStation:
    """Binds camera frames to the units triggers announce, judges them, answers each trigger once.

    Constructed from ready parts (the factory is ``api.composition.open_line_station``): the validated
    ``config``, the ``hub`` of open cameras, the ``runner`` that owns the Inspector, the ``orders`` resolver
    (the store, or the station's cached orders), the ``records`` log (``None``: answers are not recorded,
    for tests of the binding alone) and the trigger ``sources`` to start.
    """

    def __init__(self, config: StationConfig, hub: CameraHub, runner: InspectorRunner, orders: OrderResolver, *,
                 records: TriggerLog | None = None, sources: Sequence[TriggerSource] = (),
                 clock: Callable[[], datetime] = utc_now, max_recent: int = 200, judge_timeout_s: float = 120.0,
                 status_path: Path | None = None, status_interval_s: float = 1.0,
                 on_answer: Sequence[Callable[[TriggerAnswer], None]] = ()) -> None:
        self.config = config
        self.hub = hub
        self.runner = runner
        self.orders = orders
        self.records = records
        self.sources: list[TriggerSource] = list(sources)
        self.clock = clock
        self.judge_timeout_s = judge_timeout_s
        self.status_path = status_path
        self.status_interval_s = status_interval_s
        self.on_answer = list(on_answer)
        self.stats = StationStats()
        self._queue: deque[_Pending] = deque()
        self._open: dict[str, str] = {}  # unit id -> trigger id, while queued or being judged
        self._cond = threading.Condition()
        self._recent: deque[TriggerAnswer] = deque(maxlen=max_recent)
        self._stopping = False
        self._worker: threading.Thread | None = None
        self._status_thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max(1, hub.max_cameras), thread_name_prefix="line-take")
        self._current: str | None = None
        self._current_trigger: Trigger | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker, then the trigger sources (each delivering to ``submit`` with itself to answer)."""
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._run, name=f"line-station-{self.config.station}", daemon=True)
        self._worker.start()
        for source in self.sources:
            self._start_source(source)
        if self.status_path is not None:
            self._status_thread = threading.Thread(target=self._write_status_loop, name="line-status", daemon=True)
            self._status_thread.start()
        log.info("line station %s: %d cameras, %d trigger sources, capture %s, frame wait %.0f ms",
                 self.config.station, len(self.hub.names()), len(self.sources), self.config.capture.policy,
                 self.config.budgets.frame_wait_ms)

    def _start_source(self, source: TriggerSource) -> None:
        source.start(lambda trigger: self._deliver(trigger, source))

    def add_source(self, source: TriggerSource) -> None:
        self.sources.append(source)
        if self._worker is not None:
            self._start_source(source)

    def _deliver(self, trigger: Trigger, source: TriggerSource) -> None:
        self.submit(trigger, source)

    def close(self, timeout: float = 60.0) -> None:
        """Stop taking triggers (sources closed first), finish the one being judged, answer every queued
        one ``REJECTED`` (station stopping), then stop the worker and the status file."""
        for source in self.sources:
            try:
                source.close()
            except Exception:
                log.exception("closing trigger source %s failed", getattr(source, "name", source))
        with self._cond:
            self._stopping = True
            left = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for pending in left:
            self._finish(pending, TriggerOutcome.REJECTED, error="station stopping: the trigger was not handled")
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout)
        self._stopped.set()
        if self._status_thread is not None:
            self._status_thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.write_status()
        self.hub.close()  # handed over at construction: the station's cameras end with it

    # -- triggers in ----------------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, trigger: Trigger, source: TriggerSource | None = None) -> Future[TriggerAnswer]:
        """Queue ``trigger``; the future resolves with its one answer. Never raises and never blocks: a full
        queue, a unit already open or a stopping station answer at once."""
        pending = _Pending(trigger, source, Future())
        refusal: tuple[TriggerOutcome, str] | None = None
        with self._cond:
            self.stats.received += 1
            open_trigger = self._open.get(trigger.unit_id)
            if self._stopping:
                refusal = (TriggerOutcome.REJECTED, "station stopping: the trigger was not handled")
            elif open_trigger is not None:
                refusal = (TriggerOutcome.DUPLICATE, f"unit {trigger.unit_id} is already queued or being judged "
                           f"(trigger {open_trigger}): judged once, its verdict goes with that trigger's answer")
            elif len(self._queue) >= self.config.queue_max:
                refusal = (TriggerOutcome.REJECTED, f"trigger queue full ({self.config.queue_max} triggers "
                           "waiting): the station cannot keep up with the line")
            else:
                self._open[trigger.unit_id] = trigger.trigger_id
                self._queue.append(pending)
                self._cond.notify_all()
        if refusal is not None:
            log.warning("trigger %s (unit %s, %s): %s", trigger.trigger_id, trigger.unit_id, trigger.channel.value,
                        refusal[1])
            self._finish(pending, refusal[0], error=refusal[1], release=False)
        return pending.future

    # -- the worker -----------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                pending = self._queue.popleft()
                self._current = pending.trigger.trigger_id
                self._current_trigger = pending.trigger
            try:
                self._handle(pending)
            except Exception as exc:  # a bug must still answer the trigger, and the line go on
                log.exception("trigger %s failed", pending.trigger.trigger_id)
                if not pending.future.done():
                    self._finish(pending, TriggerOutcome.FAILED, error=f"station error: {exc}")
            finally:
                with self._cond:
                    self._current = None
                    self._current_trigger = None

    def _resolve_order(self, trigger: Trigger) -> str | None:
        if trigger.order_id is not None:
            return trigger.order_id
        history = self.orders.unit_histories([trigger.unit_id])
        if trigger.unit_id in history:
            return history[trigger.unit_id][0]
        return self.config.order_of_unit(trigger.unit_id)

    def _handle(self, pending: _Pending) -> None:
        trigger = pending.trigger
        started = time.monotonic()
        deadline = started + self.config.budgets.frame_wait_ms / 1000.0
        try:
            order_id = self._resolve_order(trigger)
            if order_id is None:
                self._finish(pending, TriggerOutcome.UNKNOWN_UNIT,
                             error=f"unit {trigger.unit_id}: no order (the trigger names none, the unit has no "
                                   "record, and the station config's order_from_unit does not read one)")
                return
            _order, profile = self.orders.get_order(order_id)
        except NotFoundError as exc:
            self._finish(pending, TriggerOutcome.UNKNOWN_UNIT, error=f"unit {trigger.unit_id}: {exc}")
            return
        except QCError as exc:
            self._finish(pending, TriggerOutcome.FAILED, error=f"unit {trigger.unit_id}: order not read: {exc}")
            return
        views = tuple(profile.required_views) or tuple(self.hub.names())
        if not views:
            self._finish(pending, TriggerOutcome.FAILED, error="this station has no camera and the order's profile "
                         "names no views: nothing to judge")
            return
        taken = self._take_frames(trigger, views, deadline)
        frames: list[Frame] = []
        failures: list[FrameFailure] = []
        refs: dict[str, Any] = {}
        for view, (captured, why) in taken.items():
            if captured is not None:
                frames.append(Frame(image=captured.image, camera_id=view, unit_id=trigger.unit_id, order_id=order_id,
                                    captured_at=captured.captured_at, source=f"line:{view}",
                                    source_seq=captured.seq))
                refs[view] = captured.ref
            else:
                failures.append(FrameFailure(camera_id=view, unit_id=trigger.unit_id, order_id=order_id,
                                             captured_at=trigger.at, source=f"line:{view}", error=why))
                refs[view] = {"camera": view, "error": why}
        unit_id = trigger.unit_id
        try:
            durable = self.runner.call(lambda inspector: _judge(inspector, unit_id, frames, failures))
            verdict = durable.result(self.judge_timeout_s).result(self.judge_timeout_s)
        except FutureTimeout:
            self._finish(pending, TriggerOutcome.FAILED, refs=refs, error=f"unit {unit_id}: not judged and recorded "
                         f"within {self.judge_timeout_s:g} s (model or results store stalled)")
            return
        except Exception as exc:  # QCError (store, conflict) or an engine error: answered with the reason
            self._finish(pending, TriggerOutcome.FAILED, refs=refs, error=f"unit {unit_id}: {exc}")
            return
        for frame in frames:  # the content address the results store files the frame's inspection under
            refs[frame.camera_id]["frame_sha256"] = frame.sha256
        outcome = TriggerOutcome.MISSING_VIEWS if failures else TriggerOutcome.JUDGED
        self._finish(pending, outcome, verdict=verdict, refs=refs,
                     error="; ".join(f.error for f in failures))

    def _take_frames(self, trigger: Trigger, views: Sequence[str], deadline: float
                     ) -> dict[str, tuple[CapturedFrame | None, str]]:
        """Each view's frame (in parallel, one shared deadline), or why there is none."""
        wait_ms = self.config.budgets.frame_wait_ms
        futures: dict[str, Future[CapturedFrame | None]] = {}
        result: dict[str, tuple[CapturedFrame | None, str]] = {}
        for view in views:
            camera = self.hub.get(view)
            if camera is None:
                result[view] = (None, f"camera {view}: not at this station (the order's profile requires it)")
                continue
            policy = self.config.capture_for(view)
            window_ms = policy.window_ms if policy.policy == "window" else 0
            latest = trigger.at + timedelta(milliseconds=wait_ms + window_ms)  # later: not this unit's frame
            futures[view] = self._pool.submit(camera.take, trigger.at, policy, deadline, latest)
        for view, future in futures.items():
            camera = self.hub.get(view)
            try:
                captured = future.result(timeout=max(0.0, deadline - time.monotonic()) + 5.0)
            except Exception as exc:
                captured, error = None, f"camera {view}: {exc}"
            else:
                error = ""
            if captured is None and not error:
                if camera is not None and not camera.connected and camera.last_error:
                    error = f"camera {view}: down: {camera.last_error}"
                elif camera is not None and camera.has_frame_after(trigger.at + timedelta(milliseconds=wait_ms)):
                    error = (f"camera {view}: no frame captured within {wait_ms:g} ms after the trigger is left (the "
                             "station fell behind its triggers: the newest frames are a later unit's)")
                else:
                    error = f"camera {view}: no frame within {wait_ms:g} ms after the trigger"
            result[view] = (captured, error)
        return {view: result[view] for view in views}

    # -- answers out ----------------------------------------------------------------------------------------

    def _finish(self, pending: _Pending, outcome: TriggerOutcome, *, verdict: UnitVerdict | None = None,
                error: str = "", refs: dict[str, Any] | None = None, release: bool = True) -> None:
        trigger = pending.trigger
        answer = TriggerAnswer(trigger, outcome, self.clock(), verdict=verdict,
                               error=error or ("" if verdict is not None else outcome.value))
        late = answer.latency_ms > self.config.budgets.answer_within_ms
        with self._cond:
            if release and self._open.get(trigger.unit_id) == trigger.trigger_id:
                del self._open[trigger.unit_id]
            self.stats.answered[outcome.value] += 1
            self.stats.late += int(late)
            self._recent.append(answer)
        if self.records is not None:
            try:
                self.records.record(TriggerRecord(
                    trigger.trigger_id, self.records.station_id, trigger.channel.value, trigger.unit_id,
                    verdict.order_id if verdict is not None else trigger.order_id, trigger.at, trigger.received_at,
                    answer.answered_at, outcome.value, verdict.verdict.value if verdict is not None else None,
                    answer.error, answer.latency_ms, refs or {}))
            except QCError as exc:  # the line still gets its answer; the gap is logged and counted
                with self._cond:
                    self.stats.record_errors += 1
                log.error("trigger %s answered but NOT recorded: %s", trigger.trigger_id, exc)
        with self._cond:  # recorded, so no longer pending to a reader: the answer is read back from here on
            if self._current_trigger is trigger:
                self._current, self._current_trigger = None, None
        level = logging.INFO if outcome in (TriggerOutcome.JUDGED,) else logging.WARNING
        log.log(level, "trigger %s unit %s: %s%s in %.0f ms%s", trigger.trigger_id, trigger.unit_id, outcome.value,
                f" {verdict.verdict.value}" if verdict is not None else "", answer.latency_ms,
                f" ({answer.error})" if answer.error and outcome is not TriggerOutcome.JUDGED else "")
        if pending.source is not None:
            try:
                pending.source.answer(answer)
            except Exception:
                with self._cond:
                    self.stats.source_errors += 1
                log.exception("trigger source %s failed to take the answer to %s",
                              getattr(pending.source, "name", "?"), trigger.trigger_id)
        for callback in self.on_answer:
            try:
                callback(answer)
            except Exception:
                log.exception("answer observer failed")
        if not pending.future.done():
            pending.future.set_result(answer)

    def pending(self, trigger_id: str) -> Trigger | None:
        """The trigger with this id while it is queued or being judged (``None`` once answered, or unknown)."""
        with self._cond:
            for item in self._queue:
                if item.trigger.trigger_id == trigger_id:
                    return item.trigger
            if self._current_trigger is not None and self._current_trigger.trigger_id == trigger_id:
                return self._current_trigger
        return None

    def recent(self, limit: int = 50) -> list[TriggerAnswer]:
        """The latest answers, newest first (this process's, bounded; the trigger log holds them all)."""
        with self._cond:
            return list(self._recent)[::-1][:limit]

    # -- the status file ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._cond:
            stats, depth, current = self.stats.as_json(), len(self._queue), self._current
        return {"station": self.config.station, "pid": os.getpid(), "updated_at": utc_now().isoformat(),
                "queue": depth, "queue_max": self.config.queue_max, "current": current, "triggers": stats,
                "cameras": [c.as_json() for c in self.hub.stats()],
                "recent": [answer_json(a) for a in self.recent(20)]}

    def write_status(self) -> None:
        """Write the figures atomically (temp file, then rename): a reader never sees half a file."""
        if self.status_path is None:
            return
        try:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.status_path.with_suffix(".tmp")
            temp.write_text(json.dumps(self.status(), indent=1))
            os.replace(temp, self.status_path)
        except OSError as exc:
            log.warning("station status file %s not written: %s", self.status_path, exc)

    def _write_status_loop(self) -> None:
        while not self._stopped.wait(self.status_interval_s):
            self.write_status()


def _judge(inspector: Inspector, unit_id: str, frames: list[Frame], failures: list[FrameFailure]
           ) -> Future[UnitVerdict]:
    """On the Inspector's thread: judge the views' frames in one forward pass, record the views without a
    frame, close the unit; the returned future resolves once the close is durable."""
    if frames:
        for outcome in inspector.inspect_frames(frames):
            if outcome.status is FrameStatus.REJECTED and outcome.error is not None:
                raise outcome.error
    if failures:
        inspector.process(failures, prefetch=False)
    return inspector.close_unit_durably(unit_id)


def read_status(data_dir: Path) -> dict[str, Any] | None:
    """What the running station last wrote (``None``: no station has run with this data folder)."""
    path = data_dir / STATUS_FILE
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"error": f"cannot read {path}: {exc}"}
    return loaded if isinstance(loaded, dict) else None


__all__ = ["STATUS_FILE", "InlineRunner", "InspectorRunner", "LineStation", "StationStats", "answer_json",
           "read_status"]
