"""The dataset library: a content-addressed image store plus immutable snapshot manifests.

Layout under ``root`` (``<QC_DATA_DIR>/datasets``)::

    images/<sha[:2]>/<sha><ext>        every image once, read-only, named by its content
    snapshots/<id>/manifest.json       one folder per snapshot, written by rename (never half-written)

Importing copies images into the store, so a snapshot never depends on the folder it came from: editing
or deleting the original after import changes nothing. A snapshot folder appears only after its manifest
is complete, so a failed import registers nothing; images copied by a failed import are unreferenced
store entries (harmless: the next import of the same content reuses them).
"""

from __future__ import annotations

import builtins
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasets.formats import import_dataset
from datasets.formats.archive import DEFAULT_MAX_BYTES, import_archive, is_archive
from datasets.records import ImportResult, LabeledImage
from datasets.snapshot import MANIFEST_NAME, Snapshot, SnapshotEntry, build_snapshot, compose_snapshot
from inspection.blobs import ContentMismatchError, ContentStore, publish_folder, staging_folder, write_atomic
from inspection.errors import DatasetError, NotFoundError

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{1,64}$")


def store_file(store: ContentStore, source: Path, sha256: str) -> Path:
    """Copy ``source`` into the store and check the copy's hash, so the store holds exactly what was imported.

    The hash is taken on the copy, not trusted from the import: if the original changed in between, the
    import fails instead of recording labels next to different pixels.
    """
    try:
        return store.put_file(sha256, source, source.suffix.lower())
    except ContentMismatchError as exc:
        raise DatasetError(f"{source} changed during the import (sha256 {exc.actual[:12]} != {exc.expected[:12]}); "
                           "import again") from exc
    except OSError as exc:
        raise DatasetError(f"cannot copy {source} into the dataset library: {exc}") from exc


@dataclass(frozen=True)
class ImportOutcome:
    """What ``import_path`` did: the registered snapshot and the importer's report (skipped files and boxes)."""

    snapshot: Snapshot
    result: ImportResult


