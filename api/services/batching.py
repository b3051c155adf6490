"""Dynamic batching of camera requests: many HTTP requests, one forward pass.

Requests put their decoded frame on a queue and wait on a future. One worker thread owns the
``Inspector`` (which is not thread-safe): it takes what is queued, up to the batch size, and runs it as one
batch. It waits up to ``max_wait_s`` for more only while other requests are still on their way in (being
read or decoded), the way inference servers' dynamic batchers do; so one camera alone is never delayed,
and under load the batch fills from the queue without waiting at all.

Other work on the inspector (closing a unit) goes through the same queue, so it is ordered with the
frames before it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from inspection.errors import QCError
from inspection.pipeline import FrameOutcome, Inspector
from inspection.types import Frame

log = logging.getLogger(__name__)

T = TypeVar("T")


class OverloadedError(QCError):
    """The inference queue is full: the station sheds load instead of queueing without bound (HTTP 503)."""


class NotReadyError(QCError):
    """The model is still loading or warming up (HTTP 503)."""


@dataclass
class _FrameJob:
    frame: Frame
    future: Future[FrameOutcome]
    queued_at: float


@dataclass
class _Call:
    fn: Callable[[Inspector], Any]
    future: Future[Any]


@dataclass
class BatchStats:
    batches: int = 0
    frames: int = 0
    dropped: int = 0
    last_batch_size: int = 0


_STOP = object()


class MicroBatcher:
    def __init__(self, inspector: Inspector, *, max_batch: int = 8, max_wait_s: float = 0.004,
                 max_queue: int = 256, on_batch: Callable[[list[FrameOutcome], float, float], None] | None = None
                 ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_s >= 0")
        self.inspector = inspector
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: queue.Queue[object] = queue.Queue()
        self._queued_frames = 0
        self._arriving = 0
        self._lock = threading.Lock()
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._run, name="qcline-batcher", daemon=True)
        self._started = False

    # -- producer side ------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then stop the worker."""
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    @property
    def depth(self) -> int:
        """Frames waiting for a forward pass."""
        return self._queued_frames

    def arriving(self) -> _Arrival:
        """Context manager a request holds while it reads and decodes its frame, so the worker knows
        that waiting a few milliseconds will fill the batch."""
        return _Arrival(self)

    def submit(self, frame: Frame) -> Future[FrameOutcome]:
        with self._lock:
            if self._queued_frames >= self.max_queue:
                self.stats.dropped += 1
                raise OverloadedError(f"inference queue is full ({self.max_queue} frames waiting): retry later")
            self._queued_frames += 1
        future: Future[FrameOutcome] = Future()
        self._queue.put(_FrameJob(frame, future, time.perf_counter()))
        return future

    def call(self, fn: Callable[[Inspector], T]) -> Future[T]:
        """Run ``fn(inspector)`` on the worker thread, after every frame queued before it."""
        future: Future[T] = Future()
        self._queue.put(_Call(fn, future))
        return future

    # -- worker side --------------------------------------------------------------------------------

    def _collect(self, first: _FrameJob) -> tuple[list[_FrameJob], list[object]]:
        batch = [first]
        deferred: list[object] = []
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or self._arriving == 0:
                    break
                try:
                    item = self._queue.get(timeout=min(remaining, 0.0005))
                except queue.Empty:
                    continue
            if isinstance(item, _FrameJob):
                batch.append(item)
            else:  # a call or the stop mark: run after this batch, in order
                deferred.append(item)
                break
        with self._lock:
            self._queued_frames -= len(batch)
        return batch, deferred

    def _run(self) -> None:
        pending: list[object] = []
        while True:
            item = pending.pop(0) if pending else self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, _Call):
                self._run_call(item)
                continue
            assert isinstance(item, _FrameJob)
            batch, deferred = self._collect(item)
            pending.extend(deferred)
            self._run_batch(batch)

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn(self.inspector))
        except Exception as exc:  # handed to the caller
            call.future.set_exception(exc)

    def _run_batch(self, batch: list[_FrameJob]) -> None:
        started = time.perf_counter()
        frames = [job.frame for job in batch]
        try:
            outcomes = self.inspector.inspect_frames(frames)
        except Exception as exc:  # the model or the store failed: every waiting request hears why
            log.exception("batch of %d frames failed", len(batch))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.frames += len(batch)
        self.stats.last_batch_size = len(batch)
        for job, outcome in zip(batch, outcomes, strict=True):
            job.future.set_result(outcome)
        if self._on_batch is not None:
            try:
                self._on_batch(outcomes, elapsed, started - min(job.queued_at for job in batch))
            except Exception:  # metrics must never fail a batch
                log.exception("batch observer failed")


class _Arrival:
    def __init__(self, batcher: MicroBatcher) -> None:
        self._batcher = batcher

    def __enter__(self) -> None:
        with self._batcher._lock:
            self._batcher._arriving += 1

    def __exit__(self, *_: object) -> None:
        with self._batcher._lock:
            self._batcher._arriving -= 1
