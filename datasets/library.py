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
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from datasets.formats import import_dataset
from datasets.formats.archive import DEFAULT_MAX_BYTES, import_archive, is_archive
from datasets.records import ImportResult, LabeledImage
from datasets.snapshot import MANIFEST_NAME, Snapshot, SnapshotEntry, build_snapshot, compose_snapshot, write_atomic
from inspection.errors import DatasetError, NotFoundError
from inspection.hashing import sha256_file

log = logging.getLogger(__name__)

_HEX = re.compile(r"^[0-9a-f]{1,64}$")


def content_path(store: Path, sha256: str, suffix: str) -> Path:
    return Path(store) / sha256[:2] / f"{sha256}{suffix.lower()}"


def _publish(tmp: Path, target: Path) -> Path:
    """Move a finished temp file into place read-only; an existing target already has the same content."""
    os.chmod(tmp, 0o444)
    try:
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
        if not target.exists():
            raise
    return target


def store_bytes(store: Path, data: bytes, sha256: str, suffix: str) -> Path:
    """Write ``data`` into the content-addressed store (no-op when present); returns its path."""
    target = content_path(store, sha256, suffix)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".in-", dir=target.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return _publish(Path(tmp), target)


def store_file(store: Path, source: Path, sha256: str) -> Path:
    """Copy ``source`` into the store and check the copy's hash, so the store holds exactly what was imported.

    The hash is taken on the copy, not trusted from the import: if the original changed in between, the
    import fails instead of recording labels next to different pixels.
    """
    target = content_path(store, sha256, source.suffix)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".in-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(source, tmp)
        actual = sha256_file(tmp)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"cannot copy {source} into the dataset library: {exc}") from exc
    if actual != sha256:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"{source} changed during the import (sha256 {actual[:12]} != {sha256[:12]}); import again")
    return _publish(tmp, target)


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
        self.snapshots_dir = self.root / "snapshots"

    # -- writing ----------------------------------------------------------------------------------------
    def _stored(self, result: ImportResult) -> ImportResult:
        images = tuple(
            LabeledImage(store_file(self.images_dir, im.path, im.sha256).resolve(), im.width, im.height, im.boxes,
                         im.sha256)
            for im in result.images)
        return replace(result, images=images)

    def _register(self, snapshot: Snapshot) -> Snapshot:
        final = self.snapshots_dir / snapshot.id
        if (final / MANIFEST_NAME).is_file():
            log.info("snapshot %s already in the library", snapshot.id[:12])
            return self.get(snapshot.id)
        stamped = Snapshot(snapshot.classes, snapshot.entries, snapshot.source, snapshot.parent,
                           datetime.now(UTC).isoformat(timespec="microseconds"), snapshot.split_origin)
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".new-", dir=self.snapshots_dir))
        try:
            write_atomic(work / MANIFEST_NAME, _manifest_text(stamped))
            try:
                os.rename(work, final)
            except OSError:
                if not (final / MANIFEST_NAME).is_file():  # not "someone registered the same content first"
                    raise
        except OSError as exc:
            raise DatasetError(f"cannot write snapshot {snapshot.id[:12]} under {self.snapshots_dir}: {exc}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("registered snapshot %s (%d images)", stamped.id[:12], len(stamped.entries))
        return stamped

    def without_classes(self, parent_id: str, dropped: Sequence[str], *, source: str = "") -> Snapshot:
        """The parent with every box of ``dropped`` classes removed and the same train / val split: what
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
                                       parent.id))

    def add(self, result: ImportResult, *, source: str, val_fraction: float = 0.2, parent: str | None = None,
            classes: Sequence[str] | None = None, resplit: bool = False) -> Snapshot:
        """Copy the images into the store and register a snapshot (composed on ``parent`` when given); the
        source's own split is kept unless ``resplit``."""
        if parent is not None:
            return self.compose(parent, result, source, val_fraction=val_fraction)
        # Validate before copying anything: a refused snapshot should not fill the store.
        build_snapshot(result, val_fraction=val_fraction, classes=tuple(classes) if classes else None, source=source,
                       resplit=resplit)
        snapshot = build_snapshot(self._stored(result), val_fraction=val_fraction,
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
                    val_fraction: float = 0.2, parent: str | None = None, source: str | None = None,
                    max_archive_bytes: int = DEFAULT_MAX_BYTES, resplit: bool = False) -> ImportOutcome:
        """Import a folder, COCO file or archive and register it; archives are extracted to a temp folder first."""
        path = Path(path)
        if parent is not None:
            self.get(parent)  # fail before the (possibly long) import
        label = source or str(path.resolve())
        # --classes is also the snapshot's class map, in the order given (for YOLO: the names of ids 0..n-1).
        snapshot_classes = tuple(classes) if classes else None
        if is_archive(path):
            with import_archive(path, fmt, classes=classes, image_store=self.images_dir,
                                max_bytes=max_archive_bytes) as result:
                snapshot = self.add(result, source=label, val_fraction=val_fraction, parent=parent,
                                    classes=snapshot_classes, resplit=resplit)
        else:
            result = import_dataset(path, fmt, classes=classes, image_store=self.images_dir)
            snapshot = self.add(result, source=label, val_fraction=val_fraction, parent=parent,
                                classes=snapshot_classes, resplit=resplit)
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
        "images": {"train": len(snapshot.split("train")), "val": len(snapshot.split("val"))},
        "classes": list(snapshot.classes),
        "split_origin": snapshot.split_origin,
    }


def _manifest_text(snapshot: Snapshot) -> str:
    return json.dumps(snapshot.to_json(), indent=1)
