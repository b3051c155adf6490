"""Immutable dataset snapshots.

A snapshot is a manifest of every image (by sha256) with its labels, a class map and a deterministic
train / val split, optionally with a third, ``test`` split. Its id is the sha256 of that manifest, so the
same data gives the same id wherever it lives on disk, and a model's metadata can name exactly the data that
made it.

Three splits, three jobs: ``train`` is what a model learns from, ``val`` is what picks its best epoch and
any hyper-parameter (so figures on it are optimistic), ``test`` is never used for any choice and is the
only split whose figures are a model's accuracy. A snapshot with a test split records the rule that drew it
(``SplitRule``: fractions and seed) and its id covers the rule; two-way snapshots record none and keep the
ids they always had.

A snapshot composed from another records its ``parent`` id, and the id covers it: "the same images
and labels, reached from another history" is a different snapshot. ``created_at`` is bookkeeping and
deliberately not part of the id (importing the same data twice gives the same snapshot).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

from datasets.records import ImportResult, LabeledBox, LabeledImage
from inspection.blobs import write_atomic
from inspection.errors import DatasetError

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class SplitRule:
    """How a content split was drawn: per primary-class stratum, images ordered by ``sha256(seed:sha)``;
    the first ``round(n * test_fraction)`` are test, the next ``round(n * val_fraction)`` val, the rest train.

    Test comes first in that order, so for one seed the test images of a ``(val f, test t <= f)`` snapshot
    are a subset of the val images of the two-way ``(val f)`` snapshot of the same data: a model trained on
    the older two-way split never trained on this test split (its epoch was chosen on it, though).
    """

    val_fraction: float
    test_fraction: float
    seed: str = "qcline"

    def __post_init__(self) -> None:
        if not (0.0 <= self.val_fraction < 1.0 and 0.0 <= self.test_fraction < 1.0
                and self.val_fraction + self.test_fraction < 1.0):
            raise DatasetError(f"split fractions must be >= 0 and leave some train images, got val "
                               f"{self.val_fraction}, test {self.test_fraction}")

    def to_json(self) -> dict[str, Any]:
        return {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "seed": self.seed}

    @classmethod
    def from_json(cls, raw: Any) -> SplitRule | None:
        if raw is None:
            return None
        return cls(float(raw["val_fraction"]), float(raw["test_fraction"]), str(raw.get("seed", "qcline")))


def _checked_split(value: Any) -> Split:
    if value not in SPLITS:
        raise DatasetError(f"unknown split {value!r} (one of {', '.join(SPLITS)})")
    return cast(Split, value)


@dataclass(frozen=True)
class SnapshotEntry:
    image: LabeledImage
    split: Split


@dataclass(frozen=True)
class Snapshot:
    classes: tuple[str, ...]
    entries: tuple[SnapshotEntry, ...]
    source: str = ""
    parent: str | None = None
    created_at: str = ""
    split_origin: str = ""
    """How train / val were chosen: ``"source"`` (the dataset's own split), ``"content"`` (by qcline's
    content hash), ``"source+content"`` (images outside the source's split lists split by content) or ``""``
    (snapshots from before this was recorded). Metadata, not part of the id: the splits themselves are."""
    split_rule: SplitRule | None = None
    """The fractions and seed of a snapshot with a test split (part of the id); ``None`` for two-way ones."""

    @property
    def id(self) -> str:
        """Content hash of the manifest (images, labels, classes, split); paths are not part of it."""
        canonical = json.dumps(self._content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def split(self, name: Split) -> tuple[SnapshotEntry, ...]:
        return tuple(e for e in self.entries if e.split == name)

    @property
    def has_test(self) -> bool:
        return any(e.split == "test" for e in self.entries)

    def split_counts(self) -> dict[Split, int]:
        """Images per split: ``train`` and ``val`` always, ``test`` when the snapshot has one."""
        return {name: len(self.split(name)) for name in SPLITS if name != "test" or self.has_test}

    def _content(self) -> dict[str, Any]:
        # ``parent`` only when set, so ids of snapshots without one are what they always were.
        parent = {"parent": self.parent} if self.parent else {}
        rule = {"split_rule": self.split_rule.to_json()} if self.split_rule else {}
        return {
            **parent,
            **rule,
            "classes": list(self.classes),
            "images": sorted(
                (
                    {
                        "sha256": e.image.sha256,
                        "split": e.split,
                        "size": [e.image.width, e.image.height],
                        "boxes": [[b.class_name, *b.box.rounded(2)]
                                  for b in e.image.boxes],
                    }
                    for e in self.entries
                ),
                key=lambda item: str(item["sha256"]),
            ),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "parent": self.parent,
            "created_at": self.created_at,
            "split_origin": self.split_origin,
            **({"split_rule": self.split_rule.to_json()} if self.split_rule else {}),
            "classes": list(self.classes),
            "entries": [
                {
                    "path": str(e.image.path),
                    "sha256": e.image.sha256,
                    "width": e.image.width,
                    "height": e.image.height,
                    "split": e.split,
                    "boxes": [b.to_json() for b in e.image.boxes],
                }
                for e in self.entries
            ],
        }

    def save(self, folder: Path) -> Path:
        """Write ``<folder>/<id>/manifest.json`` (idempotent: the same content gives the same file)."""
        target = Path(folder) / self.id
        target.mkdir(parents=True, exist_ok=True)
        path = target / MANIFEST_NAME
        write_atomic(path, json.dumps(self.to_json(), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Snapshot:
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
            entries = tuple(
                SnapshotEntry(
                    LabeledImage(
                        Path(item["path"]), int(item["width"]), int(item["height"]),
                        tuple(LabeledBox.of(str(b[0]), *map(float, b[1:5])) for b in item["boxes"]),
                        str(item["sha256"]),
                    ),
                    _checked_split(item["split"]),
                )
                for item in raw["entries"]
            )
            snapshot = cls(tuple(raw["classes"]), entries, raw.get("source", ""), raw.get("parent") or None,
                           str(raw.get("created_at") or ""), str(raw.get("split_origin") or ""),
                           SplitRule.from_json(raw.get("split_rule")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"snapshot manifest {path} cannot be read: {exc}") from exc
        if raw.get("id") and raw["id"] != snapshot.id:
            raise DatasetError(f"snapshot manifest {path} was altered: id {raw['id']} != content {snapshot.id}")
        return snapshot


def _primary_class(image: LabeledImage) -> str:
    counts = Counter(b.class_name for b in image.boxes)
    return counts.most_common(1)[0][0] if counts else ""


def build_snapshot(result: ImportResult, *, val_fraction: float = 0.2, test_fraction: float = 0.0,
                   seed: str = "qcline", classes: tuple[str, ...] | None = None, source: str = "",
                   resplit: bool = False) -> Snapshot:
    """Keep the source's own split (``result.splits``) unless ``resplit``; split the rest deterministically,
    stratified by each image's most frequent class.

    Within a stratum images are ordered by ``sha256(seed + image sha256)``; the first
    ``round(n * test_fraction)`` go to test, the next ``round(n * val_fraction)`` to val (``SplitRule``):
    the split depends only on content and seed, never on file names, order on disk or a random
    generator's state. A test split is drawn by content only: with a source split, pass ``resplit``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rule = SplitRule(val_fraction, test_fraction, seed) if test_fraction > 0 else None
    if not result.images:
        raise DatasetError("cannot build a snapshot from zero images")
    class_names = tuple(classes) if classes is not None else result.classes
    unknown = {b.class_name for im in result.images for b in im.boxes} - set(class_names)
    if unknown:
        raise DatasetError(f"labels use classes missing from the class map: {sorted(unknown)}")
    given = {} if resplit else {sha: split for sha, split in result.splits.items() if split in ("train", "val")}
    if given and rule is not None:
        raise DatasetError("the source has its own train / val split; a test split is drawn by content only: "
                           "resplit (--resplit) to draw train / val / test from the images")
    rest = [im for im in result.images if im.sha256 not in given]
    split_of: dict[str, Any] = {**assign_splits(rest, val_fraction=val_fraction, test_fraction=test_fraction,
                                                seed=seed), **given}
    origin = "content" if not given else ("source" if not rest else "source+content")
    entries = tuple(SnapshotEntry(im, split_of[im.sha256]) for im in result.images)
    return Snapshot(class_names, entries, source, split_origin=origin, split_rule=rule)


def assign_splits(images: Sequence[LabeledImage], *, val_fraction: float, test_fraction: float = 0.0,
                  seed: str = "qcline") -> dict[str, Split]:
    """sha256 -> split, stratified by primary class, ordered by ``sha256(seed:sha)`` (see ``SplitRule``)."""
    SplitRule(val_fraction, test_fraction, seed)  # validates the fractions
    strata: dict[str, list[LabeledImage]] = defaultdict(list)
    for image in images:
        strata[_primary_class(image)].append(image)
    split_of: dict[str, Split] = {}
    for members in strata.values():
        members.sort(key=lambda im: hashlib.sha256(f"{seed}:{im.sha256}".encode()).hexdigest())
        n_test = round(len(members) * test_fraction)
        n_val = round(len(members) * val_fraction)
        for index, image in enumerate(members):
            split_of[image.sha256] = "test" if index < n_test else "val" if index < n_test + n_val else "train"
    return split_of


def compose_snapshot(parent: Snapshot, additions: ImportResult, *, val_fraction: float = 0.2, seed: str = "qcline",
                     source: str = "") -> Snapshot:
    """Parent entries (splits unchanged) + new images, split by the same rule as ``build_snapshot``.

    An added image already in the parent (same sha256) replaces the parent's labels but keeps its split:
    that is how corrected labels arrive, and moving it would leak a val or test image into train. The class
    map is the parent's with new classes appended, so a class id never changes meaning between generations.
    A parent with a test split hands its ``SplitRule`` (fractions, seed) down: new images are drawn into
    train / val / test by it, so the test split grows with the data and stays unseen.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not additions.images:
        raise DatasetError(f"nothing to add to snapshot {parent.id[:12]}: the import found zero images")
    classes = parent.classes + tuple(c for c in additions.classes if c not in parent.classes)
    added = {im.sha256: im for im in additions.images}
    entries = [SnapshotEntry(added.pop(e.image.sha256, e.image), e.split) for e in parent.entries]
    new_images = [im for im in additions.images if im.sha256 in added]
    rule = parent.split_rule
    split_of = assign_splits(new_images, val_fraction=rule.val_fraction if rule else val_fraction,
                             test_fraction=rule.test_fraction if rule else 0.0, seed=rule.seed if rule else seed)
    entries += [SnapshotEntry(im, split_of[im.sha256]) for im in new_images]
    return Snapshot(classes, tuple(entries), source, parent.id, split_rule=rule)
