"""Operator reviews become labeled samples and snapshots (``datasets.from_reviews``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from datasets.from_reviews import build_from_reviews, build_from_reviews_report, labeled_samples
from datasets.library import DatasetLibrary
from datasets.records import ImportResult, LabeledBox, LabeledImage
from inspection.boxes import Box
from inspection.errors import DatasetError
from inspection.hashing import sha256_file
from inspection.reviews import Decision, ReviewDecision, ReviewedBox
from inspection.store import ResultsStore
from inspection.store.reviews import ReviewService
from inspection.types import DefectFinding, Verdict
from tests.inspection.store.factories import finding, standard_book
from tests.inspection.store.test_reviews import FRAME_H, FRAME_W, add_inspection


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    results = ResultsStore.open(f"sqlite:///{tmp_path / 'qcline.db'}", tmp_path / "frames")
    results.import_order_book(standard_book())
    try:
        yield results
    finally:
        results.close()


@pytest.fixture
def library(tmp_path: Path) -> DatasetLibrary:
    return DatasetLibrary(tmp_path / "datasets")


def review(store: ResultsStore, decision: Decision, *, seq: int, boxes: tuple[ReviewedBox, ...] = (),
           findings: list[DefectFinding] | None = None) -> int:
    inspection = add_inspection(store, "U1", camera=f"cam{seq}", seq=seq, findings=findings)
    return ReviewService(store).record(ReviewDecision(inspection, decision, boxes, actor="ana")).id


def by_review(store: ResultsStore, result: ImportResult) -> dict[int, LabeledImage]:
    rows = {Path(str(r.evidence_path)).resolve(): r.review.id for r in ReviewService(store).latest_reviews()}
    return {rows[im.path.resolve()]: im for im in result.images}


def test_each_decision_gives_its_labels(store: ResultsStore) -> None:
    confirmed = review(store, Decision.CONFIRM, seq=1,
                       findings=[finding("scratch"),
                                 DefectFinding("dent", 0.4, Box(5, 6, 70, 50), Verdict.REVIEW, "r")])
    negative = review(store, Decision.FALSE_ALARM, seq=2)
    corrected = review(store, Decision.CORRECT, seq=3,
                       boxes=(ReviewedBox.of("chip", 3, 4, 20, 30), ReviewedBox.of("scratch", 30, 5, 60, 40)))
    result = labeled_samples(ReviewService(store).latest_reviews(), model_classes=("scratch", "dent"))
    assert result.skipped == ()
    images = by_review(store, result)
    assert images[confirmed].boxes == (LabeledBox.of("scratch", 1.0, 2.0, 30.5, 40.25),
                                       LabeledBox.of("dent", 5.0, 6.0, float(FRAME_W), float(FRAME_H)))  # clipped
    assert images[negative].boxes == ()
    assert images[corrected].boxes == (LabeledBox.of("chip", 3, 4, 20, 30), LabeledBox.of("scratch", 30, 5, 60, 40))
    for image in result.images:
        assert (image.width, image.height) == (FRAME_W, FRAME_H)
        assert image.sha256 == sha256_file(image.path)
    assert result.classes == ("chip", "dent", "scratch")


def test_missing_evidence_is_skipped_with_a_reason(store: ResultsStore) -> None:
    kept = review(store, Decision.FALSE_ALARM, seq=1)
    lost = review(store, Decision.CONFIRM, seq=2)
    rows = ReviewService(store).latest_reviews()
    lost_path = Path(str(next(r.evidence_path for r in rows if r.review.id == lost)))
    lost_path.unlink()
    result = labeled_samples(ReviewService(store).latest_reviews(), model_classes=())
    assert list(by_review(store, result)) == [kept]
    assert len(result.skipped) == 1
    assert result.skipped[0].path == str(lost_path)
    assert f"review {lost}" in result.skipped[0].reason and "gone" in result.skipped[0].reason
    unreadable = labeled_samples([dataclasses.replace(rows[0], evidence_path=None)], model_classes=())
    assert unreadable.images == () and "no evidence" in unreadable.skipped[0].reason


def test_build_without_parent_records_the_review_ids(store: ResultsStore, library: DatasetLibrary) -> None:
    first = review(store, Decision.CONFIRM, seq=1)
    last = review(store, Decision.FALSE_ALARM, seq=2)
    snapshot = build_from_reviews(store, library)
    assert snapshot.source == f"reviews:{first}-{last}"
    assert len(snapshot.entries) == 2 and snapshot.classes == ("scratch",) and snapshot.parent is None
    assert library.get(snapshot.id).id == snapshot.id
    with pytest.raises(DatasetError, match="no reviews after review id"):
        build_from_reviews(store, library, since_id=last)


def test_compose_on_a_parent_adds_a_new_class(store: ResultsStore, library: DatasetLibrary) -> None:
    review(store, Decision.CONFIRM, seq=1)
    parent = build_from_reviews(store, library)
    assert parent.classes == ("scratch",)
    last_used = int(parent.source.rsplit("-", 1)[1])
    corrected = review(store, Decision.CORRECT, seq=2, boxes=(ReviewedBox.of("knot", 2, 2, 12, 12),))
    built = build_from_reviews_report(store, library, parent=parent.id[:12], since_id=last_used)
    child = built.snapshot
    assert built.review_ids == (corrected,) and built.reviews_read == 1
    assert child.parent == parent.id and child.source == f"reviews:{corrected}-{corrected}"
    assert child.classes == ("scratch", "knot")  # the parent's ids keep their meaning; the new class is appended
    assert len(child.entries) == 2
    assert {b.class_name for e in child.entries for b in e.image.boxes} == {"scratch", "knot"}


def test_a_changed_mind_replaces_the_label_in_the_child(store: ResultsStore, library: DatasetLibrary) -> None:
    first = add_inspection(store, seq=1)
    service = ReviewService(store)
    service.record(ReviewDecision(first, Decision.CONFIRM, actor="ana"))
    parent = build_from_reviews(store, library)
    changed = service.record(ReviewDecision(first, Decision.FALSE_ALARM, actor="lead"))
    child = build_from_reviews(store, library, parent=parent.id, since_id=changed.id - 1)
    assert len(child.entries) == 1 and child.entries[0].image.boxes == ()
    assert child.entries[0].split == parent.entries[0].split


def test_nothing_usable_is_an_error_naming_why(store: ResultsStore, library: DatasetLibrary) -> None:
    review(store, Decision.CONFIRM, seq=1)
    for row in ReviewService(store).latest_reviews():
        Path(str(row.evidence_path)).unlink()
    with pytest.raises(DatasetError, match="gone"):
        build_from_reviews(store, library)
    assert library.list() == []
