"""Operator reviews -> labeled training samples -> a dataset snapshot.

The line's hardest frames are exactly the ones a person reviewed, so their decisions are the most valuable
labels there are:

* ``confirm``: the model's findings were right; they become the boxes (counted and uncertain findings alike:
  the operator looked at both and said yes),
* ``false_alarm``: there is no defect; the frame becomes a negative example (no boxes),
* ``correct``: the operator's boxes replace the model's, and may name a class the model does not know yet.

The image is the inspection's evidence frame, from whichever evidence store is configured: a local file is
read in place, an object in the shared object store (``s3://...``) is downloaded (size-capped, checked
against its sha256) into a staging folder for the length of the build. Evidence can be deleted (PASS
clean-up, retention), so a missing or unreadable frame is reported as an ``ImportIssue`` and the rest of
the build goes on; an object store that cannot be reached stops the build (``StoreError``): a dataset
quietly missing the samples of a network blip is worse than a build retried a minute later.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2

from datasets.library import DatasetLibrary
from datasets.records import ImportIssue, ImportResult, LabeledBox, LabeledImage
from datasets.snapshot import Snapshot
from inspection.boxes import Box
from inspection.errors import DatasetError, InvalidFrameError
from inspection.hashing import sha256_file
from inspection.reviews import Decision
from inspection.store.evidence import SUFFIXES, EvidenceStore, sha_of_path
from inspection.store.repository import ResultsStore
from inspection.store.reviews import LatestReview, ReviewService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReviewBuild:
    """What ``build_from_reviews_report`` did: the snapshot, the samples (with skips) and the review ids used."""

    snapshot: Snapshot
    result: ImportResult
    review_ids: tuple[int, ...]
    reviews_read: int


def _boxes(review: LatestReview, width: int, height: int) -> tuple[LabeledBox, ...]:
    decision = Decision.parse(review.review.decision)
    if decision is Decision.FALSE_ALARM:
        return ()
    raw: list[tuple[str | float, ...]]
    if decision is Decision.CONFIRM:
        raw = [(f.class_name, *f.box) for f in review.findings]
    else:
        raw = [tuple(b) for b in review.review.boxes]
    boxes = []
    for item in raw:
        try:  # clipped to the frame: detectors may report a box a pixel past the border
            boxes.append(LabeledBox(str(item[0]), Box(*(float(v) for v in item[1:5])).clipped(width, height)))
        except ValueError as exc:
            raise DatasetError(f"box {list(item)} does not fit the {width}x{height} frame: {exc}") from exc
    return tuple(boxes)


def _staged(ref: str, sha: str | None, evidence: EvidenceStore | None, staging: Path | None) -> Path | str:
    """A local file holding the object ``ref`` names, or the reason there is none."""
    if evidence is None or staging is None or not sha:
        return "evidence frame is in an object store that this build was not given"
    try:
        reader = evidence.open_ref(ref, sha)
        if reader is None:
            return "evidence frame is gone"
        with reader:
            data = reader.read_all()
            suffix = SUFFIXES.get(reader.info.media_type, ".img")
    except InvalidFrameError as exc:
        return str(exc)
    path = staging / f"{sha}{suffix}"
    path.write_bytes(data)
    return path


def _samples(reviews: Sequence[LatestReview], model_classes: Sequence[str], *,
             evidence: EvidenceStore | None = None,
             staging: Path | None = None) -> tuple[ImportResult, tuple[int, ...]]:
    by_sha: dict[str, tuple[int, LabeledImage]] = {}
    skipped: list[ImportIssue] = []
    for review in sorted(reviews, key=lambda r: r.review.id):
        review_id, inspection_id = review.review.id, review.review.inspection_id
        where = f"review {review_id} (inspection {inspection_id})"
        raw_path = review.evidence_path
        if not raw_path:
            skipped.append(ImportIssue(f"inspection {inspection_id}", f"{where}: no evidence frame was recorded"))
            continue
        if "://" in str(raw_path):  # an object in the shared evidence store
            sha = review.evidence_sha256 or sha_of_path(str(raw_path))
            staged = _staged(str(raw_path), sha, evidence, staging)
            if isinstance(staged, str):
                skipped.append(ImportIssue(str(raw_path), f"{where}: {staged}"))
                continue
            path = staged
        else:
            path = Path(str(raw_path))
        if not path.is_file():
            skipped.append(ImportIssue(str(path), f"{where}: evidence frame is gone"))
            continue
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            skipped.append(ImportIssue(str(path), f"{where}: evidence frame does not decode as an image"))
            continue
        height, width = int(image.shape[0]), int(image.shape[1])
        try:
            boxes = _boxes(review, width, height)
            sha = sha256_file(path)
        except (DatasetError, OSError, KeyError, TypeError, ValueError) as exc:
            skipped.append(ImportIssue(str(path), f"{where}: {exc}"))
            continue
        earlier = by_sha.get(sha)
        if earlier is not None:  # the same pixels reviewed twice (shared evidence): the later label wins
            skipped.append(ImportIssue(str(path), f"review {earlier[0]}: same frame as review {review_id}, "
                                                  "whose label is used"))
        by_sha[sha] = (review_id, LabeledImage(path, width, height, boxes, sha))
    result = ImportResult(tuple(im for _, im in by_sha.values()), tuple(skipped))
    new = sorted(set(result.classes) - set(model_classes))
    if model_classes and new:
        log.info("reviews name classes the model does not know yet: %s", ", ".join(new))
    return result, tuple(sorted(rid for rid, _ in by_sha.values()))


def labeled_samples(reviews: Sequence[LatestReview], *, model_classes: Sequence[str] = (),
                    evidence: EvidenceStore | None = None, staging: Path | None = None) -> ImportResult:
    """Labeled images from ``ReviewService.latest_reviews()`` rows (see the module docstring for the rules).

    ``model_classes`` is the class map the samples will extend; classes outside it are allowed (they are
    appended by ``compose``) and logged. Missing or unreadable evidence becomes an ``ImportIssue``. Frames
    in an object store need its ``evidence`` store and a ``staging`` folder to download them into (the
    samples' paths point there, so keep it until the samples are copied into a library).
    """
    return _samples(reviews, model_classes, evidence=evidence, staging=staging)[0]


def build_from_reviews_report(store: ResultsStore, library: DatasetLibrary, *, parent: str | None = None,
                              since_id: int = 0, source: str = "reviews", val_fraction: float = 0.2,
                              model_classes: Sequence[str] = ()) -> ReviewBuild:
    """Build a snapshot from the latest review of each inspection reviewed after ``since_id``.

    With ``parent``, the samples are composed onto that snapshot (its images and splits kept, a re-reviewed
    frame's labels replaced, new classes appended to its class map); without, they become a new snapshot
    whose class map starts with ``model_classes``. The snapshot's source records the review ids used, as
    ``"<source>:<first>-<last>"``, so the next build can start after ``<last>``.
    """
    parent_snapshot = library.get(parent) if parent is not None else None  # fail before any work
    reviews = ReviewService(store).latest_reviews(since_id)
    if not reviews:
        raise DatasetError(f"no reviews after review id {since_id}: nothing to build")
    classes = tuple(parent_snapshot.classes) if parent_snapshot is not None else tuple(model_classes)
    with tempfile.TemporaryDirectory(prefix="qcline-review-frames-") as staging:
        result, used = _samples(reviews, classes, evidence=store.evidence, staging=Path(staging))
        if not result.images:
            reasons = "; ".join(issue.reason for issue in result.skipped[:5])
            raise DatasetError(f"none of the {len(reviews)} reviews gave a usable sample: {reasons}")
        label = f"{source}:{used[0]}-{used[-1]}"
        if parent_snapshot is not None:  # the library copies each image in: staging can go afterwards
            snapshot = library.compose(parent_snapshot.id, result, label, val_fraction=val_fraction)
        else:
            class_map = classes + tuple(c for c in result.classes if c not in classes)
            snapshot = library.add(result, source=label, val_fraction=val_fraction, classes=class_map or None)
    log.info("snapshot %s from %d reviews (%d skipped)", snapshot.id[:12], len(used), len(result.skipped))
    return ReviewBuild(snapshot, result, used, len(reviews))


def build_from_reviews(store: ResultsStore, library: DatasetLibrary, *, parent: str | None = None,
                       since_id: int = 0, source: str = "reviews") -> Snapshot:
    """``build_from_reviews_report(...).snapshot``: the snapshot built from reviews after ``since_id``."""
    return build_from_reviews_report(store, library, parent=parent, since_id=since_id, source=source).snapshot


__all__ = ["ReviewBuild", "build_from_reviews", "build_from_reviews_report", "labeled_samples"]
