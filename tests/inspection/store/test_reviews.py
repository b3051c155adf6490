"""``ReviewService`` on SQLite and PostgreSQL: validation, double-click idempotency, dispositions, the queue.

``add_inspection`` is also used by the dataset and CLI tests of reviews: one way to make a reviewed frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from inspection.errors import NotFoundError
from inspection.reviews import Decision, Disposition, ReviewDecision, ReviewedBox, ReviewError
from inspection.store import ResultsStore
from inspection.store.reviews import ReviewRecord, ReviewService
from inspection.types import DefectFinding, Verdict
from tests.inspection.store.factories import book, finding, order, result, standard_book

FRAME_W, FRAME_H = 64, 48


def evidence_png(seq: int) -> bytes:
    """A 64x48 PNG whose pixels differ by ``seq`` (so each frame is its own evidence file)."""
    img = np.full((FRAME_H, FRAME_W, 3), seq % 200, np.uint8)
    img[10:20, 10:30] = 255 - seq % 200
    img[0, 0] = (seq // 200) % 256
    return cv2.imencode(".png", img)[1].tobytes()


def add_inspection(store: ResultsStore, unit: str = "U1", order_id: str = "ORD-1", camera: str = "top", *,
                   seq: int = 1, verdict: Verdict = Verdict.FAIL,
                   findings: Sequence[DefectFinding] | None = None, evidence: bool = True) -> int:
    """Record one frame result of ``unit`` (with a 64x48 evidence PNG unless ``evidence=False``); its id."""
    found = (finding(),) if findings is None else tuple(findings)
    res = result(unit, order_id, camera, seq=seq, verdict=verdict, findings=found)
    paths = {}
    if evidence:
        _sha, path = store.evidence.put_file(evidence_png(seq), ".png")
        paths = {0: str(path)}
    assert store.record_frame_results([res], paths) == 1
    frames = store.unit_record(unit).to_json()["frames"]
    return int(next(f["id"] for f in frames if f["frame_sha256"] == res.verdict.frame_sha256))


@pytest.fixture
def service(store: ResultsStore) -> ReviewService:
    store.import_order_book(standard_book())
    return ReviewService(store)


def test_record_returns_the_review_and_keeps_the_frame_size(service: ReviewService) -> None:
    inspection = add_inspection(service.store)
    review = service.record(ReviewDecision(inspection, Decision.CONFIRM, actor="ana", note="deep scratch"))
    assert review.id > 0 and review.duplicate is False
    assert (review.inspection_id, review.unit_id, review.decision) == (inspection, "U1", "confirm")
    assert review.frame_size == (FRAME_W, FRAME_H)
    assert review.actor == "ana" and review.note == "deep scratch" and review.boxes == ()
    assert review.to_json()["frame_size"] == [FRAME_W, FRAME_H] and review.to_json()["boxes"] == []
    assert service.history(inspection) == [review]


def test_double_click_is_recorded_once(service: ReviewService) -> None:
    inspection = add_inspection(service.store)
    box = (ReviewedBox.of("dent", 1, 2, 30, 40),)
    first = service.record(ReviewDecision(inspection, Decision.CORRECT, box, actor="ana"))
    again = service.record(ReviewDecision(inspection, Decision.CORRECT, box, actor="ana", note="other note"))
    assert again.duplicate is True and again.id == first.id
    assert len(service.history(inspection)) == 1


def test_every_changed_decision_is_kept(service: ReviewService) -> None:
    inspection = add_inspection(service.store)
    ids = [service.record(ReviewDecision(inspection, Decision.CONFIRM, actor="ana")).id,
           service.record(ReviewDecision(inspection, Decision.CONFIRM, actor="bob")).id,  # other person
           service.record(ReviewDecision(inspection, Decision.FALSE_ALARM, actor="bob")).id,
           service.record(ReviewDecision(inspection, Decision.CORRECT, (ReviewedBox.of("dent", 1, 1, 5, 5),),
                                         actor="bob")).id,
           service.record(ReviewDecision(inspection, Decision.CORRECT, (ReviewedBox.of("dent", 1, 1, 6, 5),),
                                         actor="bob")).id,  # other boxes
           service.record(ReviewDecision(inspection, Decision.CONFIRM, actor="ana")).id]  # latest differs
    assert len(set(ids)) == 6
    assert [r.id for r in service.history(inspection)] == ids
    latest = service.latest_reviews()
    assert [(r.review.id, r.review.decision, r.review.actor) for r in latest] == [(ids[-1], "confirm", "ana")]


def test_concurrent_identical_clicks_insert_one_row(service: ReviewService) -> None:
    inspection = add_inspection(service.store)
    barrier = threading.Barrier(4)
    answers: list[ReviewRecord] = []
    errors: list[BaseException] = []

    def click() -> None:
        try:
            barrier.wait()
            answers.append(service.record(ReviewDecision(inspection, Decision.FALSE_ALARM, actor="ana")))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len({a.id for a in answers}) == 1
    assert sorted(a.duplicate for a in answers) == [False, True, True, True]
    assert len(service.history(inspection)) == 1


def test_unknown_inspection_is_not_found_with_its_id(service: ReviewService) -> None:
    with pytest.raises(NotFoundError, match="inspection 999"):
        service.record(ReviewDecision(999, Decision.CONFIRM, actor="ana"))
    with pytest.raises(NotFoundError, match="inspection 999"):
        service.history(999)


@pytest.mark.parametrize(("make", "message"), [
    (lambda i: ReviewDecision(i, Decision.CORRECT, (ReviewedBox.of("dent", 10, 10, FRAME_W + 1, 20),)), "outside"),
    (lambda i: ReviewDecision(i, Decision.CORRECT, (ReviewedBox.of("dent", 10, 10, 20, FRAME_H + 0.5),)), "outside"),
    (lambda i: ReviewDecision(i, Decision.CORRECT, (ReviewedBox.of("dent", -1, 10, 20, 20),)), "non-negative"),
    (lambda i: ReviewDecision(i, Decision.CORRECT, (ReviewedBox.of("dent", 20, 10, 20, 20),)), "x2 > x1"),
    (lambda i: ReviewDecision(i, Decision.CORRECT, (ReviewedBox.of("dent", 1, 1, float("nan"), 20),)), "finite"),
    (lambda i: ReviewDecision(i, Decision.CORRECT, (ReviewedBox.of("", 1, 1, 5, 5),)), "class name"),
    (lambda i: ReviewDecision(i, Decision.CORRECT, ()), "at least one box"),
    (lambda i: ReviewDecision(i, Decision.CONFIRM, (ReviewedBox.of("dent", 1, 1, 5, 5),)), "takes no boxes"),
    (lambda i: ReviewDecision(i, Decision.CONFIRM, actor=" "), "actor"),
    (lambda i: ReviewedBox.parse("dent,1,2,3"), "class,x1,y1,x2,y2"),
    (lambda i: ReviewedBox.parse("dent,1,2,x,4"), "not a number"),
])
def test_bad_boxes_and_decisions_are_refused(service: ReviewService, make: Callable[[int], Any],
                                          message: str) -> None:
    inspection = add_inspection(service.store)
    with pytest.raises(ReviewError, match=message):
        service.record(make(inspection))
    assert service.history(inspection) == []


def test_a_box_on_the_frame_border_is_inside(service: ReviewService) -> None:
    inspection = add_inspection(service.store)
    review = service.record(ReviewDecision(inspection, Decision.CORRECT,
                                           (ReviewedBox.of("dent", 0, 0, FRAME_W, FRAME_H),), actor="ana"))
    assert review.to_json()["boxes"] == [["dent", 0.0, 0.0, float(FRAME_W), float(FRAME_H)]]


def test_a_frame_without_readable_evidence_cannot_be_labeled(service: ReviewService, tmp_path: Path) -> None:
    gone = add_inspection(service.store, seq=1)
    path = Path(service.store.unit_record("U1").frames[0].evidence_path)
    path.unlink()
    with pytest.raises(ReviewError, match="gone"):
        service.record(ReviewDecision(gone, Decision.FALSE_ALARM, actor="ana"))
    never = add_inspection(service.store, camera="side", seq=2, evidence=False)
    with pytest.raises(ReviewError, match="gone"):
        service.record(ReviewDecision(never, Decision.CONFIRM, actor="ana"))
    broken = add_inspection(service.store, "U2", "ORD-2", seq=3)
    broken_path = Path(service.store.unit_record("U2").frames[0].evidence_path)
    broken_path.write_bytes(b"not an image")
    with pytest.raises(ReviewError, match="does not decode"):
        service.record(ReviewDecision(broken, Decision.CONFIRM, actor="ana"))
    assert service.latest_reviews() == []


def test_latest_reviews_carry_what_a_dataset_needs(service: ReviewService) -> None:
    first = add_inspection(service.store, seq=1, findings=[finding("scratch"), finding("dent", Verdict.REVIEW, 0.4)])
    second = add_inspection(service.store, camera="side", seq=2)
    r1 = service.record(ReviewDecision(first, Decision.CONFIRM, actor="ana"))
    r2 = service.record(ReviewDecision(second, Decision.FALSE_ALARM, actor="ana"))
    rows = service.latest_reviews()
    assert [r.review.id for r in rows] == [r1.id, r2.id]
    row = rows[0].to_json()
    assert (row["unit_id"], row["order_id"], row["camera_id"], row["verdict"]) == ("U1", "ORD-1", "top", "FAIL")
    assert row["model_sha256"] == "m" * 64
    assert row["evidence_exists"] and Path(row["evidence_path"]).is_file()
    assert [(f["class"], f["outcome"]) for f in row["findings"]] == [("scratch", "FAIL"), ("dent", "REVIEW")]
    assert service.latest_reviews(since_id=r1.id) == rows[1:]
    r3 = service.record(ReviewDecision(first, Decision.FALSE_ALARM, actor="bob"))  # a changed mind moves it on
    assert [r.review.id for r in service.latest_reviews(since_id=r2.id)] == [r3.id]
    with pytest.raises(ReviewError):
        service.latest_reviews(since_id=-1)


def test_disposition_is_appended_and_validated(service: ReviewService) -> None:
    add_inspection(service.store)
    service.store.commit_group([], close_units=["U1"])
    first = service.set_disposition("U1", "rework", "ana", "sand it")
    second = service.set_disposition("U1", Disposition.RELEASE, "bob")
    assert (first.disposition, first.actor, first.note, first.verdict) == ("rework", "ana", "sand it", "FAIL")
    assert [d.disposition for d in service.dispositions("U1")] == ["rework", "release"]
    assert second.id > first.id
    with pytest.raises(ReviewError, match="release, rework, scrap"):
        service.set_disposition("U1", "ship-it", "ana")
    with pytest.raises(ReviewError, match="actor"):
        service.set_disposition("U1", "scrap", "  ")
    with pytest.raises(NotFoundError, match="U404"):
        service.set_disposition("U404", "scrap", "ana")


def test_queue_ranks_fail_first_then_due_date_and_drops_dispositioned_units(store: ResultsStore) -> None:
    store.import_order_book(book(order("ORD-LATE", "gloss", due_date=date(2026, 1, 10)),
                                 order("ORD-SOON", "gloss", due_date=date(2026, 1, 5)),
                                 order("ORD-NONE", "gloss")))
    service = ReviewService(store)
    units = {"U-FAIL-LATE": ("ORD-LATE", Verdict.FAIL), "U-REVIEW-SOON": ("ORD-SOON", Verdict.REVIEW),
             "U-FAIL-SOON": ("ORD-SOON", Verdict.FAIL), "U-FAIL-NONE": ("ORD-NONE", Verdict.FAIL),
             "U-REVIEW-LATE": ("ORD-LATE", Verdict.REVIEW), "U-PASS": ("ORD-SOON", Verdict.PASS),
             "U-DONE": ("ORD-SOON", Verdict.FAIL), "U-SOON-2": ("ORD-SOON", Verdict.FAIL),
             "U-WAITING": ("ORD-SOON", Verdict.FAIL)}
    for seq, (unit, (order_id, verdict)) in enumerate(units.items(), start=1):
        add_inspection(store, unit, order_id, seq=seq, verdict=verdict)
    add_inspection(store, "U-PASS", "ORD-SOON", "side", seq=20, verdict=Verdict.PASS, findings=())  # complete
    store.commit_group([], close_units=[u for u in units if u != "U-WAITING"])  # U-WAITING: no verdict yet
    service.set_disposition("U-DONE", "scrap", "ana")
    queue = service.queue()
    assert [q.unit_id for q in queue] == ["U-FAIL-SOON", "U-SOON-2", "U-FAIL-LATE", "U-FAIL-NONE",
                                             "U-REVIEW-SOON", "U-REVIEW-LATE"]
    top = queue[0]
    assert (top.order_id, top.due_date, top.verdict, top.flagged_frames, top.reviewed_frames) == (
        "ORD-SOON", "2026-01-05", "FAIL", 1, 0)
    assert [q.unit_id for q in service.queue(limit=2)] == ["U-FAIL-SOON", "U-SOON-2"]
    service.set_disposition("U-FAIL-SOON", "release", "ana")
    assert service.queue()[0].unit_id == "U-SOON-2"
    with pytest.raises(ReviewError, match="limit"):
        service.queue(limit=0)


def test_decision_from_json_names_the_bad_field() -> None:
    ok = ReviewDecision.from_json({"inspection_id": "7", "decision": "false-alarm", "actor": "ana"})
    assert (ok.inspection_id, ok.decision, ok.actor) == (7, Decision.FALSE_ALARM, "ana")
    fixed = ReviewDecision.from_json({"inspection_id": 7, "decision": "correct", "boxes": [["dent", 1, 2, 3, 4]]},
                                     default_actor="cli-user")
    assert fixed.boxes == (ReviewedBox.of("dent", 1, 2, 3, 4),) and fixed.actor == "cli-user"
    assert ReviewDecision.from_json(fixed.to_json()) == fixed
    for bad, message in [({"inspection_id": True, "decision": "confirm"}, "inspection_id"),
                         ({"inspection_id": "x", "decision": "confirm"}, "inspection_id"),
                         ({"inspection_id": 1}, "decision"),
                         ({"inspection_id": 1, "decision": "maybe"}, "must be one of"),
                         ({"inspection_id": 1, "decision": "correct", "boxes": [["dent", 1, 2, "3", 4]]}, "box"),
                         ({"inspection_id": 1, "decision": "confirm", "colour": "red"}, "unknown field"),
                         ([1, 2], "JSON object")]:
        with pytest.raises(ReviewError, match=message):
            ReviewDecision.from_json(bad)  # type: ignore[arg-type]
