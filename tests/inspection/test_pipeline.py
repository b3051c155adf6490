"""The station loop with injected fakes: batching, per-order judgement, roll-up, failures, sinks, swap."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from inspection.boxes import Box
from inspection.errors import NotFoundError, SourceError, StoreError
from inspection.pipeline import FrameStatus, Inspector
from inspection.profiles import InspectionProfile, Order
from inspection.types import (
    Committed,
    Detections,
    Frame,
    FrameFailure,
    FrameResult,
    FrameVerdict,
    UnitVerdict,
    Verdict,
)

NOW = datetime(2026, 11, 26, tzinfo=UTC)
CLASSES = ("scratch", "knot")
GLOSS = InspectionProfile.model_validate({"name": "gloss", "classes": {"scratch": {"critical": True}},
                                         "required_views": ["top", "side"]})
RUSTIC = InspectionProfile.model_validate({"name": "rustic", "classes": {"scratch": {"ignore": True}},
                                          "required_views": ["top"]})


class FakeDetector:
    """Sees a scratch on every frame brighter than 128; records the batches it was given."""

    def __init__(self, sha: str = "a" * 64) -> None:
        self.model_sha256 = sha
        self.class_names = CLASSES
        self.engine_name, self.precision = "fake", "fp32"
        self.input_size, self.max_batch = (32, 32), 8
        self.batches: list[int] = []

    def detect(self, images: Sequence[np.ndarray], confidence: float | None = None) -> list[Detections]:
        self.batches.append(len(images))
        out = []
        for image in images:
            if image.mean() > 128:
                out.append(Detections(np.array([[1, 1, 5, 5]], np.float32), np.array([0.9], np.float32),
                                      np.array([0], np.int64), CLASSES))
            else:
                out.append(Detections.empty(CLASSES))
        return out


class FakeOrders:
    def __init__(self) -> None:
        self.orders = {"O-GLOSS": GLOSS, "O-RUSTIC": RUSTIC}
        self.history: dict[str, list[FrameVerdict]] = {}

    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]:
        if order_id not in self.orders:
            raise NotFoundError(f"order {order_id!r} not found")
        profile = self.orders[order_id]
        return Order(id=order_id, profile=profile.name), profile

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        return {u: (h[0].order_id, h) for u, h in self.history.items() if u in unit_ids and h}


class ListSink:
    def __init__(self) -> None:
        self.frames: list[FrameResult] = []
        self.units: list[UnitVerdict] = []

    def submit(self, result: FrameResult) -> None:
        self.frames.append(result)

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        self.units.append(verdict)


class BrokenSink:
    def submit(self, result: FrameResult) -> None:
        raise RuntimeError("disk full")

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        raise RuntimeError("disk full")


def frame(unit: str, order: str, camera: str, value: int, seq: int = 0) -> Frame:
    image = np.full((16, 16, 3), value, np.uint8)
    image[0, 0, 0] = seq % 256  # distinct content per frame
    return Frame(image, camera_id=camera, unit_id=unit, order_id=order, captured_at=NOW, source_seq=seq)


def test_same_defect_judged_per_order_and_rolled_up_per_unit() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink], batch_size=3)
    inspector.process([
        frame("U1", "O-GLOSS", "top", 200, 1), frame("U1", "O-GLOSS", "side", 10, 2),
        frame("U2", "O-RUSTIC", "top", 200, 3),
        frame("U3", "O-GLOSS", "top", 10, 4), frame("U3", "O-GLOSS", "side", 10, 5),
    ])
    verdicts = {u.unit_id: u.verdict for u in sink.units}
    assert verdicts == {"U1": Verdict.FAIL, "U2": Verdict.PASS, "U3": Verdict.PASS}
    assert len(sink.frames) == 5
    assert inspector.detector.batches == [3, 2]  # type: ignore[attr-defined]


def test_unreadable_frames_are_recorded_and_the_line_goes_on() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink])
    inspector.process([
        FrameFailure("top", "U1", "O-RUSTIC", NOW, "cam1", "truncated JPEG"),
        frame("U2", "O-RUSTIC", "top", 10, 1),
    ])
    assert [r.verdict.verdict for r in sink.frames] == [Verdict.REVIEW, Verdict.PASS]
    assert sink.frames[0].detections is None and "truncated" in sink.frames[0].verdict.error
    assert inspector.summary.failed_frames == 1 and inspector.summary.frames == 1


def test_unknown_orders_are_rejected_without_stopping_the_line() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink])
    inspector.process([frame("U1", "NOPE", "top", 10, 1), frame("U2", "O-RUSTIC", "top", 10, 2)])
    assert inspector.summary.rejected_frames == 1
    assert "NOPE" in inspector.summary.errors[0]
    assert [u.unit_id for u in sink.units] == ["U2"]


def test_a_unit_cannot_move_to_another_order() -> None:
    inspector = Inspector(FakeDetector(), FakeOrders(), [ListSink()])
    inspector.process([frame("U1", "O-RUSTIC", "top", 10, 1), frame("U1", "O-GLOSS", "top", 10, 2)])
    assert inspector.summary.rejected_frames == 1 and "belongs to order" in inspector.summary.errors[0]


def test_a_failing_sink_never_stops_the_line() -> None:
    good = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [BrokenSink(), good])
    inspector.process([frame("U1", "O-RUSTIC", "top", 10, i) for i in range(3)])
    assert len(good.frames) == 3
    assert inspector.summary.sink_errors >= 3


def test_replayed_frames_are_not_judged_twice() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink])
    same = frame("U1", "O-GLOSS", "top", 200, 1)
    inspector.process([same, same])
    assert len(sink.frames) == 1 and inspector.summary.duplicate_frames == 1


def test_history_from_an_earlier_run_completes_a_unit() -> None:
    orders = FakeOrders()
    first = ListSink()
    Inspector(FakeDetector(), orders, [first]).process([frame("U1", "O-GLOSS", "top", 10, 1)])
    assert first.units == []  # side view still missing
    orders.history["U1"] = [r.verdict for r in first.frames]
    second = ListSink()
    Inspector(FakeDetector(), orders, [second]).process([frame("U1", "O-GLOSS", "side", 10, 2)])
    assert [u.verdict for u in second.units] == [Verdict.PASS]


def test_closing_names_missing_views() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink])
    inspector.process([frame("U1", "O-GLOSS", "top", 10, 1)])
    [closed] = inspector.close_open_units()
    assert closed.verdict is Verdict.REVIEW and closed.missing_views == ("side",)
    assert sink.units == [closed]


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_swap_takes_effect_between_batches_and_no_frame_is_lost_or_judged_twice(batch_size: int) -> None:
    old, new = FakeDetector("a" * 64), FakeDetector("b" * 64)
    sink = ListSink()
    inspector = Inspector(old, FakeOrders(), [sink], batch_size=batch_size)

    def frames():  # the swap arrives while frame 4 is being read
        for i in range(10):
            if i == 4:
                inspector.swap_detector(new)
            yield frame(f"U{i}", "O-RUSTIC", "top", 10, i)

    inspector.process(frames(), prefetch=False)  # the swap point must be deterministic here
    shas = [r.verdict.model_sha256 for r in sink.frames]
    assert len(shas) == 10 and len({r.verdict.unit_id for r in sink.frames}) == 10
    assert shas == sorted(shas)  # once switched, never back
    assert shas[-1] == "b" * 64
    # a batch already formed before the swap request (frames 0-3) still runs on the old model
    assert shas[0] == ("a" * 64 if batch_size <= 4 else "b" * 64)


def test_prefetching_keeps_order_and_hands_source_errors_to_the_caller() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink], batch_size=2)
    inspector.process(frame(f"U{i}", "O-RUSTIC", "top", 10, i) for i in range(7))
    assert [r.verdict.unit_id for r in sink.frames] == [f"U{i}" for i in range(7)]

    def broken():
        yield frame("U9", "O-RUSTIC", "top", 10, 9)
        raise SourceError("camera unplugged")

    with pytest.raises(SourceError, match="unplugged"):
        inspector.process(broken())


def test_memory_stays_bounded_on_a_long_line() -> None:
    inspector = Inspector(FakeDetector(), FakeOrders(), [ListSink()], max_units=3)
    inspector.process((frame(f"U{i}", "O-RUSTIC", "top", 10, i) for i in range(50)), prefetch=False)
    assert len(inspector._units) == 3
    assert inspector.summary.frames == 50


def test_a_frame_refused_for_its_order_leaves_the_unit_history_for_the_next_one() -> None:
    """Regression: the recorded history used to be dropped before the order check, so a second frame naming the
    same wrong order got through and was judged with the wrong profile."""
    from inspection.errors import ConflictError
    from inspection.pipeline import FrameStatus

    class Orders:
        def get_order(self, order_id: str):  # type: ignore[no-untyped-def]
            return None, RUSTIC

        def unit_histories(self, unit_ids):  # type: ignore[no-untyped-def]
            return {"U1": ("O-GLOSS", [])}

    inspector = Inspector(FakeDetector(), Orders())  # type: ignore[arg-type]
    now = datetime.now(UTC)
    frames = [Frame(np.full((16, 16, 3), v, np.uint8), "top", "U1", "O-RUSTIC", now) for v in (10, 20)]
    outcomes = inspector.inspect_frames(frames)
    assert [o.status for o in outcomes] == [FrameStatus.REJECTED, FrameStatus.REJECTED]
    assert all(isinstance(o.error, ConflictError) for o in outcomes)


def test_an_error_in_a_batch_stops_the_prefetch_thread() -> None:
    import threading
    import time

    class Broken(FakeDetector):
        def detect(self, images, confidence=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("model fell over")

    class Orders:
        def get_order(self, order_id: str):  # type: ignore[no-untyped-def]
            return None, RUSTIC

        def unit_histories(self, unit_ids):  # type: ignore[no-untyped-def]
            return {}

    def endless():  # type: ignore[no-untyped-def]
        i = 0
        while True:
            i += 1
            yield Frame(np.full((16, 16, 3), i % 255, np.uint8), "top", f"U{i}", "O", datetime.now(UTC))

    inspector = Inspector(Broken(), Orders(), batch_size=2)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="fell over"):
        inspector.process(endless())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.name == "qcline-prefetch" for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(t.name == "qcline-prefetch" for t in threading.enumerate())


class FakeJournal:
    """Holds each result's commit future for the test to resolve (commit) or fail (database down)."""

    def __init__(self, *, auto: bool = False) -> None:
        self.auto = auto
        self.pending: list[tuple[FrameResult, Future[Committed]]] = []

    def submit(self, result: FrameResult, provisional: UnitVerdict | None = None) -> Future[Committed]:
        future: Future[Committed] = Future()
        self.pending.append((result, future))
        if self.auto:
            future.set_result(Committed(True))
        return future

    def close_unit(self, unit_id: str) -> Future[UnitVerdict | None]:
        raise NotImplementedError