class DatasetLibrary:
    """Snapshots and their images under one folder; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.images = ContentStore(self.images_dir, read_only=True)  # immutable: snapshots cite them by hash
        self.snapshots_dir = self.root / "snapshots"

    # -- writing ----------------------------------------------------------------------------------------
    def _stored(self, result: ImportResult) -> ImportResult:
        images = tuple(
            LabeledImage(store_file(self.images, im.path, im.sha256).resolve(), im.width, im.height, im.boxes,
                         im.sha256)
            for im in result.images)
        return replace(result, images=images)

    def _register(self, snapshot: Snapshot) -> Snapshot:
        final = self.snapshots_dir / snapshot.id
        if (final / MANIFEST_NAME).is_file():
            log.info("snapshot %s already in the library", snapshot.id[:12])
            return self.get(snapshot.id)
        stamped = replace(snapshot, created_at=datetime.now(UTC).isoformat(timespec="microseconds"))
        try:
            with staging_folder(self.snapshots_dir, ".new-") as work:
                write_atomic(work / MANIFEST_NAME, _manifest_text(stamped))
                # False: someone registered the same content first (the folder is named by it)
                publish_folder(work, final, complete=lambda folder: (folder / MANIFEST_NAME).is_file())
        except OSError as exc:
            raise DatasetError(f"cannot write snapshot {snapshot.id[:12]} under {self.snapshots_dir}: {exc}") from exc
        log.info("registered snapshot %s (%d images)", stamped.id[:12], len(stamped.entries))
        return stamped

    def without_classes(self, parent_id: str, dropped: Sequence[str], *, source: str = "") -> Snapshot:
        """The parent with every box of ``dropped`` classes removed and the same train / val (/ test) split: what
        an engineer holds back to test whether the loop can teach a class the model never saw."""
        parent = self.get(parent_id)
        unknown = set(dropped) - set(parent.classes)
        if unknown:
            raise DatasetError(f"snapshot {parent.id[:12]} has no classes {sorted(unknown)}")
        entries = tuple(
            SnapshotEntry(LabeledImage(e.image.path, e.image.width, e.image.height,
                                       tuple(b for b in e.image.boxes if b.class_name not in dropped),
                                       e.image.sha256), e.split)
            for e in parent.entries)
        classes = tuple(c for c in parent.classes if c not in dropped)
        return self._register(Snapshot(classes, entries, source or f"{parent.id[:12]} without {', '.join(dropped)}",
                                       parent.id, split_rule=parent.split_rule))

    def add(self, result: ImportResult, *, source: str, val_fraction: float = 0.2, test_fraction: float = 0.0,
            parent: str | None = None, classes: Sequence[str] | None = None, resplit: bool = False) -> Snapshot:
        """Copy the images into the store and register a snapshot (composed on ``parent`` when given: then the
        parent's split rule holds); the source's own split is kept unless ``resplit``."""
        if parent is not None:
            return self.compose(parent, result, source, val_fraction=val_fraction)
        # Validate before copying anything: a refused snapshot should not fill the store.
        build_snapshot(result, val_fraction=val_fraction, test_fraction=test_fraction,
                       classes=tuple(classes) if classes else None, source=source, resplit=resplit)
        snapshot = build_snapshot(self._stored(result), val_fraction=val_fraction, test_fraction=test_fraction,
                                  classes=tuple(classes) if classes else None, source=source, resplit=resplit)
        return self._register(snapshot)

    def compose(self, parent_id: str, additions: ImportResult, source: str, *,
                val_fraction: float = 0.2) -> Snapshot:
        """A new snapshot = the parent's entries (same splits) + ``additions`` (see ``compose_snapshot``)."""
        parent = self.get(parent_id)
        compose_snapshot(parent, additions, val_fraction=val_fraction, source=source)
        return self._register(compose_snapshot(parent, self._stored(additions), val_fraction=val_fraction,
                                               source=source))

    def import_path(self, path: Path, fmt: str = "auto", *, classes: Sequence[str] | None = None,
                    val_fraction: float = 0.2, test_fraction: float = 0.0, parent: str | None = None,
                    source: str | None = None, max_archive_bytes: int = DEFAULT_MAX_BYTES,
                    resplit: bool = False) -> ImportOutcome:
        """Import a folder, COCO file or archive and register it; archives are extracted to a temp folder first."""
        path = Path(path)
        if parent is not None:
            self.get(parent)  # fail before the (possibly long) import
        label = source or str(path.resolve())
        # --classes is also the snapshot's class map, in the order given (for YOLO: the names of ids 0..n-1).
        snapshot_classes = tuple(classes) if classes else None
        if is_archive(path):
            with import_archive(path, fmt, classes=classes, image_store=self.images,
                                max_bytes=max_archive_bytes) as result:
                snapshot = self.add(result, source=label, val_fraction=val_fraction, test_fraction=test_fraction,
                                    parent=parent, classes=snapshot_classes, resplit=resplit)
        else:
            result = import_dataset(path, fmt, classes=classes, image_store=self.images)
            snapshot = self.add(result, source=label, val_fraction=val_fraction, test_fraction=test_fraction,
                                parent=parent, classes=snapshot_classes, resplit=resplit)
        return ImportOutcome(snapshot, result)

    # -- reading ----------------------------------------------------------------------------------------
    def _ids(self) -> builtins.list[str]:
        if not self.snapshots_dir.is_dir():
            return []
        return sorted(p.name for p in self.snapshots_dir.iterdir()
                      if not p.name.startswith(".") and (p / MANIFEST_NAME).is_file())

    def resolve(self, id_or_prefix: str) -> str:
        """The full id for an id or unique prefix; NotFoundError (naming it) when unknown or ambiguous."""
        key = id_or_prefix.strip().lower()
        if not _HEX.match(key):
            raise NotFoundError(f"snapshot {id_or_prefix!r} not found: ids are hexadecimal sha256 (or a prefix)")
        matches = [i for i in self._ids() if i.startswith(key)]
        if not matches:
            raise NotFoundError(f"snapshot {id_or_prefix!r} not found in {self.snapshots_dir}")
        if len(matches) > 1:
            raise NotFoundError(f"snapshot prefix {id_or_prefix!r} is ambiguous: "
                                f"{', '.join(m[:12] for m in matches)}")
        return matches[0]

    def get(self, id_or_prefix: str) -> Snapshot:
        snapshot_id = self.resolve(id_or_prefix)
        snapshot = Snapshot.load(self.snapshots_dir / snapshot_id)
        if snapshot.id != snapshot_id:
            raise DatasetError(f"snapshot folder {snapshot_id} holds content {snapshot.id}: the library was altered")
        return snapshot

    def list(self) -> builtins.list[dict[str, Any]]:
        """One summary per snapshot, oldest first."""
        rows = [summary(self.get(i)) for i in self._ids()]
        return sorted(rows, key=lambda r: (r["created_at"], r["id"]))


def summary(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "id": snapshot.id,
        "created_at": snapshot.created_at,
        "source": snapshot.source,
        "parent": snapshot.parent,
        "images": snapshot.split_counts(),
        "classes": list(snapshot.classes),
        "split_origin": snapshot.split_origin,
        "split_rule": snapshot.split_rule.to_json() if snapshot.split_rule else None,
    }


def _manifest_text(snapshot: Snapshot) -> str:
    return json.dumps(snapshot.to_json(), indent=1)
