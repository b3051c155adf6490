"""``BatchedResultWriter``: group commit of frame results, so a result is acknowledged only once it is durable.

A camera's 200, a frame the CLI counts as done: both wait on the ``Future`` that ``submit`` returns, and it
resolves only after the result's row, its findings and its evidence frame are committed. Throughput comes
from *group commit*, as databases and brokers do it: one background thread takes everything queued (up to
``batch_size``) and commits it in ONE transaction (one fsync); results arriving during that commit form the
next group. No timer adds latency to a lone camera, and under load the groups grow by themselves.

Each group also rolls its units up *in the database* (``ResultsStore.commit_group``, under a lock on the unit
rows), so a unit verdict is never stored without its frames and two processes sharing a database agree.
Evidence files are written (and fsynced) before the transaction that names them.

Nothing is dropped. A full queue blocks ``submit`` (back-pressure: the service's batcher stops taking
frames and cameras get 503 + Retry-After; the CLI's source pauses). A failing commit is retried with
back-off; after ``give_up_after_s`` (``None``: never) its results' futures fail with ``NotRecordedError``,
never with a success, so the caller can answer 503 and the camera's retry is judged and stored exactly once.
A result the database refuses (unknown order, unit under another order) fails alone; the rest of its group
is committed. Sinks given as ``after_commit`` (metrics, MQTT, PLC) hear of a result only once it is durable.

With an ``outbox`` (a station on a central database), a group that cannot be committed goes to the local
outbox instead and is acknowledged from there (``Committed.queued``); while the outbox holds a backlog every
new group goes behind it, so the order is kept. The writer thread tries the database every
``offline_retry_s`` and replays the backlog oldest first; each replayed group is rolled up centrally again
(the station's own roll-up during the cut was provisional). Sinks hear of a frame once it is durable (in the
database or the outbox) and of a unit verdict once the central roll-up decided it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from inspection.errors import ConflictError, NotFoundError, StoreError
from inspection.store.evidence import EvidenceStore
from inspection.store.outbox import Outbox, OutboxEntry
from inspection.store.repository import GroupCommit, ResultRecord
from inspection.types import Committed, Frame, FrameResult, UnitVerdict

log = logging.getLogger(__name__)


class NotRecordedError(StoreError):
    """A result could not be committed (the database stayed unavailable): it was NOT stored; retry it."""


class _UnreachableError(Exception):
    """The central database did not answer: the group goes to the outbox."""


class ResultLog(Protocol):
    """What the writer needs of a store (``ResultsStore`` is one)."""

    evidence: EvidenceStore

    def commit_group(self, results: Sequence[FrameResult | ResultRecord],
                     evidence_paths: Mapping[int, str] | None = None, *,
                     close_units: Sequence[str] = (), roll_up_units: bool = True,
                     release_pass_evidence: bool = False) -> GroupCommit: ...


class CommitSink(Protocol):
    """Told of every durable frame result and unit verdict (``inspection.pipeline.Sink`` has this shape)."""

    def submit(self, result: FrameResult) -> None: ...

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None: ...


@dataclass(frozen=True)
class WriterStats:
    """Counters of a writer, as of when ``stats`` was read.

    ``written`` rows inserted; ``duplicates`` results already recorded; ``batches`` committed groups;
    ``failed_writes`` failed commit attempts (each retry counts); ``not_recorded`` results given up on after
    ``give_up_after_s`` or refused by the database (their callers were told, none was acknowledged);
    ``evidence_failures`` frames whose evidence could not be stored (rows still written, without a path);
    ``stalled_s`` how long the current group has been retrying (0 when the database answers); ``queued``
    results put in the outbox; ``replayed`` outbox entries committed centrally; ``offline`` whether the
    central database is currently unreachable (results go to the outbox).
    """

    submitted: int = 0
    written: int = 0
    duplicates: int = 0
    batches: int = 0
    failed_writes: int = 0
    not_recorded: int = 0
    evidence_written: int = 0
    evidence_failures: int = 0
    unit_verdicts: int = 0
    evidence_released: int = 0
    sink_errors: int = 0
    queued: int = 0
    replayed: int = 0
    pending: int = 0
    stalled_s: float = 0.0
    offline: bool = False


_STOP = object()


@dataclass
class _FrameItem:
    result: FrameResult
    future: Future[Committed]
    provisional: UnitVerdict | None = None


@dataclass
class _CloseItem:
    unit_id: str
    future: Future[UnitVerdict | None]


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
    """Thread-safe group committer of ``FrameResult`` to a ``ResultsStore``, from one background thread."""

    def __init__(self, store: ResultLog, *, batch_size: int = 64, queue_size: int = 1024,
                 keep_pass_frames: bool = False, give_up_after_s: float | None = None,
                 retry_delay_s: float = 0.2, max_retry_delay_s: float = 2.0,
                 after_commit: Sequence[CommitSink] = (), outbox: Outbox | None = None,
                 offline_retry_s: float = 2.0) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be >= 1")
        if retry_delay_s < 0 or max_retry_delay_s < retry_delay_s or (give_up_after_s is not None
                                                                      and give_up_after_s < 0):
            raise ValueError("retry_delay_s >= 0, max_retry_delay_s >= retry_delay_s, give_up_after_s >= 0")
        self.store = store
        self.batch_size = batch_size
        self.keep_pass_frames = keep_pass_frames
        self.give_up_after_s = give_up_after_s
        self.retry_delay_s = retry_delay_s
        self.max_retry_delay_s = max_retry_delay_s
        self._sinks: list[CommitSink] = list(after_commit)
        self.outbox = outbox
        self.offline_retry_s = offline_retry_s
        self._offline = False
        self._last_try = 0.0
        self._backlog = outbox is not None and outbox.backlog() > 0  # left from before a restart: replay it
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._closed = False
        self._stalled_since: float | None = None
        self._counts: dict[str, int] = dict.fromkeys(
            ("submitted", "written", "duplicates", "batches", "failed_writes", "not_recorded", "evidence_written",
             "evidence_failures", "unit_verdicts", "evidence_released", "sink_errors", "queued", "replayed"), 0)
        self._thread = threading.Thread(target=self._run, name="qcline-group-commit", daemon=True)
        self._thread.start()

    # -- producer side ----------------------------------------------------------------------------------

    def add_sink(self, sink: CommitSink) -> None:
        """Tell ``sink`` of every result and unit verdict committed from now on."""
        with self._lock:
            self._sinks = [*self._sinks, sink]

    def submit(self, result: FrameResult, provisional: UnitVerdict | None = None) -> Future[Committed]:
        """Queue ``result``; the future resolves once it is committed (or fails with why it is not).

        Blocks while the queue is full: a slow database slows the line down, it never loses a result.
        ``provisional`` is the station's own roll-up of the unit when this result changed it: if the result has
        to wait in the outbox, that is the verdict the line acts on (and is told) until the central roll-up.
        """
        if not isinstance(result, FrameResult):
            raise TypeError(f"submit() takes a FrameResult, got {type(result).__name__}")
        future: Future[Committed] = Future()
        self._put(_FrameItem(result, future, provisional))
        self._count("submitted")
        return future

    def close_unit(self, unit_id: str) -> Future[UnitVerdict | None]:
        """Close ``unit_id`` after every result queued before, rolled up from the database (``None``: the close
        waits in the outbox and is applied centrally when the database is back)."""
        future: Future[UnitVerdict | None] = Future()
        self._put(_CloseItem(unit_id, future))
        return future

    def _put(self, item: object) -> None:
        if self._closed:
            raise StoreError("results writer is closed: cannot record more results")
        self._queue.put(item)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed (or given up on); ``False`` on timeout."""
        if self._closed or not self._thread.is_alive():
            self._thread.join(timeout)
            return not self._thread.is_alive()
        marker = _FlushMarker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Commit what is queued, then stop the thread. Idempotent."""
        with self._lock:
            already, self._closed = self._closed, True
        if not already:
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("results writer did not finish within %s s; %d items still queued (NOT acknowledged)",
                      timeout, self._queue.qsize())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def stats(self) -> WriterStats:
        with self._lock:
            stalled = time.monotonic() - self._stalled_since if self._stalled_since is not None else 0.0
            return WriterStats(pending=self._queue.qsize(), stalled_s=stalled, offline=self._offline, **self._counts)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- writer thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                group = [self._queue.get(timeout=self.offline_retry_s if self._backlog else None)]
            except queue.Empty:  # idle with a backlog: try the database again
                self._replay()
                continue
            while len(group) < self.batch_size and group[-1] is not _STOP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._process(group)
            except Exception:  # never die: every future below was resolved or is failed here
                log.exception("results writer: unexpected error in a group of %d", len(group))
                self._fail([i for i in group if isinstance(i, _FrameItem | _CloseItem)],
                           NotRecordedError("internal error of the results writer (logged): retry"))
            if group[-1] is _STOP:
                return

    def _process(self, group: list[object]) -> None:
        frames = [i for i in group if isinstance(i, _FrameItem)]
        closes = [i for i in group if isinstance(i, _CloseItem)]
        if frames or closes:
            paths = self._store_evidence([i.result for i in frames])
            if self._backlog and not self._replay():  # keep the order: behind the backlog, into the outbox
                self._to_outbox(frames, closes, paths)
                return self._mark(group)
            try:
                commit = self._commit_retrying([i.result for i in frames], paths, [c.unit_id for c in closes])
            except _UnreachableError:
                self._to_outbox(frames, closes, paths)
            except (NotFoundError, ConflictError) as e:
                log.warning("group of %d rejected (%s); committing its items one by one", len(group), e)
                self._one_by_one(frames, closes, paths)
            except NotRecordedError as e:
                self._fail([*frames, *closes], e)
            else:
                self._resolve(frames, closes, commit)
        self._mark(group)

    @staticmethod
    def _mark(group: list[object]) -> None:
        for item in group:
            if isinstance(item, _FlushMarker):
                item.done.set()

    # -- the outbox -----------------------------------------------------------------------------------

    def _to_outbox(self, frames: list[_FrameItem], closes: list[_CloseItem], paths: dict[int, str]) -> None:
        assert self.outbox is not None
        try:
            self.outbox.append([ResultRecord.of(i.result) for i in frames], paths, [c.unit_id for c in closes])
        except StoreError as e:  # full, or its disk failed: refuse (503), never acknowledge
            log.error("cannot queue %d results in the outbox: %s", len(frames), e)
            self._fail([*frames, *closes], NotRecordedError(f"results not recorded: {e}"))
            return
        with self._lock:
            if not self._offline:
                log.error("central database unreachable: results go to the station outbox %s", self.outbox.path)
            self._offline = True
            self._backlog = True
            self._counts["queued"] += len(frames)
        for item in frames:
            item.future.set_result(Committed(inserted=True, unit_verdict=item.provisional, queued=True))
        for close in closes:
            close.future.set_result(None)
        for sink in self._sinks:  # the station's provisional verdicts now; the central ones on replay
            try:
                for item in frames:
                    sink.submit(item.result)
                    if item.provisional is not None:
                        sink.submit_unit_verdict(item.provisional)
            except Exception:
                self._count("sink_errors")
                log.exception("after-commit sink %s failed", type(sink).__name__)

    def _replay(self) -> bool:
        """Replay the outbox into the database, oldest first; ``True`` once it is empty. Tries at most every
        ``offline_retry_s`` while the database stays away."""
        assert self.outbox is not None
        if self._offline and time.monotonic() - self._last_try < self.offline_retry_s:
            return False
        while True:
            entries = self.outbox.peek(self.batch_size)
            if not entries:
                with self._lock:
                    if self._offline:
                        log.warning("central database back: the outbox is drained")
                    self._backlog = self._offline = False
                return True
            try:
                commit = self._commit_entries(entries)
            except (NotFoundError, ConflictError):
                if not self._replay_one_by_one(entries):
                    return False
                continue
            except Exception as e:
                with self._lock:
                    self._offline, self._last_try = True, time.monotonic()
                log.debug("outbox replay: central database still unreachable (%s)", e)
                return False
            self.outbox.remove([e.seq for e in entries])
            self._replayed(entries, commit)

    def _commit_entries(self, entries: Sequence[OutboxEntry]) -> GroupCommit:
        records = [e.record for e in entries if e.record is not None]
        paths = {}
        for index, entry in enumerate(e for e in entries if e.record is not None):
            if entry.evidence_path:
                paths[index] = entry.evidence_path
        closes = [e.close_unit for e in entries if e.close_unit is not None]
        return self.store.commit_group(records, paths or None, close_units=closes,
                                       release_pass_evidence=not self.keep_pass_frames)

    def _replay_one_by_one(self, entries: Sequence[OutboxEntry]) -> bool:
        assert self.outbox is not None
        for entry in entries:
            try:
                commit = self._commit_entries([entry])
            except (NotFoundError, ConflictError) as e:
                self.outbox.bury(entry, str(e))
                continue
            except Exception:
                with self._lock:
                    self._offline, self._last_try = True, time.monotonic()
                return False
            self.outbox.remove([entry.seq])
            self._replayed([entry], commit)
        return True

    def _replayed(self, entries: Sequence[OutboxEntry], commit: GroupCommit) -> None:
        with self._lock:
            self._counts["replayed"] += len(entries)
            self._counts["written"] += sum(commit.inserted)
            self._counts["unit_verdicts"] += len(commit.unit_verdicts)
            self._counts["batches"] += 1
        for sink in self._sinks:  # the frames were told when queued; the verdicts are decided now
            try:
                for uv in commit.unit_verdicts.values():
                    sink.submit_unit_verdict(uv)
            except Exception:
                self._count("sink_errors")
                log.exception("after-commit sink %s failed", type(sink).__name__)
        self._delete_released(commit.released)

    def _one_by_one(self, frames: list[_FrameItem], closes: list[_CloseItem], paths: dict[int, str]) -> None:
        for index, item in enumerate(frames):
            single = {0: paths[index]} if index in paths else {}
            try:
                self._resolve([item], [], self._commit_retrying([item.result], single, []))
            except Exception as e:
                v = item.result.verdict
                log.error("result of unit %s (order %s, camera %s) NOT recorded: %s", v.unit_id, v.order_id,
                          v.camera_id, e)
                self._fail([item], e)
        for close in closes:
            try:
                self._resolve([], [close], self._commit_retrying([], {}, [close.unit_id]))
            except Exception as e:
                self._fail([close], e)

    def _commit_retrying(self, results: list[FrameResult], paths: dict[int, str],
                         close_units: list[str]) -> GroupCommit:
        started = time.monotonic()
        delay = self.retry_delay_s
        attempt = 0
        try:
            while True:
                attempt += 1
                try:
                    return self.store.commit_group(results, paths or None, close_units=close_units,
                                                   release_pass_evidence=not self.keep_pass_frames)
                except (NotFoundError, ConflictError):
                    raise
                except Exception as e:
                    self._count("failed_writes")
                    if self.outbox is not None and attempt >= 2:  # a station with an outbox does not wait
                        raise _UnreachableError(str(e)) from e
                    with self._lock:
                        if self._stalled_since is None:
                            self._stalled_since = started
                    waited = time.monotonic() - started
                    if self.give_up_after_s is not None and waited >= self.give_up_after_s:
                        log.error("commit of %d results failed for %.1f s (%s): NOT recorded, callers told to "
                                  "retry", len(results), waited, e)
                        raise NotRecordedError(f"results not recorded: the database is unavailable ({e}); "
                                               "retry") from e
                    if attempt == 1 or attempt % 10 == 0:
                        log.error("commit of %d results failed (try %d, %.1f s): %s; retrying (the line waits)",
                                  len(results), attempt, waited, e)
                    time.sleep(delay)
                    delay = min(max(delay * 2, 0.01), self.max_retry_delay_s)
        finally:
            with self._lock:
                self._stalled_since = None

    def _resolve(self, frames: list[_FrameItem], closes: list[_CloseItem], commit: GroupCommit) -> None:
        written = sum(commit.inserted)
        with self._lock:
            self._counts["written"] += written
            self._counts["duplicates"] += len(frames) - written
            self._counts["batches"] += 1
            self._counts["unit_verdicts"] += len(commit.unit_verdicts)
        # The verdict of a unit goes with the last new result of that unit in the group: the one completing it.
        last_of_unit = {item.result.verdict.unit_id: n for n, item in enumerate(frames) if commit.inserted[n]}
        for n, item in enumerate(frames):
            unit_id = item.result.verdict.unit_id
            uv = commit.unit_verdicts.get(unit_id) if last_of_unit.get(unit_id) == n else None
            item.future.set_result(Committed(commit.inserted[n], uv))
        for close in closes:
            close.future.set_result(commit.unit_verdicts[close.unit_id])
        for sink in self._sinks:
            try:
                for n, item in enumerate(frames):
                    if commit.inserted[n]:
                        sink.submit(item.result)
                for uv in commit.unit_verdicts.values():
                    sink.submit_unit_verdict(uv)
            except Exception:  # a failing sink never undoes or delays a commit
                self._count("sink_errors")
                log.exception("after-commit sink %s failed", type(sink).__name__)
        self._delete_released(commit.released)

    def _fail(self, items: Sequence[_FrameItem | _CloseItem], error: Exception) -> None:
        frames = sum(isinstance(i, _FrameItem) for i in items)
        self._count("not_recorded", frames)
        for item in items:
            if not item.future.done():
                item.future.set_exception(error)

    def _delete_released(self, shas: Sequence[str]) -> None:
        """Delete the PASS evidence the commit detached (no row names it any more): after the commit, so a
        failed commit never loses a file; a file left behind costs disk, not correctness."""
        for sha in shas:
            try:
                if self.store.evidence.delete(sha):
                    self._count("evidence_released")
            except Exception as e:
                log.error("cannot delete released evidence %s: %s", sha[:12], e)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def _store_evidence(self, batch: Sequence[FrameResult]) -> dict[int, str]:
        """Evidence files of the batch's frames, fsynced before the rows naming them are committed."""
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
                else:
                    _sha, path = evidence.put_image(frame.image)
                paths[index] = str(path)
                self._count("evidence_written")
            except Exception as e:
                self._count("evidence_failures")
                log.error("cannot store evidence of unit %s camera %s: %s (result recorded without it)",
                          result.verdict.unit_id, result.verdict.camera_id, e)
        return paths
