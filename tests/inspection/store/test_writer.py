"""``BatchedResultWriter``: batching, durability on flush/close, evidence for non-PASS only, and survival."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from inspection.errors import StoreError
from inspection.hashing import sha256_bytes
from inspection.store import BatchedResultWriter, ResultsStore
from inspection.store.evidence import EvidenceStore, LocalEvidenceStore
from inspection.types import Frame, FrameResult, Verdict
from tests.inspection.store.factories import failure, finding, result, standard_book, unit_verdict


def evidence_files(store: ResultsStore) -> list[Path]:
    assert isinstance(store.evidence, LocalEvidenceStore)
    root = store.evidence.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def ready(store: ResultsStore) -> ResultsStore:
    store.import_order_book(standard_book())
    return store


def test_flush_makes_everything_durable_and_close_stops(ready: ResultsStore) -> None:
    writer = BatchedResultWriter(ready, batch_size=4, flush_interval_s=60)  # only size and flush trigger
    for seq in range(10):
        assert writer.submit(result("U1", seq=seq))
    assert writer.flush(timeout=30)
    assert len(ready.frame_verdicts("U1")) == 10
    stats = writer.stats
    assert (stats.submitted, stats.written, stats.pending, stats.lost_results) == (10, 10, 0, 0)
    assert stats.batches >= 3  # 4 + 4 + 2
    writer.submit(result("U2", seq=1))
    writer.close()
    assert writer.closed and len(ready.frame_verdicts("U2")) == 1
    assert writer.flush(timeout=1) is True
    with pytest.raises(StoreError, match="closed"):
        writer.submit(result("U3", seq=1))
    writer.close()  # idempotent


def test_small_batches_are_written_by_the_interval_without_flush(ready: ResultsStore) -> None:
    with BatchedResultWriter(ready, batch_size=1000, flush_interval_s=0.01) as writer:
        writer.submit(result("U1", seq=1))
        # The interval, not flush(), must write it: wait on the database with a generous bound.
        done = threading.Event()
        for _ in range(500):
            if ready.frame_verdicts("U1"):
                done.set()
                break
            done.wait(0.01)
        assert done.is_set()


@pytest.mark.parametrize("with_bytes", [False, True], ids=["jpeg-from-pixels", "original-png"])
def test_every_frame_of_a_unit_that_is_not_pass_is_kept(ready: ResultsStore, with_bytes: bool) -> None:
    failed = result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()],
                    with_bytes=with_bytes)
    passed = result("U1", camera="side", seq=2, with_bytes=with_bytes)  # a clean view of a failing unit
    with BatchedResultWriter(ready) as writer:
        for item in (failed, passed, failure("U1", camera="front", seq=3)):
            writer.submit(item)
        writer.submit_unit_verdict(unit_verdict("U1", "ORD-1", Verdict.FAIL, [failed, passed]))
    files = evidence_files(ready)
    assert sorted(p.suffix for p in files) == [".png" if with_bytes else ".jpg"] * 2
    frames = {f["camera_id"]: f for f in ready.unit_record("U1")["frames"]}
    fail_path = Path(frames["top"]["evidence_path"])
    assert fail_path in files and Path(frames["side"]["evidence_path"]) in files
    if with_bytes:
        assert isinstance(failed.frame, Frame)
        assert fail_path.read_bytes() == failed.frame.data
        assert fail_path.stem == sha256_bytes(failed.frame.data)
    assert frames["front"]["evidence_path"] is None  # a failure has no image
    assert ready.evidence_in_use(fail_path.stem)


@pytest.mark.parametrize(("keep_pass", "files_left"), [(False, 0), (True, 1)])
def test_pass_units_release_their_frames(ready: ResultsStore, keep_pass: bool, files_left: int) -> None:
    passed = result("U1", camera="top", seq=1)
    with BatchedResultWriter(ready, keep_pass_frames=keep_pass) as writer:
        writer.submit(passed)
        writer.submit_unit_verdict(unit_verdict("U1", "ORD-1", Verdict.PASS, [passed]))
    assert len(evidence_files(ready)) == files_left
    [frame] = ready.unit_record("U1")["frames"]
    assert (frame["evidence_path"] is not None) is keep_pass
    assert ready.unit_record("U1")["verdict"] == "PASS"


def test_a_file_shared_with_a_failing_unit_survives_a_pass_release(ready: ResultsStore) -> None:
    failed = result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()], with_bytes=True)
    same_bytes = result("U2", camera="top", seq=1, with_bytes=True)
    with BatchedResultWriter(ready) as writer:
        writer.submit(failed)
        writer.submit(same_bytes)
        writer.submit_unit_verdict(unit_verdict("U2", "ORD-1", Verdict.PASS, [same_bytes]))
    assert len(evidence_files(ready)) == 1


class FlakyStore:
    """Wraps a real store; the first ``failures`` writes raise like a dropped connection would."""

    def __init__(self, inner: ResultsStore, failures: int) -> None:
        self.inner = inner
        self.evidence: EvidenceStore = inner.evidence
        self.failures = failures
        self.calls = 0

    def record_frame_results(self, results: Sequence[FrameResult],
                             evidence_paths: Mapping[int, str] | None = None) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("server closed the connection unexpectedly")
        return self.inner.record_frame_results(results, evidence_paths)


@pytest.mark.parametrize(("failures", "written", "failed_writes", "lost"), [
    (0, 2, 0, 0),
    (1, 2, 1, 0),   # retried once: nothing lost
    (2, 1, 2, 1),   # retry failed too: that batch is lost, counted, and the next batch still goes in
])
def test_writer_survives_failing_batches(ready: ResultsStore, caplog: pytest.LogCaptureFixture, failures: int,
                                         written: int, failed_writes: int, lost: int) -> None:
    flaky = FlakyStore(ready, failures)
    with BatchedResultWriter(flaky, retry_delay_s=0) as writer:
        writer.submit(result("U1", seq=1))
        writer.flush()
        writer.submit(result("U1", seq=2))
        writer.flush()
        stats = writer.stats
    assert (stats.written, stats.failed_writes, stats.lost_results) == (written, failed_writes, lost)
    assert len(ready.frame_verdicts("U1")) == written
    if failures:
        assert "server closed the connection" in caplog.text


def test_one_bad_result_does_not_lose_its_batch(ready: ResultsStore,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with BatchedResultWriter(ready, retry_delay_s=0) as writer:
        writer.submit(result("U1", seq=1))
        writer.submit(result("U9", "ORD-404", seq=2))  # unknown order
        writer.submit(result("U1", seq=3))
        writer.submit(result("U1", seq=1))  # replay: a duplicate, not an error
        writer.flush()
        stats = writer.stats
    assert (stats.written, stats.duplicates, stats.lost_results) == (2, 1, 1)
    assert "ORD-404" in caplog.text and "NOT recorded" in caplog.text


class BlockedStore:
    """A store whose writes wait until released: the database is stalled."""

    def __init__(self, evidence: EvidenceStore) -> None:
        self.evidence = evidence
        self.release = threading.Event()
        self.written = 0

    def record_frame_results(self, results: Sequence[FrameResult],
                             evidence_paths: Mapping[int, str] | None = None) -> int:
        self.release.wait()
        self.written += len(results)
        return len(results)


def test_full_queue_drops_loudly_instead_of_blocking(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    stalled = BlockedStore(LocalEvidenceStore(tmp_path))
    writer = BatchedResultWriter(stalled, batch_size=1, queue_size=1, put_timeout_s=0.01)
    try:
        accepted = [writer.submit(result("U1", seq=n)) for n in range(6)]
        assert not all(accepted)
        assert writer.stats.dropped_writes == accepted.count(False) > 0
        assert "dropped" in caplog.text
    finally:
        stalled.release.set()
        writer.close()
    assert stalled.written == accepted.count(True)


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
    assert sum(u["frames"] for u in ready.units_of_order("ORD-1")) == 60


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"queue_size": 0}, {"flush_interval_s": 0}])
def test_bad_settings_are_refused(tmp_path: Path, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BatchedResultWriter(BlockedStore(LocalEvidenceStore(tmp_path)), **kwargs)  # type: ignore[arg-type]


def test_submit_refuses_what_is_not_a_frame_result(tmp_path: Path) -> None:
    with BatchedResultWriter(BlockedStore(LocalEvidenceStore(tmp_path))) as writer:
        with pytest.raises(TypeError, match="FrameResult"):
            writer.submit("not a result")  # type: ignore[arg-type]
        writer.flush()  # the thread is still alive and answering