def test_with_a_journal_a_frame_is_done_only_once_committed() -> None:
    journal = FakeJournal()
    inspector = Inspector(FakeDetector(), FakeOrders(), journal=journal, batch_size=2)
    done: list[int] = []
    inspector.process([frame("U1", "O-RUSTIC", "top", 10, 1), frame("U2", "O-RUSTIC", "top", 10, 2)],
                      progress=done.append, prefetch=False)
    assert len(journal.pending) == 2 and done == []  # judged, not yet durable: not done
    journal.pending[0][1].set_result(Committed(True))
    assert done == [1]
    journal.pending[1][1].set_exception(StoreError("database down"))
    assert done == [1]  # a result that was not committed is never counted as done
    assert inspector.summary.not_recorded == 1 and "NOT recorded" in inspector.summary.errors[-1]


def test_a_failed_commit_makes_the_inspector_forget_the_unit_so_the_retry_is_judged() -> None:
    journal = FakeJournal()
    inspector = Inspector(FakeDetector(), FakeOrders(), journal=journal)
    again = frame("U1", "O-RUSTIC", "top", 10, 1)
    [first] = inspector.inspect_frames([again])
    assert first.status is FrameStatus.JUDGED and first.committed is journal.pending[0][1]
    journal.pending[0][1].set_exception(StoreError("database down"))
    [retry] = inspector.inspect_frames([again])
    assert retry.status is FrameStatus.JUDGED  # not "duplicate" of a frame the store never got
    journal.pending[1][1].set_result(Committed(True))
    [third] = inspector.inspect_frames([again])
    assert third.status is FrameStatus.DUPLICATE


