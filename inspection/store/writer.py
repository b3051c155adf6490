"""``BatchedResultWriter``: get frame results off the inference path and into the database in batches.

Inference produces a result every few milliseconds; a database commit (fsync) costs about as much. So
``submit`` only puts the result on a bounded queue, and one background thread groups results into a
transaction per ``batch_size`` results or per ``flush_interval_s``, whichever comes first. Evidence
frames are written to disk *before* their rows, so no row ever names a missing file. Every frame is kept
until its unit's verdict is known: unit verdicts travel through the same queue, after their frames, and
a PASS unit's frames are then released (unless ``keep_pass_frames``), so exactly the frames of units
that are not PASS stay for review.

Nothing is lost silently: a full queue blocks ``submit`` for at most ``put_timeout_s`` and then counts
``dropped_writes`` and logs an error; a failing transaction is logged, counted (``failed_writes``) and
retried once; results that still cannot be written are counted in ``lost_results``. The thread itself
never dies of an error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from inspection.errors import ConflictError, NotFoundError, StoreError
from inspection.store.evidence import EvidenceStore
from inspection.types import Frame, FrameResult, UnitVerdict, Verdict

log = logging.getLogger(__name__)


class ResultLog(Protocol):
    """What the writer needs of a store (``ResultsStore`` is one)."""

    evidence: EvidenceStore

    def record_frame_results(self, results: Sequence[FrameResult],
                             evidence_paths: Mapping[int, str] | None = None) -> int: ...

    def record_unit_verdicts(self, verdicts: Sequence[tuple[UnitVerdict, bool]]) -> None: ...

    def release_unit_evidence(self, unit_ids: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class WriterStats:
    """Counters of a writer, as of when ``stats`` was read.

    ``written`` rows inserted; ``duplicates`` results already recorded (replays); ``dropped_writes``
    results refused because the queue stayed full; ``failed_writes`` failed database transactions
    (each retry counts); ``lost_results`` results given up after the retry; ``evidence_failures``
    evidence frames that could not be stored (their rows are still written, without a path).
    """

    submitted: int = 0
    written: int = 0
    duplicates: int = 0
    batches: int = 0
    dropped_writes: int = 0
    failed_writes: int = 0
    lost_results: int = 0
    evidence_written: int = 0
    evidence_failures: int = 0
    unit_verdicts: int = 0
    evidence_released: int = 0
    pending: int = 0


_STOP = object()


@dataclass(frozen=True)
class _UnitVerdictItem:
    verdict: UnitVerdict
    closed: bool


class _FlushMarker:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


_SNIFF = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"BM", ".bmp"))


def _suffix_of(data: bytes) -> str | None:
    for magic, suffix in _SNIFF:
        if data.startswith(magic):
            return suffix
    return None


class BatchedResultWriter:
    """A thread-safe sink of ``FrameResult`` writing to a ``ResultsStore`` from one background thread."""

    def __init__(self, store: ResultLog, *, batch_size: int = 64, flush_interval_s: float = 0.2,
                 queue_size: int = 1024, keep_pass_frames: bool = False, put_timeout_s: float = 1.0,
                 retry_delay_s: float = 0.5) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be >= 1")
        if flush_interval_s <= 0 or put_timeout_s < 0 or retry_delay_s < 0:
            raise ValueError("flush_interval_s must be > 0; put_timeout_s and retry_delay_s >= 0")
        self.store = store
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.keep_pass_frames = keep_pass_frames
        self.put_timeout_s = put_timeout_s
        self.retry_delay_s = retry_delay_s
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._counts: dict[str, int] = dict.fromkeys(
            ("submitted", "written", "duplicates", "batches", "dropped_writes", "failed_writes",
             "lost_results", "evidence_written", "evidence_failures", "unit_verdicts", "evidence_released"), 0)
        self._thread = threading.Thread(target=self._run, name="qcline-results-writer", daemon=True)
        self._thread.start()

    # -- producer side ----------------------------------------------------------------------------------

    def submit(self, result: FrameResult) -> bool:
        """Queue ``result`` for writing; ``False`` (counted, logged) if the queue stayed full.

        Blocks at most ``put_timeout_s`` so a stalled database slows the line down briefly instead of
        stopping it, and never hides that results were dropped.
        """
        if not isinstance(result, FrameResult):
            raise TypeError(f"submit() takes a FrameResult, got {type(result).__name__}")
        if self._closed:
            raise StoreError("results writer is closed: cannot record more frame results")
        try:
            self._queue.put(result, timeout=self.put_timeout_s)
        except queue.Full:
            with self._lock:
                self._counts["dropped_writes"] += 1
                dropped = self._counts["dropped_writes"]
            log.error("results queue full for %.1f s: dropped result of unit %s camera %s "
                      "(%d dropped so far; is the database slow or down?)", self.put_timeout_s,
                      result.verdict.unit_id, result.verdict.camera_id, dropped)
            return False
        with self._lock:
            self._counts["submitted"] += 1
        return True

    def submit_unit_verdict(self, verdict: UnitVerdict, *, closed: bool = True) -> None:
        """Queue a unit verdict behind the unit's frames; a failure is logged, never raised to the line."""
        if self._closed:
            raise StoreError("results writer is closed: cannot record more unit verdicts")
        try:  # like a frame result: a stalled database slows the line for put_timeout_s, never stops it
            self._queue.put(_UnitVerdictItem(verdict, closed), timeout=self.put_timeout_s)
        except queue.Full:
            self._count("dropped_writes")
            log.error("results queue full for %.1f s: dropped the verdict of unit %s (is the database slow or "
                      "down?)", self.put_timeout_s, verdict.unit_id)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written (or given up on); ``False`` on timeout."""
        if self._closed or not self._thread.is_alive():
            # After close the thread drains the queue up to its stop mark; a marker behind it would
            # never be answered.
            self._thread.join(timeout)
            return not self._thread.is_alive()
        marker = _FlushMarker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write what is queued, then stop the thread. Idempotent."""
        with self._lock:
            already, self._closed = self._closed, True
        if not already:
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("results writer did not finish within %s s; %d results still queued",
                      timeout, self._queue.qsize())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(pending=self._queue.qsize(), **self._counts)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writer thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        batch: list[FrameResult] = []
        units: list[_UnitVerdictItem] = []
        deadline = 0.0
        while True:
            try:
                if batch or units:
                    item = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                else:
                    item = self._queue.get()
            except queue.Empty:
                self._write_safely(batch, units)
                batch, units = [], []
                continue
            if item is _STOP:
                self._write_safely(batch, units)
                return
            if isinstance(item, _FlushMarker):
                self._write_safely(batch, units)
                batch, units = [], []
                item.done.set()
                continue
            if not batch and not units:
                deadline = time.monotonic() + self.flush_interval_s
            if isinstance(item, _UnitVerdictItem):
                units.append(item)  # written after the batch's frames, in the same flush
            elif isinstance(item, FrameResult):
                batch.append(item)
            else:  # submit() checks; never let a stray item kill the thread
                log.error("results writer: ignoring unexpected queue item %r", item)
                continue
            if len(batch) + len(units) >= self.batch_size:
                self._write_safely(batch, units)
                batch, units = [], []

    def _write_safely(self, batch: list[FrameResult], units: Sequence[_UnitVerdictItem] = ()) -> None:
        if batch:
            try:
                self._write(batch)
            except Exception:  # the thread must survive anything; _write already counts what it can
                log.exception("results writer: unexpected error writing %d results", len(batch))
                self._count("lost_results", len(batch))
        if units:
            self._record_unit_verdicts(units)

    def _record_unit_verdicts(self, items: Sequence[_UnitVerdictItem]) -> None:
        latest = {item.verdict.unit_id: item for item in items}  # a unit re-judged in one flush: last wins
        try:
            self.store.record_unit_verdicts([(i.verdict, i.closed) for i in latest.values()])
            self._count("unit_verdicts", len(latest))
        except Exception as e:
            self._count("failed_writes")
            log.error("verdicts of units %s NOT recorded: %s", sorted(latest), e)
            return
        if self.keep_pass_frames:
            return
        passed = [u for u, i in latest.items() if i.verdict.verdict is Verdict.PASS]
        try:
            for sha in self.store.release_unit_evidence(passed):
                if self.store.evidence.delete(sha):
                    self._count("evidence_released")
        except Exception as e:  # a file left behind costs disk, not correctness
            log.error("cannot release evidence of PASS units %s: %s", passed, e)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _store_evidence(self, batch: Sequence[FrameResult]) -> dict[int, str]:
        """Evidence files of the batch's frames; PASS units release theirs once their verdict is in."""
        paths: dict[int, str] = {}
        evidence = self.store.evidence
        for index, result in enumerate(batch):
            frame = result.frame
            if not isinstance(frame, Frame):  # a failure has no image to keep
                continue
            try:
                suffix = _suffix_of(frame.data) if frame.data else None
                if suffix is not None:
                    _sha, path = evidence.put_file(frame.data, suffix, sha256=frame.sha256)  # hashed once
                    paths[index] = str(path)
                else:
                    _sha, path = evidence.put_image(frame.image)
                    paths[index] = str(path)
                self._count("evidence_written")
            except Exception as e:
                self._count("evidence_failures")
                log.error("cannot store evidence of unit %s camera %s: %s (result recorded without it)",
                          result.verdict.unit_id, result.verdict.camera_id, e)
        return paths

    def _write(self, batch: list[FrameResult]) -> None:
        paths = self._store_evidence(batch)
        for attempt in (1, 2):  # a dropped connection gets one retry
            try:
                self._commit(batch, paths)
                return
            except (NotFoundError, ConflictError) as e:
                # A result that contradicts the database (unknown order, unit under another order) would fail
                # every retry: write the others one by one and give up only on the offenders.
                log.error("results batch of %d rejected (%s); writing its results one by one", len(batch), e)
                break
            except Exception as e:
                self._count("failed_writes")
                if attempt == 2:
                    self._count("lost_results", len(batch))
                    log.error("writing %d results failed again (%s): results of units %s are NOT recorded",
                              len(batch), e, sorted({r.verdict.unit_id for r in batch}))
                    return
                log.error("writing %d results failed (%s); retrying once", len(batch), e)
                if self.retry_delay_s:
                    time.sleep(self.retry_delay_s)
        for index, result in enumerate(batch):
            single = {0: paths[index]} if index in paths else None
            try:
                self._commit([result], single)
            except Exception as e:
                self._count("lost_results")
                log.error("result of unit %s (order %s, camera %s) NOT recorded: %s", result.verdict.unit_id,
                          result.verdict.order_id, result.verdict.camera_id, e)

    def _commit(self, batch: Sequence[FrameResult], paths: Mapping[int, str] | None) -> None:
        inserted = self.store.record_frame_results(batch, paths or None)
        with self._lock:
            self._counts["written"] += inserted
            self._counts["duplicates"] += len(batch) - inserted
            self._counts["batches"] += 1
