"""Import from ``.zip`` / ``.tar`` / ``.tar.gz`` archives, extracted safely into a temporary folder.

Archives come from suppliers and labeling vendors, so they are treated as hostile: every member is
checked *before* anything is written (absolute paths, ``..``, paths resolving outside the target, links
and device files are refused with the member's name), the declared total size is capped, and the bytes
actually written are counted again while extracting, because a zip header can lie about sizes.
"""

from __future__ import annotations

import logging
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from datasets.formats import import_dataset
from datasets.records import ImportResult
from inspection.blobs import ContentStore
from inspection.errors import DatasetError

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 << 30
"""Cap on the total uncompressed size of an archive (2 GiB): a zip bomb fails early instead of filling disks."""

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 20


def is_archive(path: Path) -> bool:
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _checked_target(dest: Path, name: str, archive: Path) -> Path:
    """The path a member will be written to, or DatasetError when it could land outside ``dest``."""
    normalised = name.replace("\\", "/")
    pure = PurePosixPath(normalised)
    if normalised.startswith("/") or (len(normalised) > 1 and normalised[1] == ":"):
        raise DatasetError(f"archive {archive} member {name!r} has an absolute path: refusing to extract")
    if ".." in pure.parts:
        raise DatasetError(f"archive {archive} member {name!r} contains '..': refusing to extract")
    target = (dest / Path(*pure.parts)).resolve() if pure.parts else dest
    if not target.is_relative_to(dest):
        raise DatasetError(f"archive {archive} member {name!r} resolves outside the extraction folder")
    return target


def _copy_capped(source: IO[bytes], target: Path, budget: list[int], archive: Path, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        while chunk := source.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise DatasetError(f"archive {archive} expands beyond the size cap while extracting {name!r} "
                                   "(zip bomb?)")
            handle.write(chunk)


def _extract_zip(archive: Path, dest: Path, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            plan: list[tuple[zipfile.ZipInfo, Path]] = []
            for info in members:
                target = _checked_target(dest, info.filename, archive)
                # Unix mode in the high 16 bits; many writers leave the file-type bits 0 (= regular file).
                mode = info.external_attr >> 16
                if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
                    raise DatasetError(f"archive {archive} member {info.filename!r} is {kind}: refusing to extract")
                plan.append((info, target))
            declared = sum(info.file_size for info in members)
            if declared > max_bytes:
                raise DatasetError(f"archive {archive} expands to {declared} bytes, over the cap of {max_bytes}")
            budget = [max_bytes]
            for info, target in plan:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with zf.open(info) as source:
                    _copy_capped(source, target, budget, archive, info.filename)
    except (zipfile.BadZipFile, OSError, RuntimeError) as exc:  # RuntimeError: encrypted members
        raise DatasetError(f"archive {archive} cannot be read: {exc}") from exc


def _extract_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            plan: list[tuple[tarfile.TarInfo, Path]] = []
            for member in members:
                target = _checked_target(dest, member.name, archive)
                if member.issym() or member.islnk():
                    raise DatasetError(f"archive {archive} member {member.name!r} is a link: refusing to extract")
                if not (member.isfile() or member.isdir()):
                    raise DatasetError(f"archive {archive} member {member.name!r} is a device or special file: "
                                       "refusing to extract")
                plan.append((member, target))
            declared = sum(m.size for m in members if m.isfile())
            if declared > max_bytes:
                raise DatasetError(f"archive {archive} expands to {declared} bytes, over the cap of {max_bytes}")
            budget = [max_bytes]
            for member, target in plan:
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                source = tf.extractfile(member)
                if source is None:
                    raise DatasetError(f"archive {archive} member {member.name!r} has no data")
                with source:
                    _copy_capped(source, target, budget, archive, member.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"archive {archive} cannot be read: {exc}") from exc


def safe_extract(archive: Path, dest: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Extract ``archive`` into ``dest`` after checking every member; DatasetError names the first bad one."""
    archive = Path(archive)
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist")
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest, max_bytes)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest, max_bytes)
    else:
        raise DatasetError(f"{archive} is neither a zip nor a tar archive")
    return dest


def _dataset_root(folder: Path) -> Path:
    """Archives often wrap everything in one top folder (``dataset/...``); import from inside it."""
    while True:
        children = [c for c in folder.iterdir() if not c.name.startswith(("__MACOSX", "."))]
        if len(children) == 1 and children[0].is_dir():
            folder = children[0]
        else:
            return folder


@contextmanager
def extracted(archive: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Path]:
    """Extract into a temporary folder that is removed on exit; yields the dataset root inside it.

    Imported image paths point into this folder, so copy them (``DatasetLibrary.add``) inside the block.
    """
    work = Path(tempfile.mkdtemp(prefix="qcline-archive-"))
    try:
        safe_extract(archive, work, max_bytes=max_bytes)
        yield _dataset_root(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def import_archive(archive: Path, fmt: str = "auto", *, classes: Sequence[str] | None = None,
                   image_store: ContentStore | None = None,
                   max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[ImportResult]:
    """Extract, detect the format when ``fmt`` is ``"auto"``, import; the result is valid inside the block."""
    with extracted(archive, max_bytes=max_bytes) as root:
        yield import_dataset(root, fmt, classes=classes, image_store=image_store)