def test_with_a_journal_unit_verdicts_come_from_the_commits() -> None:
    journal = FakeJournal()
    seen: list[UnitVerdict] = []
    inspector = Inspector(FakeDetector(), FakeOrders(), journal=journal, on_unit_verdict=seen.append)
    [outcome] = inspector.inspect_frames([frame("U1", "O-RUSTIC", "top", 10, 1)])
    assert outcome.unit_verdict is not None and seen == []  # this process's view; the store decides
    stored = UnitVerdict(unit_id="U1", order_id="O-RUSTIC", verdict=Verdict.PASS, frames=(), reasons=())
    journal.pending[0][1].set_result(Committed(True, stored))
    assert seen == [stored] and inspector.summary.unit_verdicts["U1"] is stored


def test_the_summary_stays_bounded() -> None:
    inspector = Inspector(FakeDetector(), FakeOrders(), max_recent=3)
    inspector.process([frame(f"U{n}", "O-RUSTIC", "top", 10, n) for n in range(10)]
                      + [frame(f"B{n}", "NOPE", "top", 10, 100 + n) for n in range(10)])
    summary = inspector.summary
    assert summary.units_judged == 10 and list(summary.unit_verdicts) == ["U7", "U8", "U9"]
    assert summary.rejected_frames == summary.error_count == 10 and len(summary.errors) == 3


