"""Files that are never seen half-written: atomic writes, atomically published folders, and the
content-addressed file store that evidence frames and the dataset library's images share.

Every writer of the product that replaces or publishes a file goes through here, so each does the same
four steps: a temporary file in the target's own folder (a rename within one file system is atomic),
``fsync`` of the file, ``os.replace``, ``fsync`` of the folder (so the rename itself survives a power
loss). A reader sees the old file or the new one, never a truncated one under a valid name.

The content-addressed layout is ``<root>/<sha[:2]>/<sha><suffix>``: the name *is* the content, so a
write of bytes already stored does nothing, and two writers of the same bytes cannot disagree.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from inspection.errors import QCError
from inspection.hashing import sha256_file

TEMP_SUFFIX = ".tmp"
"""Every temporary file here ends so, and starts with ``.``: no reader takes one for a stored object."""


class ContentMismatchError(QCError):
    """A copy into the content-addressed store did not hash to the name it was to be stored under."""

    def __init__(self, source: Path, actual: str, expected: str) -> None:
        super().__init__(f"{source}: sha256 {actual[:12]} != {expected[:12]}")
        self.source, self.actual, self.expected = source, actual, expected


def fsync_folder(folder: Path) -> None:
    """Make the entries of ``folder`` (a rename into it) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(target: Path, prefix: str) -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=target.parent)
    return fd, Path(name)


def _write_fd(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (``str`` is written as UTF-8) in one step; ``mode`` sets the permissions
    before the file becomes visible. A failure leaves the old file (or none) and no temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = _temp_beside(path, f".{path.name}.")
    try:
        _write_fd(fd, payload)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


@contextmanager
def staging_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A fresh temporary folder inside ``parent`` (so ``publish_folder`` can rename out of it), removed with
    whatever is left in it when the block ends."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def publish_folder(staged: Path, target: Path, *, complete: Callable[[Path], bool] = Path.is_dir) -> bool:
    """Rename the finished folder ``staged`` to ``target``: it appears whole or not at all.

    Returns ``False`` when another writer published ``target`` first (for content-named folders that is the
    same content) and ``complete(target)`` says it is whole; any other failure is the ``OSError`` it is.
    """
    try:
        os.rename(staged, target)
    except OSError:
        if not complete(target):
            raise
        return False
    fsync_folder(target.parent)
    return True


class ContentStore:
    """Files named by the sha256 of their bytes under ``root``: ``<root>/<sha[:2]>/<sha><suffix>``.

    ``read_only`` publishes files with mode 0444 (the dataset library's images are immutable: a snapshot
    cites them by hash). Safe for many threads and processes at once: writes are atomic and idempotent.
    Callers check ``sha`` and ``suffix`` (this class puts them into a path as given).
    """

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = Path(root)
        self.read_only = read_only

    def folder_for(self, sha: str) -> Path:
        return self.root / sha[:2]

    def path_for(self, sha: str, suffix: str) -> Path:
        return self.folder_for(sha) / f"{sha}{suffix}"

    def put_bytes(self, sha: str, data: bytes, suffix: str) -> Path:
        """Store ``data`` (whose sha256 the caller computed) unless it is stored already; its path."""
        target = self.path_for(sha, suffix)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(target, f".{sha[:8]}-")
        try:
            _write_fd(fd, data)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._publish(tmp, target)

    def put_file(self, sha: str, source: Path, suffix: str) -> Path:
        """Copy ``source`` into the store under ``sha``; the copy is hashed, not trusted:
        ``ContentMismatchError`` when it is not ``sha`` (the source changed since it was hashed)."""
        target = self.path_for(sha, suffix)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temp_beside(target, f".{sha[:8]}-")
        try:
            os.close(fd)
            shutil.copyfile(source, tmp)
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
            actual = sha256_file(tmp)
            if actual != sha:
                raise ContentMismatchError(source, actual, sha)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._publish(tmp, target)

    def _publish(self, tmp: Path, target: Path) -> Path:
        """Move a finished, fsynced temp file into place; a target that appeared meanwhile holds the same
        bytes (same name, same content), so the temp file is dropped instead."""
        try:
            if self.read_only:
                os.chmod(tmp, 0o444)
            if target.exists():
                tmp.unlink()
            else:
                os.replace(tmp, target)
                fsync_folder(target.parent)
        except OSError:
            tmp.unlink(missing_ok=True)
            if not target.exists():
                raise
        return target
