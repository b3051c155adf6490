"""Dataset library: content-addressed copies, atomic registration, lookup by prefix, composition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datasets.formats.voc import import_voc
from datasets.library import DatasetLibrary
from datasets.records import ImportResult
from datasets.snapshot import Snapshot
from inspection.errors import DatasetError, NotFoundError
from inspection.hashing import sha256_file
from tests.builders import write_image
from tests.datasets.test_voc_and_snapshot import OBJ, XML, make_voc


def items(prefix: str, cls: str, n: int) -> dict[str, list[tuple[str, float, float, float, float]]]:
    return {f"{prefix}{i}": [(cls, 1, 1, 20, 20)] for i in range(n)}


def test_add_copies_into_the_store_and_is_immutable(tmp_path: Path) -> None:
    src = make_voc(tmp_path / "src", items("s", "scratch", 5) | items("d", "dent", 5))
    lib = DatasetLibrary(tmp_path / "data" / "datasets")
    snap = lib.add(import_voc(src), source=str(src))
    manifest = lib.snapshots_dir / snap.id / "manifest.json"
    assert manifest.is_file() and snap.created_at
    for entry in snap.entries:
        path = entry.image.path
        assert path == lib.images_dir / entry.image.sha256[:2] / f"{entry.image.sha256}.jpg"
        assert sha256_file(path) == entry.image.sha256
    # Change and delete the originals: the snapshot does not move.
    write_image(src / "images" / "s0.jpg", np.zeros((50, 100, 3), np.uint8))
    (src / "annotations" / "s1.xml").write_text(XML.format(name="s1.jpg", objects=OBJ.format(
        cls="dent", x1=2, y1=2, x2=9, y2=9)))
    (src / "images" / "d0.jpg").unlink()
    again = lib.get(snap.id[:10])
    assert again.id == snap.id and again.entries == snap.entries
    assert all(sha256_file(e.image.path) == e.image.sha256 for e in again.entries)
    # Re-adding the same content is idempotent and keeps the first registration.
    assert lib.add(import_voc(make_voc(tmp_path / "copy", items("s", "scratch", 5) | items("d", "dent", 5))),
                   source="elsewhere").created_at == snap.created_at
    [row] = lib.list()
    assert row["id"] == snap.id and row["images"] == {"train": 8, "val": 2}
    assert row["classes"] == ["dent", "scratch"] and row["parent"] is None and row["source"] == str(src)


def test_failed_add_registers_nothing(tmp_path: Path) -> None:
    src = make_voc(tmp_path / "src", items("s", "scratch", 3))
    lib = DatasetLibrary(tmp_path / "lib")
    with pytest.raises(DatasetError, match="missing from the class map"):
        lib.add(import_voc(src), source="x", classes=["dent"])
    with pytest.raises(DatasetError, match="zero images"):
        lib.add(ImportResult(()), source="x")
    assert lib.list() == []
    assert not lib.images_dir.exists()  # validated before copying anything
    # An image that changes between import and copy is refused, and no snapshot appears.
    result = import_voc(src)
    write_image(result.images[1].path, np.zeros((50, 100, 3), np.uint8))
    with pytest.raises(DatasetError, match="changed during the import"):
        lib.add(result, source="x")
    assert lib.list() == []
    assert list(lib.snapshots_dir.glob("*")) == []  # no half-written folder either


def test_get_unknown_ambiguous_and_tampered(tmp_path: Path) -> None:
    lib = DatasetLibrary(tmp_path / "lib")
    with pytest.raises(NotFoundError, match="abc123"):
        lib.get("abc123")
    with pytest.raises(NotFoundError, match="hexadecimal"):
        lib.get("../../etc")
    a = lib.add(import_voc(make_voc(tmp_path / "a", items("a", "x", 2))), source="a")
    b = lib.add(import_voc(make_voc(tmp_path / "b", items("b", "x", 2), seed=1)), source="b")
    common = next(i for i in range(64) if a.id[i] != b.id[i])
    if common > 0:
        with pytest.raises(NotFoundError, match="ambiguous"):
            lib.get(a.id[:common])
    assert lib.get(a.id[:common + 1]).id == a.id
    manifest = lib.snapshots_dir / a.id / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["entries"][0]["boxes"] = []
    manifest.chmod(0o644)
    manifest.write_text(json.dumps(raw))
    with pytest.raises(DatasetError, match="altered"):
        lib.get(a.id)


def test_compose_keeps_parent_splits_and_class_ids(tmp_path: Path) -> None:
    lib = DatasetLibrary(tmp_path / "lib")
    first = make_voc(tmp_path / "v1", items("s", "scratch", 10) | items("d", "dent", 10))
    parent = lib.add(import_voc(first), source="v1")
    split_before = {e.image.sha256: e.split for e in parent.entries}
    # Round 2: ten new images with a new class, and corrected labels for one parent image.
    second = make_voc(tmp_path / "v2", items("p", "pit", 10), seed=7)
    fixed = next(e for e in parent.entries if e.split == "val")
    (second / "images" / "fixed.jpg").write_bytes(fixed.image.path.read_bytes())
    (second / "annotations" / "fixed.xml").write_text(XML.format(name="fixed.jpg", objects=OBJ.format(
        cls="pit", x1=3, y1=3, x2=30, y2=30)))
    additions = import_voc(second)
    child = lib.compose(parent.id, additions, "v2")
    assert child.parent == parent.id and child.id != parent.id
    assert child.classes == ("dent", "scratch", "pit")  # existing ids unchanged, new class appended
    assert len(child.entries) == 30
    by_sha = {e.image.sha256: e for e in child.entries}
    for sha, split in split_before.items():
        assert by_sha[sha].split == split
    assert [b.class_name for b in by_sha[fixed.image.sha256].image.boxes] == ["pit"]  # labels replaced
    new = [e for e in child.entries if e.image.sha256 not in split_before]
    assert sum(e.split == "val" for e in new) == 2  # same 20% rule for the new images
    # Deterministic, and the parent is part of the id.
    assert lib.compose(parent.id[:8], additions, "again").id == child.id
    loaded = Snapshot.load(lib.snapshots_dir / child.id)
    assert loaded.parent == parent.id and loaded.id == child.id
    orphan = Snapshot(child.classes, child.entries, "x")
    assert orphan.id != child.id
    rows = {r["id"]: r for r in lib.list()}
    assert rows[child.id]["parent"] == parent.id
    # Through add(parent=...) as the CLI does, and unknown parents are NotFound.
    assert lib.add(additions, source="v2", parent=parent.id[:12]).id == child.id
    with pytest.raises(NotFoundError):
        lib.compose("f" * 64, additions, "v2")


def test_snapshot_without_parent_keeps_its_old_id(tmp_path: Path) -> None:
    """Adding ``parent`` to the manifest must not change ids of existing (parentless) snapshots."""
    snap = DatasetLibrary(tmp_path / "lib").add(import_voc(make_voc(tmp_path / "a", items("a", "x", 3))), source="a")
    content = json.dumps(snap._content(), sort_keys=True, separators=(",", ":"))
    assert "parent" not in content