def test_bombs_from_a_folder_are_recorded_per_frame_and_the_line_goes_on(tmp_path: Path) -> None:
    """The hostile files of the security report, read by the file source: each becomes a recorded per-frame
    error, and the good frame after them is judged."""
    from inspection.sources.files import ImageFileSource
    from tests import hostile
    from tests.builders import solid_image, write_image

    hostile.write(tmp_path / "a-fill.jpg", hostile.fill_byte_bomb())
    hostile.write(tmp_path / "b-big.jpg", hostile.real_jpeg(9000, 9000))
    hostile.write(tmp_path / "c-bomb.png", hostile.png_bomb())
    write_image(tmp_path / "d-good.png", solid_image(200, 64, 64))
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink])
    inspector.process(ImageFileSource([tmp_path], unit_id="U1", order_id="O-RUSTIC", camera_id="top"))
    errors = [r.verdict.error for r in sink.frames]
    assert all("over the limit" in (e or "") for e in errors[:3]), errors
    assert not errors[3] and inspector.summary.failed_frames == 3 and inspector.summary.frames == 1


def test_a_frame_decoded_reduced_is_judged_in_original_pixels() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink])
    reduced = Frame(np.full((16, 16, 3), 200, np.uint8), "top", "U1", "O-GLOSS", NOW, scale=4)
    inspector.process([reduced])
    [result] = sink.frames
    assert result.detections is not None
    assert result.detections.xyxy.tolist() == [[4, 4, 20, 20]]
    assert [f.box for f in result.verdict.findings] == [Box(4.0, 4.0, 20.0, 20.0)]


# -- the overlapped loop: batch k+1 is detected while batch k is judged ---------------------------------------

class GatedDetector(FakeDetector):
    """Records which thread ran each batch and signals ``started`` when batch ``signal_in`` begins; batch
    ``wait_in`` waits (at most 5 s) until ``gate`` is set."""

    def __init__(self, sha: str = "a" * 64, *, wait_in: int | None = None, signal_in: int | None = None) -> None:
        super().__init__(sha)
        import threading

        self.gate, self.started = threading.Event(), threading.Event()
        self.wait_in, self.signal_in = wait_in, signal_in
        self.threads: list[str] = []

    def detect(self, images: Sequence[np.ndarray], confidence: float | None = None) -> list[Detections]:
        import threading

        self.threads.append(threading.current_thread().name)
        if len(self.batches) == self.signal_in:
            self.started.set()
        if len(self.batches) == self.wait_in:
            self.gate.wait(timeout=5)
        return super().detect(images, confidence)


