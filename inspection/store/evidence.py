"""Evidence frames, content-addressed: one interface, a local-folder and an S3 backend.

Naming a frame by the sha256 of its bytes makes writing idempotent (a replayed frame lands on the same
name), lets many inspections -- and many stations sharing one bucket -- keep one copy, and lets an auditor
verify that a frame was not altered. ``EvidenceStore`` is what the writer, the review page and the dataset
builder use; ``LocalEvidenceStore`` (the embedded default, ``<data_dir>/frames``) and
``inspection.store.evidence_s3.S3EvidenceStore`` (a shared object store) are its backends, chosen from
settings by ``inspection.store.backends.open_evidence_store``.

Every backend failure (disk full, object store unreachable) is a ``StoreError``, so the durability code
treats a lost object store like a lost database.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

import cv2
import numpy as np
import numpy.typing as npt

from inspection.blobs import TEMP_SUFFIX, ContentStore
from inspection.errors import InvalidFrameError, NotFoundError, StoreError
from inspection.hashing import sha256_bytes

log = logging.getLogger(__name__)

JPEG_QUALITY = 95
DEFAULT_MAX_READ_BYTES = 64 * 1024 * 1024
"""Largest evidence object a read accepts: far above any camera frame, far below what would hurt memory."""
CHUNK_BYTES = 256 * 1024
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_SUFFIX_RE = re.compile(r"^\.[A-Za-z0-9]{1,8}$")
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".bmp": "image/bmp",
               ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp"}
SUFFIXES = {media: suffix for suffix, media in reversed(MEDIA_TYPES.items())}


def sha_of_path(path: str | Path) -> str | None:
    """The sha256 an evidence path or object URL is named by, or ``None`` if the name is not content-addressed."""
    stem = Path(str(path)).stem
    return stem if _SHA_RE.match(stem) else None


def check_sha(sha: str) -> str:
    """``sha`` if it is a lowercase sha256 hex digest (the only names a store accepts); ``ValueError`` if not."""
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise ValueError(f"not a sha256 hex digest: {sha!r}")
    return sha


def normalise_suffix(suffix: str) -> str:
    """``.jpg`` from ``jpg`` / ``.JPG``; ``ValueError`` for anything that could be a path."""
    suffix = suffix.lower() if suffix.startswith(".") else f".{suffix.lower()}"
    if not _SUFFIX_RE.match(suffix):
        raise ValueError(f"evidence suffix must look like '.jpg', got {suffix!r}")
    return suffix


def media_type_of(suffix: str) -> str:
    return MEDIA_TYPES.get(suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class EvidenceInfo:
    """One stored frame: its content address, where it is (a file path or ``s3://`` URL), size and type.

    ``sha256`` is empty only for a file recorded under a name that is not content-addressed."""

    sha256: str
    ref: str
    size: int
    media_type: str


class EvidenceReader:
    """A stored frame opened for reading: ``info`` plus its bytes in chunks, never more than ``max_bytes``.

    Iterate it (or call ``chunks``) to stream, ``read_all`` to get the bytes checked against their sha256.
    Close it (it is a context manager); a generator that streams it to an HTTP client closes it at the end.
    """

    def __init__(self, info: EvidenceInfo, body: BinaryIO, *, max_bytes: int, source: str) -> None:
        self.info = info
        self._body = body
        self._max_bytes = max_bytes
        self._source = source

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        seen = 0
        try:
            while True:
                try:
                    chunk = self._body.read(size)
                except Exception as e:  # OSError, or a client library's own (a connection reset mid-body)
                    raise StoreError(f"reading evidence {self.info.sha256[:12]} from {self._source} failed: {e}") from e
                if not chunk:
                    return
                seen += len(chunk)
                if seen > self._max_bytes:
                    raise StoreError(f"evidence {self.info.sha256[:12]} in {self._source} is larger than the "
                                     f"{self._max_bytes} bytes a read accepts")
                yield chunk
        finally:
            self.close()

    __iter__ = chunks

    def read_all(self) -> bytes:
        """Every byte, verified against the content address: a frame that was altered is an
        ``InvalidFrameError``, not data."""
        data = b"".join(self.chunks())
        actual = sha256_bytes(data)
        if _SHA_RE.match(self.info.sha256) and actual != self.info.sha256:
            raise InvalidFrameError(f"evidence {self.info.ref} does not match its sha256 (has {actual[:12]}): "
                                    "the stored object was altered or truncated")
        return data

    def close(self) -> None:
        try:
            self._body.close()
        except Exception as e:  # closing a half-read network body may fail; nothing is lost by it
            log.debug("closing evidence body of %s: %s", self.info.sha256[:12], e)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class EvidenceStore(ABC):
    """Content-addressed evidence frames; safe to use from several threads and processes at once.

    Subclasses implement ``_store`` (write bytes not yet stored), ``stat``, ``open`` and ``delete``; the
    checks on names and the image encoding are shared, so every backend refuses the same bad input.
    """

    def __init__(self, *, max_read_bytes: int = DEFAULT_MAX_READ_BYTES) -> None:
        if max_read_bytes <= 0:
            raise ValueError(f"max_read_bytes must be positive, got {max_read_bytes}")
        self.max_read_bytes = max_read_bytes

    @abstractmethod
    def describe(self) -> str:
        """Where frames go, for logs and ``repr`` (never a credential)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    # -- writing -----------------------------------------------------------------------------------------

    def put(self, data: bytes, suffix: str = ".jpg") -> str:
        """Store ``data`` and return its sha256; storing the same bytes again does nothing."""
        return self.put_file(data, suffix)[0]

    def put_file(self, data: bytes, suffix: str = ".jpg", *, sha256: str | None = None) -> tuple[str, str]:
        """Store ``data``; return its sha256 and where it is (recorded as the inspection's evidence path).

        ``sha256`` is the caller's own hash of these very bytes (a ``Frame`` has it already), so they are
        not hashed twice. Idempotent: the same bytes land on the same name, once.
        """
        if not data:
            raise ValueError("evidence data is empty")
        suffix = normalise_suffix(suffix)
        sha = check_sha(sha256) if sha256 is not None else sha256_bytes(data)
        return sha, self._store(sha, data, suffix)

    def put_image(self, image: npt.NDArray[np.uint8]) -> tuple[str, str]:
        """JPEG-encode (quality 95) a frame that has no original bytes (video, camera) and store it."""
        try:
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        except cv2.error as e:
            raise StoreError(f"cannot JPEG-encode evidence frame of shape {image.shape}: {e}") from e
        if not ok:
            raise StoreError(f"cannot JPEG-encode evidence frame of shape {image.shape}")
        return self.put_file(encoded.tobytes(), ".jpg")

    @abstractmethod
    def _store(self, sha: str, data: bytes, suffix: str) -> str:
        """Write ``data`` under ``sha`` unless it is already there; return its ref."""

    # -- reading and deleting ------------------------------------------------------------------------------

    @abstractmethod
    def stat(self, sha: str) -> EvidenceInfo | None:
        """The stored frame named ``sha``, or ``None`` if it is not stored."""

    @abstractmethod
    def open(self, sha: str) -> EvidenceReader:
        """The stored frame named ``sha`` for streaming; ``NotFoundError`` if it is not stored,
        ``StoreError`` if it is larger than ``max_read_bytes`` or the backend fails."""

    def exists(self, sha: str) -> bool:
        return self.stat(sha) is not None

    def locate(self, ref: str | None, sha: str | None = None) -> EvidenceInfo | None:
        """The frame an inspection recorded as ``ref`` (and ``sha``), wherever it is now; ``None`` if gone.

        Tried in order: the recorded object itself when this backend can read it (another station's
        prefix in the shared bucket), the content address in this store (a moved data dir), and a recorded
        local file outside the store (an older data dir). ``StoreError`` if the store cannot be reached.
        """
        sha = sha or (sha_of_path(ref) if ref else None)
        if sha:
            info = self._stat_recorded(ref, sha) if ref else None
            if info is None:
                info = self.stat(sha)
            if info is not None:
                return info
        if ref and "://" not in ref:
            return local_file_info(Path(ref), sha)
        return None

    def open_ref(self, ref: str | None, sha: str | None = None) -> EvidenceReader | None:
        """``locate``'s frame opened for streaming; ``None`` if it is gone."""
        info = self.locate(ref, sha)
        if info is None:
            return None
        try:
            if "://" not in info.ref:
                return open_local_file(Path(info.ref), info.sha256 or None, max_bytes=self.max_read_bytes)
            return self._open_info(info)
        except NotFoundError:  # released between the lookup and the read
            return None

    def _stat_recorded(self, ref: str, sha: str) -> EvidenceInfo | None:
        """The object ``ref`` names if this backend reads it directly and it is not ``sha``'s own name here."""
        return None

    def _open_info(self, info: EvidenceInfo) -> EvidenceReader:
        """Open a located object that is not a local file (only backends whose refs are URLs have those)."""
        raise NotFoundError(f"{type(self).__name__} cannot read {info.ref}")

    def read(self, sha: str) -> bytes:
        """The bytes of the frame named ``sha`` (at most ``max_read_bytes``), checked against the name."""
        with self.open(sha) as reader:
            return reader.read_all()

    @abstractmethod
    def delete(self, sha: str) -> bool:
        """Remove the frame named ``sha``; ``False`` if it was not there. Check
        ``ResultsStore.evidence_in_use`` first: frames are shared between inspections."""

    def _check_size(self, info: EvidenceInfo) -> None:
        if info.size > self.max_read_bytes:
            raise StoreError(f"evidence {info.ref} is {info.size} bytes, more than the {self.max_read_bytes} a "
                             "read accepts")


class LocalEvidenceStore(EvidenceStore):
    """Frames under ``root`` as ``<root>/<sha[:2]>/<sha><suffix>``: the embedded default.

    Writes go through ``inspection.blobs.ContentStore``: a temporary file in the same folder, moved into
    place with ``os.replace``, so a crash or a full disk never leaves a truncated JPEG under a valid name;
    the file and then its folder are fsynced, so a frame acknowledged to a camera is on disk before its row
    is committed.
    """

    def __init__(self, root: Path, *, max_read_bytes: int = DEFAULT_MAX_READ_BYTES) -> None:
        super().__init__(max_read_bytes=max_read_bytes)
        self.root = Path(root)
        self._files = ContentStore(self.root)

    def describe(self) -> str:
        return str(self.root)

    def _folder(self, sha: str) -> Path:
        return self._files.folder_for(sha)

    def _store(self, sha: str, data: bytes, suffix: str) -> str:
        try:
            return str(self._files.put_bytes(sha, data, suffix))
        except OSError as e:
            raise StoreError(f"cannot write evidence frame {self._files.path_for(sha, suffix)}: {e}") from e

    def path(self, sha: str) -> Path:
        """Where the evidence named ``sha`` is (whatever its suffix); ``.jpg`` if it is not stored."""
        check_sha(sha)
        folder = self._folder(sha)
        jpg = folder / f"{sha}.jpg"
        if jpg.exists():
            return jpg
        if folder.is_dir():
            for candidate in sorted(folder.glob(f"{sha}.*")):
                if not candidate.name.endswith(TEMP_SUFFIX):
                    return candidate
        return jpg

    def stat(self, sha: str) -> EvidenceInfo | None:
        path = self.path(sha)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StoreError(f"cannot read evidence frame {path}: {e}") from e
        return EvidenceInfo(sha, str(path), size, media_type_of(path.suffix))

    def open(self, sha: str) -> EvidenceReader:
        info = self.stat(sha)
        if info is None:
            raise NotFoundError(f"evidence frame {sha[:12]} is not stored in {self.root}")
        self._check_size(info)
        try:
            body = Path(info.ref).open("rb")  # noqa: SIM115 -- the reader owns it and closes it
        except FileNotFoundError as e:  # released between stat and open
            raise NotFoundError(f"evidence frame {sha[:12]} is not stored in {self.root}") from e
        except OSError as e:
            raise StoreError(f"cannot read evidence frame {info.ref}: {e}") from e
        return EvidenceReader(info, body, max_bytes=self.max_read_bytes, source=str(self.root))

    def delete(self, sha: str) -> bool:
        check_sha(sha)
        folder = self._folder(sha)
        removed = False
        if folder.is_dir():
            for candidate in folder.glob(f"{sha}.*"):
                if candidate.name.endswith(TEMP_SUFFIX):
                    continue
                try:
                    candidate.unlink()
                    removed = True
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise StoreError(f"cannot delete evidence frame {candidate}: {e}") from e
        return removed


def local_file_info(path: Path, sha: str | None) -> EvidenceInfo | None:
    """A frame recorded by a path outside the configured store (an older data dir); ``None`` if it is not a file."""
    try:
        if not path.is_file():
            return None
        size = path.stat().st_size
    except OSError:
        return None
    return EvidenceInfo(sha or sha_of_path(path) or "", str(path), size, media_type_of(path.suffix))


def open_local_file(path: Path, sha: str | None, *, max_bytes: int = DEFAULT_MAX_READ_BYTES) -> EvidenceReader | None:
    """``local_file_info``'s file opened for reading; ``None`` if it is not a readable file."""
    info = local_file_info(path, sha)
    if info is None:
        return None
    if info.size > max_bytes:
        raise StoreError(f"evidence {path} is {info.size} bytes, more than the {max_bytes} a read accepts")
    try:
        body = path.open("rb")
    except OSError:
        return None
    return EvidenceReader(info, body, max_bytes=max_bytes, source=str(path.parent))
