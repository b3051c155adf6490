"""Evidence frames: content-addressed, atomic, idempotent."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from inspection.errors import InvalidFrameError, NotFoundError, StoreError
from inspection.hashing import sha256_bytes
from inspection.store import LocalEvidenceStore
from inspection.store.evidence import sha_of_path
from tests.inspection.store.factories import image


def test_put_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path / "frames")
    data = b"\xff\xd8\xff fake jpeg bytes"
    sha = store.put(data, ".jpg")
    assert sha == sha256_bytes(data)
    path = store.path(sha)
    assert path == tmp_path / "frames" / sha[:2] / f"{sha}.jpg"
    assert path.read_bytes() == data
    assert store.put(data, ".jpg") == sha
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no second copy, no temp file left


def test_put_keeps_the_suffix_and_path_finds_it(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path)
    sha = store.put(b"\x89PNG\r\n\x1a\n...", "png")
    assert store.path(sha).suffix == ".png"
    assert store.exists(sha)


def test_put_image_writes_a_decodable_jpeg(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path)
    sha, ref = store.put_image(image(90))
    path = Path(ref)
    assert path == store.path(sha) and path.suffix == ".jpg"
    decoded = cv2.imread(str(path))
    assert decoded is not None and decoded.shape == (16, 16, 3)
    assert sha_of_path(path) == sha


def test_delete(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path)
    sha = store.put(b"abc", ".jpg")
    assert store.delete(sha) is True
    assert not store.exists(sha)
    assert store.delete(sha) is False


@pytest.mark.parametrize(("data", "suffix"), [(b"", ".jpg"), (b"x", "../../etc"), (b"x", ".j/pg")])
def test_put_refuses_bad_input(tmp_path: Path, data: bytes, suffix: str) -> None:
    with pytest.raises(ValueError):
        LocalEvidenceStore(tmp_path).put(data, suffix)


@pytest.mark.parametrize("sha", ["", "abc", "../" + "a" * 61, "A" * 64])
def test_path_refuses_what_is_not_a_sha256(tmp_path: Path, sha: str) -> None:
    with pytest.raises(ValueError):
        LocalEvidenceStore(tmp_path).path(sha)


@pytest.mark.parametrize(("path", "expected"), [
    ("/x/ab/" + "ab" * 32 + ".jpg", "ab" * 32),
    ("relative/" + "0" * 64 + ".png", "0" * 64),
    ("/x/frame_0001.jpg", None),
])
def test_sha_of_path(path: str, expected: str | None) -> None:
    assert sha_of_path(path) == expected


def test_read_stream_and_cap(tmp_path: Path) -> None:
    data = cv2.imencode(".png", image(70))[1].tobytes()
    store = LocalEvidenceStore(tmp_path)
    sha = store.put(data, ".png")
    info = store.stat(sha)
    assert info is not None and (info.size, info.media_type) == (len(data), "image/png")
    assert store.read(sha) == data
    with store.open(sha) as reader:
        assert b"".join(reader.chunks(size=64)) == data
    with pytest.raises(StoreError, match="more than"):
        LocalEvidenceStore(tmp_path, max_read_bytes=len(data) - 1).read(sha)
    store.path(sha).write_bytes(data[:-5])  # altered on disk
    with pytest.raises(InvalidFrameError, match="does not match its sha256"):
        store.read(sha)
    store.delete(sha)
    with pytest.raises(NotFoundError):
        store.open(sha)


def test_locate_finds_a_frame_by_address_or_by_its_recorded_path(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path / "frames")
    data = b"\xff\xd8\xff moved"
    sha, ref = store.put_file(data, ".jpg")
    stale = f"/old/data/dir/frames/{sha[:2]}/{sha}.jpg"  # the data dir was moved since it was recorded
    info = store.locate(stale, None)
    assert info is not None and info.ref == ref
    outside = tmp_path / "older" / f"{sha}.jpg"  # a file of an older data dir, not in this store
    outside.parent.mkdir()
    outside.write_bytes(data)
    store.delete(sha)
    reader = store.open_ref(str(outside), sha)
    assert reader is not None and reader.read_all() == data
    assert store.locate(stale, sha) is None and store.open_ref(None, None) is None