class WaitingSink(ListSink):
    """Judging the first frame waits (at most 5 s) for the detection of the next batch to have started."""

    def __init__(self, detector: GatedDetector) -> None:
        super().__init__()
        self.detector = detector
        self.next_batch_running: bool | None = None

    def submit(self, result: FrameResult) -> None:
        if not self.frames:
            self.next_batch_running = self.detector.started.wait(timeout=5)
        super().submit(result)


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_batch_is_detected_in_the_inference_thread_while_this_one_is_judged(overlap: bool) -> None:
    detector = GatedDetector(signal_in=1)
    sink = WaitingSink(detector)
    inspector = Inspector(detector, FakeOrders(), [sink], batch_size=2)
    if not overlap:
        detector.started.set()  # serially batch 1 starts only after batch 0 is judged: do not wait 5 s for it
    inspector.process([frame(f"U{i}", "O-RUSTIC", "top", 10, i) for i in range(5)], prefetch=False,
                      overlap=overlap)
    assert sink.next_batch_running is True
    assert detector.batches == [2, 2, 1]
    assert [r.verdict.unit_id for r in sink.frames] == [f"U{i}" for i in range(5)]
    expected = "qcline-infer" if overlap else "MainThread"
    assert all(name.startswith(expected) for name in detector.threads), detector.threads


def _line() -> list[Frame | FrameFailure]:
    """Two units of two views, refused and duplicate frames, and unreadable frames between batches."""
    same = frame("U1", "O-GLOSS", "top", 200, 1)
    return [same, frame("U1", "O-GLOSS", "side", 10, 2), frame("U2", "NOPE", "top", 10, 3),
            FrameFailure("top", "U3", "O-RUSTIC", NOW, "cam1", "truncated JPEG"), same,
            frame("U4", "O-RUSTIC", "top", 200, 5), frame("U5", "O-GLOSS", "top", 10, 6),
            FrameFailure("side", "U5", "O-GLOSS", NOW, "cam2", "no signal"), frame("U6", "O-RUSTIC", "top", 10, 7)]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_overlapped_and_serial_loops_give_the_same_results_in_the_same_order(batch_size: int) -> None:
    runs = []
    for overlap, depth in ((False, 1), (True, 1), (True, 2), (True, 3)):
        sink, journal = ListSink(), FakeJournal(auto=True)
        inspector = Inspector(FakeDetector(), FakeOrders(), [sink], batch_size=batch_size, journal=journal,
                              inference_depth=depth)
        done: list[int] = []
        inspector.process(_line(), progress=done.append, overlap=overlap)
        s = inspector.summary
        runs.append(([(r.verdict.unit_id, r.verdict.camera_id, r.verdict.verdict, r.verdict.error)
                      for r in sink.frames], [r.verdict.unit_id for r, _ in journal.pending],
                     [(u.unit_id, u.verdict) for u in sink.units], len(done),
                     (s.frames, s.failed_frames, s.duplicate_frames, s.rejected_frames, s.batches)))
    assert runs[0] == runs[1] == runs[2] == runs[3]
    assert sorted(runs[1][1]) == ["U1", "U1", "U3", "U4", "U5", "U5", "U6"]  # every result recorded once
    assert runs[1][3] == 9  # every item done: 7 committed, the refused and the duplicate at once


def test_with_overlap_a_frame_is_done_only_after_its_commit_and_results_reach_the_journal_in_order() -> None:
    journal = FakeJournal()
    inspector = Inspector(FakeDetector(), FakeOrders(), journal=journal, batch_size=2, overlap=True)
    done: list[int] = []
    inspector.process([frame(f"U{i}", "O-RUSTIC", "top", 10, i) for i in range(5)], progress=done.append)
    assert [r.verdict.unit_id for r, _ in journal.pending] == [f"U{i}" for i in range(5)]
    assert done == []  # every frame judged and handed over, none durable yet
    for n, (_, future) in enumerate(journal.pending):
        if n == 2:
            future.set_exception(StoreError("database down"))
        else:
            future.set_result(Committed(True))
    assert len(done) == 4 and inspector.summary.not_recorded == 1


