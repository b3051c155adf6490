"""``BatchedResultWriter``: group commit (durable before acknowledged), roll-up in the store, back-pressure,
failed commits never acknowledged, evidence for non-PASS units only."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from inspection.errors import StoreError
from inspection.hashing import sha256_bytes
from inspection.store import BatchedResultWriter, ResultsStore
from inspection.store.evidence import EvidenceStore, LocalEvidenceStore
from inspection.store.repository import GroupCommit
from inspection.store.writer import NotRecordedError
from inspection.types import Committed, Frame, FrameResult, UnitVerdict, Verdict
from tests.inspection.store.factories import failure, finding, result, standard_book


def evidence_files(store: ResultsStore) -> list[Path]:
    assert isinstance(store.evidence, LocalEvidenceStore)
    root = store.evidence.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def ready(store: ResultsStore) -> ResultsStore:
    store.import_order_book(standard_book())
    return store


class ListSink:
    def __init__(self, store: ResultsStore | None = None) -> None:
        self.store = store
        self.frames: list[FrameResult] = []
        self.units: list[UnitVerdict] = []
        self.recorded_when_told: list[bool] = []

    def submit(self, result: FrameResult) -> None:
        self.frames.append(result)
        if self.store is not None:  # after-commit: the row is already there when the sink hears of it
            v = result.verdict
            self.recorded_when_told.append(self.store.find_inspection(v.unit_id, v.camera_id, v.frame_sha256)
                                           is not None)

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        self.units.append(verdict)


class GatedStore:
    """A real store whose commits wait at a gate: the database is slow (or stalled)."""

    def __init__(self, inner: ResultsStore) -> None:
        self.inner = inner
        self.evidence: EvidenceStore = inner.evidence
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.groups: list[int] = []

    def commit_group(self, results: Sequence[FrameResult], evidence_paths: Mapping[int, str] | None = None, *,
                     close_units: Sequence[str] = (), roll_up_units: bool = True,
                     release_pass_evidence: bool = False) -> GroupCommit:
        self.entered.set()
        self.gate.wait()
        self.groups.append(len(results))
        return self.inner.commit_group(results, evidence_paths, close_units=close_units,
                                       release_pass_evidence=release_pass_evidence)


class FlakyStore(GatedStore):
    """The first ``failures`` commits raise like a dropped connection."""

    def __init__(self, inner: ResultsStore, failures: int) -> None:
        super().__init__(inner)
        self.gate.set()
        self.failures = failures
        self.calls = 0

    def commit_group(self, results: Sequence[FrameResult], evidence_paths: Mapping[int, str] | None = None, *,
                     close_units: Sequence[str] = (), roll_up_units: bool = True,
                     release_pass_evidence: bool = False) -> GroupCommit:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("server closed the connection unexpectedly")
        return super().commit_group(results, evidence_paths, close_units=close_units,
                                    release_pass_evidence=release_pass_evidence)


def test_a_result_is_acknowledged_only_once_committed(ready: ResultsStore) -> None:
    gated = GatedStore(ready)
    with BatchedResultWriter(gated) as writer:
        first = result("U1", seq=1)
        future = writer.submit(first)
        assert gated.entered.wait(10)
        assert not future.done()  # the database has not committed: nobody may answer 200 yet
        assert ready.find_inspection("U1", "top", first.verdict.frame_sha256) is None
        gated.gate.set()
        assert future.result(timeout=10) == Committed(inserted=True, unit_verdict=None)
        assert ready.find_inspection("U1", "top", first.verdict.frame_sha256) is not None


def test_results_waiting_during_a_commit_are_committed_together(ready: ResultsStore) -> None:
    gated = GatedStore(ready)
    with BatchedResultWriter(gated, batch_size=64) as writer:
        futures = [writer.submit(result("U1", seq=0))]
        assert gated.entered.wait(10)
        futures += [writer.submit(result(f"U{n % 5}", seq=n)) for n in range(1, 21)]  # arrive meanwhile
        gated.gate.set()
        assert all(f.result(timeout=10).inserted for f in futures)
    assert gated.groups == [1, 20]  # one transaction (one fsync) for everything that queued up
    assert sum(u.frames for u in ready.units_of_order("ORD-1")) == 21


def test_unit_verdicts_are_rolled_up_in_the_store_and_told_after_commit(ready: ResultsStore) -> None:
    sink = ListSink(ready)
    with BatchedResultWriter(ready, after_commit=[sink]) as writer:
        top = writer.submit(result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()]))
        assert top.result(timeout=10).unit_verdict is None  # "side" is still missing
        side = writer.submit(result("U1", camera="side", seq=2)).result(timeout=10)
    assert side.unit_verdict is not None and side.unit_verdict.verdict is Verdict.FAIL
    assert side.unit_verdict.complete and len(side.unit_verdict.frames) == 2
    record = ready.unit_record("U1").to_json()
    assert (record["verdict"], record["status"], record["complete"]) == ("FAIL", "closed", True)
    assert [u.verdict for u in sink.units] == [Verdict.FAIL]
    assert len(sink.frames) == 2 and all(sink.recorded_when_told)


def test_a_replayed_result_is_committed_once(ready: ResultsStore) -> None:
    sink = ListSink()
    same = result("U1", seq=1)
    with BatchedResultWriter(ready, after_commit=[sink]) as writer:
        assert writer.submit(same).result(timeout=10).inserted
        assert not writer.submit(same).result(timeout=10).inserted
        stats = writer.stats
    assert (stats.written, stats.duplicates) == (1, 1)
    assert len(ready.frame_verdicts("U1")) == 1 and len(sink.frames) == 1  # told once, too


def test_close_unit_names_missing_views(ready: ResultsStore) -> None:
    with BatchedResultWriter(ready) as writer:
        writer.submit(result("U1", camera="top", seq=1))
        verdict = writer.close_unit("U1").result(timeout=10)
        unknown = writer.close_unit("U404")
        with pytest.raises(Exception, match="no record"):
            unknown.result(timeout=10)
    assert verdict.missing_views == ("side",) and not verdict.complete and verdict.verdict is not Verdict.PASS
    assert ready.unit_record("U1").status == "closed"


def test_flush_and_close(ready: ResultsStore) -> None:
    writer = BatchedResultWriter(ready, batch_size=4)
    for seq in range(10):
        writer.submit(result("U1", seq=seq))
    assert writer.flush(timeout=30)
    assert len(ready.frame_verdicts("U1")) == 10
    stats = writer.stats
    assert (stats.submitted, stats.written, stats.pending, stats.not_recorded) == (10, 10, 0, 0)
    writer.submit(result("U2", seq=1))
    writer.close()
    assert writer.closed and len(ready.frame_verdicts("U2")) == 1
    with pytest.raises(StoreError, match="closed"):
        writer.submit(result("U3", seq=1))
    writer.close()  # idempotent


@pytest.mark.parametrize("with_bytes", [False, True], ids=["jpeg-from-pixels", "original-png"])
def test_every_frame_of_a_unit_that_is_not_pass_is_kept(ready: ResultsStore, with_bytes: bool) -> None:
    failed = result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()],
                    with_bytes=with_bytes)
    passed = result("U1", camera="side", seq=2, with_bytes=with_bytes)  # a clean view of a failing unit
    with BatchedResultWriter(ready) as writer:
        for item in (failed, passed, failure("U1", camera="front", seq=3)):
            writer.submit(item)
    files = evidence_files(ready)
    assert sorted(p.suffix for p in files) == [".png" if with_bytes else ".jpg"] * 2
    frames = {f["camera_id"]: f for f in ready.unit_record("U1").to_json()["frames"]}
    fail_path = Path(frames["top"]["evidence_path"])
    assert fail_path in files and Path(frames["side"]["evidence_path"]) in files
    if with_bytes:
        assert isinstance(failed.frame, Frame)
        assert fail_path.read_bytes() == failed.frame.data
        assert fail_path.stem == sha256_bytes(failed.frame.data)
    assert frames["front"]["evidence_path"] is None  # a failure has no image
    assert ready.evidence_in_use(fail_path.stem)


@pytest.mark.parametrize(("keep_pass", "files_left"), [(False, 0), (True, 2)])
def test_pass_units_release_their_frames(ready: ResultsStore, keep_pass: bool, files_left: int) -> None:
    with BatchedResultWriter(ready, keep_pass_frames=keep_pass) as writer:
        writer.submit(result("U1", camera="top", seq=1))
        writer.submit(result("U1", camera="side", seq=2))
    assert len(evidence_files(ready)) == files_left
    assert ready.unit_record("U1").verdict == "PASS"
    assert all((f["evidence_path"] is not None) is keep_pass for f in ready.unit_record("U1").to_json()["frames"])


def test_a_file_shared_with_a_failing_unit_survives_a_pass_release(ready: ResultsStore) -> None:
    with BatchedResultWriter(ready) as writer:
        writer.submit(result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()], with_bytes=True))
        writer.submit(result("U2", camera="top", seq=1, with_bytes=True))  # same bytes, PASS unit
        writer.submit(result("U2", camera="side", seq=2, with_bytes=True))
    assert ready.unit_record("U2").verdict == "PASS"
    assert len(evidence_files(ready)) == 1


@pytest.mark.parametrize("failures", [1, 3])
def test_a_failing_commit_is_retried_until_it_works(ready: ResultsStore, caplog: pytest.LogCaptureFixture,
                                                    failures: int) -> None:
    flaky = FlakyStore(ready, failures)
    with BatchedResultWriter(flaky, retry_delay_s=0) as writer:
        futures = [writer.submit(result("U1", seq=n)) for n in range(3)]
        assert all(f.result(timeout=10).inserted for f in futures)
        stats = writer.stats
    assert (stats.written, stats.failed_writes, stats.not_recorded) == (3, failures, 0)
    assert "server closed the connection" in caplog.text


def test_a_commit_given_up_is_never_acknowledged_and_its_retry_is_stored_once(ready: ResultsStore) -> None:
    flaky = FlakyStore(ready, failures=10**6)
    same = result("U1", seq=1)
    with BatchedResultWriter(flaky, retry_delay_s=0.001, max_retry_delay_s=0.001, give_up_after_s=0.05) as writer:
        future = writer.submit(same)
        with pytest.raises(NotRecordedError, match="not recorded"):
            future.result(timeout=10)
        assert ready.frame_verdicts("U1") == []
        flaky.failures = 0  # the database is back
        assert writer.submit(same).result(timeout=10).inserted
        assert writer.stats.not_recorded == 1
    assert len(ready.frame_verdicts("U1")) == 1


def test_one_bad_result_fails_alone(ready: ResultsStore, caplog: pytest.LogCaptureFixture) -> None:
    gated = GatedStore(ready)
    with BatchedResultWriter(gated) as writer:
        blocker = writer.submit(result("U0", seq=0))
        assert gated.entered.wait(10)
        good = [writer.submit(result("U1", seq=n)) for n in (1, 3)]
        bad = writer.submit(result("U9", "ORD-404", seq=2))  # unknown order: in the same group as the good
        gated.gate.set()
        assert blocker.result(timeout=10).inserted and all(f.result(timeout=10).inserted for f in good)
        with pytest.raises(Exception, match="ORD-404"):
            bad.result(timeout=10)
        assert writer.stats.not_recorded == 1
    assert len(ready.frame_verdicts("U1")) == 2
    assert "NOT recorded" in caplog.text


def test_a_stalled_database_blocks_instead_of_dropping(ready: ResultsStore) -> None:
    gated = GatedStore(ready)
    writer = BatchedResultWriter(gated, batch_size=1, queue_size=1)
    submitted: list[Future[Committed]] = []

    def produce() -> None:
        for n in range(6):
            submitted.append(writer.submit(result("U1", seq=n)))

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        producer.join(0.5)
        assert producer.is_alive() and len(submitted) < 6  # back-pressure: the producer waits
        assert not any(f.done() for f in submitted)
    finally:
        gated.gate.set()
        producer.join(10)
        writer.close()
    assert len(submitted) == 6 and all(f.result(timeout=1).inserted for f in submitted)
    assert len(ready.frame_verdicts("U1")) == 6


def test_writer_is_thread_safe(ready: ResultsStore) -> None:
    with BatchedResultWriter(ready, batch_size=8) as writer:
        def produce(unit: str) -> None:
            for seq in range(20):
                writer.submit(result(unit, seq=seq))

        threads = [threading.Thread(target=produce, args=(f"U{n}",)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        writer.flush()
        assert writer.stats.written == 60
    assert sum(u.frames for u in ready.units_of_order("ORD-1")) == 60


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"queue_size": 0}, {"retry_delay_s": -1},
                                    {"give_up_after_s": -1}])
def test_bad_settings_are_refused(ready: ResultsStore, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BatchedResultWriter(ready, **kwargs)  # type: ignore[arg-type]


def test_submit_refuses_what_is_not_a_frame_result(ready: ResultsStore) -> None:
    with BatchedResultWriter(ready) as writer:
        with pytest.raises(TypeError, match="FrameResult"):
            writer.submit("not a result")  # type: ignore[arg-type]
        assert writer.flush(timeout=10)  # the thread is still alive and answering
