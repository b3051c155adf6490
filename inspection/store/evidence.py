"""Evidence frames on disk, content-addressed: ``<root>/<sha[:2]>/<sha><suffix>``.

Naming a file by the sha256 of its bytes makes writing idempotent (a replayed frame lands on the same
file), lets many inspections share one file, and lets an auditor verify that a frame was not altered.
Writes go to a temporary file in the same folder and are moved into place with ``os.replace``, so a
crash or a full disk never leaves a truncated JPEG under a valid name; the file and then its folder are
fsynced, so a frame acknowledged to a camera is on disk before its row is committed.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from inspection.errors import StoreError
from inspection.hashing import sha256_bytes

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX_RE = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha_of_path(path: str | Path) -> str | None:
    """The sha256 an evidence path is named by, or ``None`` if the name is not content-addressed."""
    stem = Path(path).stem
    return stem if _SHA_RE.match(stem) else None


class EvidenceStore:
    """Evidence frames under ``root``; safe to use from several threads and processes at once."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"EvidenceStore({str(self.root)!r})"

    @staticmethod
    def _check_sha(sha: str) -> str:
        if not isinstance(sha, str) or not _SHA_RE.match(sha):
            raise ValueError(f"not a sha256 hex digest: {sha!r}")
        return sha

    def _folder(self, sha: str) -> Path:
        return self.root / sha[:2]

    def put(self, data: bytes, suffix: str = ".jpg") -> str:
        """Store ``data`` and return its sha256; storing the same bytes again does nothing."""
        return self.put_file(data, suffix)[0]

    def put_file(self, data: bytes, suffix: str = ".jpg", *, sha256: str | None = None) -> tuple[str, Path]:
        """Like ``put``, also returning the file's path (no directory scan needed). ``sha256`` is the caller's
        own hash of these very bytes (a ``Frame`` has it already), so they are not hashed twice."""
        if not data:
            raise ValueError("evidence data is empty")
        suffix = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
        if not _SUFFIX_RE.match(suffix):
            raise ValueError(f"evidence suffix must look like '.jpg', got {suffix!r}")
        sha = self._check_sha(sha256) if sha256 is not None else sha256_bytes(data)
        target = self._folder(sha) / f"{sha}{suffix}"
        if target.exists():
            return sha, target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{sha[:8]}-", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp_name, target)
                _fsync_folder(target.parent)  # the rename itself survives a power loss
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StoreError(f"cannot write evidence frame {target}: {e}") from e
        return sha, target

    def put_image(self, image: npt.NDArray[np.uint8]) -> tuple[str, Path]:
        """JPEG-encode (quality 95) a frame that has no original bytes (video, camera) and store it."""
        try:
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        except cv2.error as e:
            raise StoreError(f"cannot JPEG-encode evidence frame of shape {image.shape}: {e}") from e
        if not ok:
            raise StoreError(f"cannot JPEG-encode evidence frame of shape {image.shape}")
        sha = self.put(encoded.tobytes(), ".jpg")
        return sha, self._folder(sha) / f"{sha}.jpg"

    def path(self, sha: str) -> Path:
        """Where the evidence named ``sha`` is (whatever its suffix); ``.jpg`` if it is not stored."""
        self._check_sha(sha)
        folder = self._folder(sha)
        jpg = folder / f"{sha}.jpg"
        if jpg.exists():
            return jpg
        if folder.is_dir():
            for candidate in sorted(folder.glob(f"{sha}.*")):
                if not candidate.name.endswith(".tmp"):
                    return candidate
        return jpg

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def delete(self, sha: str) -> bool:
        """Remove the evidence named ``sha``; ``False`` if it was not there. Check
        ``ResultsStore.evidence_in_use`` first: files are shared between inspections."""
        self._check_sha(sha)
        folder = self._folder(sha)
        removed = False
        if folder.is_dir():
            for candidate in folder.glob(f"{sha}.*"):
                if candidate.name.endswith(".tmp"):
                    continue
                try:
                    candidate.unlink()
                    removed = True
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise StoreError(f"cannot delete evidence frame {candidate}: {e}") from e
        return removed
