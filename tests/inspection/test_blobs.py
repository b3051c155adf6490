"""The one atomic-write / content-addressed module every writer of the product uses."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from inspection import blobs
from inspection.blobs import ContentMismatchError, ContentStore, publish_folder, staging_folder, write_atomic
from inspection.hashing import sha256_bytes


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


@pytest.mark.parametrize("data, expected", [("grüße\n", "grüße\n".encode()), (b"\x00\xff", b"\x00\xff")],
                         ids=["text", "bytes"])
def test_write_atomic_replaces_the_file_in_one_step(tmp_path: Path, data: str | bytes, expected: bytes) -> None:
    target = tmp_path / "sub" / "manifest.json"
    write_atomic(target, "old")
    write_atomic(target, data)
    assert target.read_bytes() == expected and leftovers(tmp_path) == []


def test_write_atomic_sets_the_mode_before_the_file_is_visible(tmp_path: Path) -> None:
    target = tmp_path / "frozen.json"
    write_atomic(target, "{}", mode=0o444)
    assert stat.S_IMODE(target.stat().st_mode) == 0o444


def test_a_failed_write_atomic_keeps_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "manifest.json"
    write_atomic(target, "old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs.os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "new")
    assert target.read_text() == "old" and leftovers(tmp_path) == []


@pytest.mark.parametrize("read_only, mode", [(False, None), (True, 0o444)], ids=["evidence", "library"])
def test_content_store_layout_is_sha_fan_out_and_idempotent(tmp_path: Path, read_only: bool, mode: int | None) -> None:
    store = ContentStore(tmp_path, read_only=read_only)
    data = b"frame bytes"
    sha = sha256_bytes(data)
    path = store.put_bytes(sha, data, ".jpg")
    assert path == tmp_path / sha[:2] / f"{sha}.jpg" == store.path_for(sha, ".jpg")
    assert path.read_bytes() == data
    inode = path.stat().st_ino
    assert store.put_bytes(sha, data, ".jpg") == path and path.stat().st_ino == inode  # stored once
    if mode is not None:
        assert stat.S_IMODE(path.stat().st_mode) == mode
    assert leftovers(tmp_path) == []


def test_put_file_hashes_the_copy_not_the_callers_word(tmp_path: Path) -> None:
    source = tmp_path / "in.png"
    source.write_bytes(b"changed after it was hashed")
    store = ContentStore(tmp_path / "store", read_only=True)
    wrong = sha256_bytes(b"what the importer read")
    with pytest.raises(ContentMismatchError) as info:
        store.put_file(wrong, source, ".png")
    assert info.value.expected == wrong and info.value.actual == sha256_bytes(source.read_bytes())
    assert not store.path_for(wrong, ".png").exists() and leftovers(tmp_path / "store") == []
    right = sha256_bytes(source.read_bytes())
    assert store.put_file(right, source, ".png").read_bytes() == source.read_bytes()


def test_a_concurrent_writer_of_the_same_bytes_wins_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ContentStore(tmp_path)
    data = b"same bytes"
    sha = sha256_bytes(data)
    target = store.path_for(sha, ".jpg")
    real_write = blobs._write_fd

    def other_process_first(fd: int, payload: bytes) -> None:
        real_write(fd, payload)
        target.write_bytes(payload)  # published by someone else between our check and our rename

    monkeypatch.setattr(blobs, "_write_fd", other_process_first)
    assert store.put_bytes(sha, data, ".jpg") == target and target.read_bytes() == data
    assert leftovers(tmp_path) == []


def test_publish_folder_appears_whole_or_reports_who_was_first(tmp_path: Path) -> None:
    target = tmp_path / "abc"
    with staging_folder(tmp_path, ".new-") as work:
        (work / "manifest.json").write_text("{}")
        assert publish_folder(work, target) is True
    assert (target / "manifest.json").read_text() == "{}" and leftovers(tmp_path) == []
    with staging_folder(tmp_path, ".new-") as work:
        (work / "other").write_text("x")
        assert publish_folder(work, target) is False  # a non-empty folder of that name exists: first one stays
        (target / "manifest.json").rename(target / "junk")  # a folder of that name, but not a whole one
        with pytest.raises(OSError):
            publish_folder(work, target, complete=lambda f: (f / "manifest.json").is_file())
    assert leftovers(tmp_path) == [] and os.listdir(target) == ["junk"]
