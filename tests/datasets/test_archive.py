"""Archive import: hostile members are refused before anything is written; formats are detected inside."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from datasets.formats.archive import extracted, import_archive, safe_extract
from inspection.errors import DatasetError
from tests.datasets.test_formats import make_coco, make_yolo
from tests.datasets.test_voc_and_snapshot import make_voc


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="dataset")
    return archive


@pytest.mark.parametrize("maker", ["voc", "coco", "yolo"])
@pytest.mark.parametrize("packer", ["zip", "tar.gz"])
def test_archives_are_detected_and_imported(tmp_path: Path, maker: str, packer: str) -> None:
    src = tmp_path / "src"
    if maker == "voc":
        make_voc(src, {"a": [("x", 1, 1, 9, 9)], "b": []})
    elif maker == "coco":
        make_coco(src, [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]}])
    else:
        make_yolo(src, {"a": "0 0.5 0.5 0.1 0.1", "b": ""})
    archive = (zip_folder(src, tmp_path / "d.zip", "top/") if packer == "zip"
               else tar_folder(src, tmp_path / "d.tar.gz"))
    with import_archive(archive) as result:
        assert len(result.images) == 2 and result.skipped == ()
        assert sum(len(im.boxes) for im in result.images) == 1
        work = result.images[0].path
        assert work.is_file()
    assert not work.exists()  # the temporary folder is gone afterwards


def _zip_with(archive: Path, name: str, data: bytes = b"evil", mode: int | None = None) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/readme.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return archive


def _tar_with(archive: Path, name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> Path:
    with tarfile.open(archive, "w") as tf:
        ok = tarfile.TarInfo("ok/readme.txt")
        ok.size = 4
        tf.addfile(ok, io.BytesIO(b"fine"))
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = linkname
        data = b"evil" if kind == tarfile.REGTYPE else b""
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return archive


@pytest.mark.parametrize(("build", "message"), [
    (lambda p: _zip_with(p / "a.zip", "../evil.txt"), "'..'"),
    (lambda p: _zip_with(p / "a.zip", "ok/../../evil.txt"), "'..'"),
    (lambda p: _zip_with(p / "a.zip", "/tmp/evil.txt"), "absolute"),
    (lambda p: _zip_with(p / "a.zip", "C:\\evil.txt"), "absolute"),
    (lambda p: _zip_with(p / "a.zip", "ok\\..\\..\\evil.txt"), "'..'"),
    (lambda p: _zip_with(p / "a.zip", "link", b"/etc/passwd", stat.S_IFLNK | 0o777), "symlink"),
    (lambda p: _tar_with(p / "a.tar", "../evil.txt"), "'..'"),
    (lambda p: _tar_with(p / "a.tar", "/abs/evil.txt"), "absolute"),
    (lambda p: _tar_with(p / "a.tar", "link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (lambda p: _tar_with(p / "a.tar", "hard", tarfile.LNKTYPE, "ok/readme.txt"), "link"),
    (lambda p: _tar_with(p / "a.tar", "dev", tarfile.CHRTYPE), "device"),
    (lambda p: _tar_with(p / "a.tar", "fifo", tarfile.FIFOTYPE), "device"),
], ids=["zip-dotdot", "zip-nested-dotdot", "zip-abs", "zip-drive", "zip-backslash", "zip-symlink", "tar-dotdot",
        "tar-abs", "tar-symlink", "tar-hardlink", "tar-chardev", "tar-fifo"])
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path: Path, build, message: str) -> None:
    (tmp_path / "in").mkdir()
    archive = build(tmp_path / "in")
    dest = tmp_path / "out" / "x"
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(DatasetError, match=message) as info:
        safe_extract(archive, dest)
    assert "member" in str(info.value)
    after = sorted(p for p in tmp_path.rglob("*") if p != dest and dest not in p.parents and p != dest.parent)
    assert after == before  # nothing written beside or outside the target
    assert not dest.exists() or list(dest.rglob("*")) == []  # checked before extracting anything
    assert not Path("/tmp/evil.txt").exists() or Path("/tmp/evil.txt").read_bytes() != b"evil"


def test_size_cap_resists_bombs(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 200_000)
    assert archive.stat().st_size < 5_000
    with pytest.raises(DatasetError, match="over the cap"):
        safe_extract(archive, tmp_path / "out", max_bytes=100_000)
    with pytest.raises(DatasetError, match="over the cap"), extracted(archive, max_bytes=100_000):
        pass


def test_lying_size_header_is_caught_while_extracting(tmp_path: Path) -> None:
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.bin", b"x" * 5000)
    raw = bytearray(archive.read_bytes())
    # Patch the central directory's uncompressed size (offset 24 in each entry) to claim 10 bytes.
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24:central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(raw))
    # zipfile stops at the declared size and then fails the CRC; our own byte counter is the second line.
    with pytest.raises(DatasetError, match=r"a\.bin"):
        safe_extract(archive, tmp_path / "out", max_bytes=1000)
    assert all(p.stat().st_size <= 1000 for p in (tmp_path / "out").rglob("*") if p.is_file())


@pytest.mark.parametrize("content", [b"plain text, not an archive", b"PK\x03\x04broken"], ids=["text", "truncated"])
def test_not_an_archive(tmp_path: Path, content: bytes) -> None:
    archive = tmp_path / "x.zip"
    archive.write_bytes(content)
    with pytest.raises(DatasetError):
        safe_extract(archive, tmp_path / "out")