@pytest.mark.parametrize("depth", [1, 2])
def test_an_error_in_one_batch_after_the_ones_before_are_recorded_leaves_its_frames_unjudged(depth: int) -> None:
    class BreaksOnce(FakeDetector):
        def detect(self, images, confidence=None):  # type: ignore[no-untyped-def]
            if len(self.batches) == 1:
                self.batches.append(len(images))
                raise RuntimeError("model fell over")
            return super().detect(images, confidence)

    import threading

    detector = BreaksOnce()
    sink, journal = ListSink(), FakeJournal(auto=True)
    inspector = Inspector(detector, FakeOrders(), [sink], batch_size=2, journal=journal, inference_depth=depth,
                          overlap=True)
    frames = [frame(f"U{i}", "O-RUSTIC", "top", 10, i) for i in range(6)]
    with pytest.raises(RuntimeError, match="fell over"):
        inspector.process(frames, prefetch=False)
    assert [r.verdict.unit_id for r in sink.frames] == ["U0", "U1"]  # batch 0 judged and recorded
    assert [r.verdict.unit_id for r, _ in journal.pending] == ["U0", "U1"]
    assert not any(t.name.startswith("qcline-infer") for t in threading.enumerate())
    # the frames of the failed batch, and of the one admitted behind it, were never judged: a retry is judged
    outcomes = inspector.inspect_frames(frames[2:])
    assert [o.status for o in outcomes] == [FrameStatus.JUDGED] * 4
    assert [o.status for o in inspector.inspect_frames(frames[:2])] == [FrameStatus.DUPLICATE] * 2


def test_a_failed_detection_in_inspect_frames_leaves_the_frames_unseen() -> None:
    """The service's path: a camera's retry after a 503 from a broken model must be judged, not called a
    duplicate of a frame the store never got."""
    class Broken(FakeDetector):
        def detect(self, images, confidence=None):  # type: ignore[no-untyped-def]
            raise RuntimeError("model fell over")

    inspector = Inspector(Broken(), FakeOrders(), overlap=True)
    again = frame("U1", "O-RUSTIC", "top", 10, 1)
    with pytest.raises(RuntimeError):
        inspector.inspect_frames([again])
    inspector.swap_detector(FakeDetector())
    [retry] = inspector.inspect_frames([again])
    assert retry.status is FrameStatus.JUDGED


def test_a_source_error_with_a_batch_in_flight_judges_that_batch_first() -> None:
    sink = ListSink()
    inspector = Inspector(FakeDetector(), FakeOrders(), [sink], batch_size=2, overlap=True)

    def broken():  # type: ignore[no-untyped-def]
        yield from (frame(f"U{i}", "O-RUSTIC", "top", 10, i) for i in range(3))
        raise SourceError("camera unplugged")

    with pytest.raises(SourceError):
        inspector.process(broken(), prefetch=False)
    assert [r.verdict.unit_id for r in sink.frames] == ["U0", "U1"]  # U2's batch was never full nor ended


def test_a_swap_while_a_batch_is_in_the_inference_thread_takes_the_next_batch() -> None:
    old, new = GatedDetector("a" * 64, wait_in=0), FakeDetector("b" * 64)
    sink = ListSink()
    inspector = Inspector(old, FakeOrders(), [sink], batch_size=2, overlap=True)

    def frames():  # type: ignore[no-untyped-def]
        for i in range(6):
            if i == 2:  # batch 0 is in the inference thread (held by its gate): swap, then let it finish
                inspector.swap_detector(new)
                old.gate.set()
            yield frame(f"U{i}", "O-RUSTIC", "top", 10, i)

    inspector.process(frames(), prefetch=False)
    assert [r.verdict.model_sha256[0] for r in sink.frames] == ["a", "a", "b", "b", "b", "b"]
    assert old.batches == [2] and new.batches == [2, 2]
