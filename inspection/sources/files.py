"""Still images from files and folders: the simplest source, and how a line's photos are replayed.

Frames keep the original file bytes (``Frame.data``) so the content hash and any stored evidence are
of exactly what the camera wrote, not of a re-encoding. A bad file becomes a ``FrameFailure`` and the
run goes on: one corrupt JPEG must not stop a shift's worth of inspection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from inspection.errors import InvalidFrameError, SourceError
from inspection.imageio import decode
from inspection.sources.base import IMAGE_SUFFIXES, FrameOrigin, SourceBase, as_utc, utc_now
from inspection.types import Frame, FrameFailure, SourceItem

log = logging.getLogger(__name__)


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def expand_image_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given, folders as their image files sorted by name (not recursive).

    Raises ``SourceError`` for a missing path or a folder with no images, naming it: both are
    configuration mistakes better reported before the line starts than as an empty run.
    """
    expanded: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = sorted((p for p in path.iterdir() if p.is_file() and is_image_path(p)),
                            key=lambda p: p.name)
            if not images:
                raise SourceError(f"folder {path} contains no image files "
                                  f"({', '.join(sorted(IMAGE_SUFFIXES))})")
            expanded.extend(images)
        elif path.exists():
            expanded.append(path)
        else:
            raise SourceError(f"image path does not exist: {path}")
    return expanded


def read_image_item(path: Path, origin: FrameOrigin, captured_at: datetime, seq: int) -> SourceItem:
    """Read and decode one image file; every way it can go wrong becomes a ``FrameFailure`` saying why."""

    def failure(why: str) -> FrameFailure:
        log.warning("frame %s failed: %s", path, why)
        return FrameFailure(camera_id=origin.camera_id, unit_id=origin.unit_id, order_id=origin.order_id,
                            captured_at=captured_at, source=str(path), error=why, source_seq=seq)

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return failure(f"image file not found: {path}")
    except OSError as exc:
        return failure(f"image file cannot be read: {path}: {exc.strerror or exc}")
    try:
        decoded = decode(data)
        return Frame(image=decoded.image, camera_id=origin.camera_id, unit_id=origin.unit_id,
                     order_id=origin.order_id, captured_at=captured_at, source=str(path), source_seq=seq,
                     data=data, scale=decoded.scale)
    except InvalidFrameError as exc:
        return failure(f"{path}: {exc}")


class ImageFileSource(SourceBase):
    """Image files and folders of image files, yielded in order, one frame per file.

    ``captured_at`` stamps every frame with the given time (replaying a known capture) or, when
    omitted, with the UTC time each file is read.
    """

    def __init__(self, paths: Sequence[Path], *, unit_id: str, order_id: str, camera_id: str,
                 captured_at: datetime | None = None) -> None:
        super().__init__()
        if isinstance(paths, str | Path):
            paths = [Path(paths)]
        self.origin = FrameOrigin(unit_id=unit_id, order_id=order_id, camera_id=camera_id)
        self.paths: tuple[Path, ...] = tuple(expand_image_paths(paths))
        self._captured_at = as_utc(captured_at) if captured_at is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def _items(self) -> Iterator[SourceItem]:
        for seq, path in enumerate(self.paths):
            if self.closed:
                return
            yield read_image_item(path, self.origin, self._captured_at or utc_now(), seq)
