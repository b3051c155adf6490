"""Line manifests: replay a line from recorded images and videos, each row carrying its own unit/order.

A manifest is what a line log looks like after the fact: which camera saw which unit of which order,
and when. Replaying one through the station re-judges a shift (after a model or profile change, or to
reproduce a complaint) with the same ids the original run used.

Format: CSV with a header row, or JSONL (one object per line). Columns/keys: ``source`` (image or
video file; relative paths resolve against the manifest's folder), ``unit_id``, ``order_id``,
``camera_id`` and optional ``captured_at`` (ISO 8601, naive means UTC). The format comes from the
suffix (``.csv``, ``.jsonl``/``.ndjson``) or, failing that, from the first character.

A structurally broken manifest is a ``SourceError`` naming the line, raised before any frame is
read; a row whose *file* is missing or bad is only a ``FrameFailure`` for that row, because on a real
line one lost photo must not stop the rest of the replay.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from inspection.errors import SourceError
from inspection.sources.base import VIDEO_SUFFIXES, FrameOrigin, SourceBase, parse_timestamp, utc_now
from inspection.sources.capture import VideoFileSource
from inspection.sources.files import read_image_item
from inspection.types import FrameFailure, SourceItem

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("source", "unit_id", "order_id", "camera_id")
OPTIONAL_COLUMNS = ("captured_at",)

ManifestFormat = Literal["csv", "jsonl"]


@dataclass(frozen=True)
class ManifestRow:
    """One validated manifest row; ``line`` is its 1-based line in the file, for messages."""

    line: int
    source: Path
    unit_id: str
    order_id: str
    camera_id: str
    captured_at: datetime | None = None

    @property
    def origin(self) -> FrameOrigin:
        return FrameOrigin(unit_id=self.unit_id, order_id=self.order_id, camera_id=self.camera_id)

    @property
    def is_video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES


def manifest_format(path: Path, text: str) -> ManifestFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    return "jsonl" if text.lstrip().startswith("{") else "csv"


def _csv_records(path: Path, text: str) -> Iterator[tuple[int, Mapping[str | None, object]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=None)
    try:
        header = reader.fieldnames
        if not header:
            raise SourceError(f"{path}:1: manifest is empty; expected a header row with columns "
                              f"{', '.join(REQUIRED_COLUMNS)}")
        reader.fieldnames = [name.strip() for name in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in reader.fieldnames]
        if missing:
            raise SourceError(f"{path}:1: header is missing column(s) {', '.join(missing)} "
                              f"(has {', '.join(reader.fieldnames)})")
        for record in reader:
            yield reader.line_num, record
    except csv.Error as exc:
        raise SourceError(f"{path}:{reader.line_num}: CSV cannot be parsed: {exc}") from exc


def _jsonl_records(path: Path, text: str) -> Iterator[tuple[int, Mapping[str | None, object]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}:{number}: not valid JSON: {exc.msg} (column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise SourceError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def _text_field(path: Path, line: int, record: Mapping[str | None, object], key: str) -> str:
    if key not in record:
        raise SourceError(f"{path}:{line}: missing column {key!r}")
    value = record[key]
    if value is None:
        raise SourceError(f"{path}:{line}: {key} is missing (fewer fields than the header, or null)")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SourceError(f"{path}:{line}: {key} must be a string, got {value!r}")
    text = str(value).strip()
    if not text:
        raise SourceError(f"{path}:{line}: {key} is empty")
    return text


def _row(path: Path, line: int, record: Mapping[str | None, object]) -> ManifestRow:
    if record.get(None):
        raise SourceError(f"{path}:{line}: row has more fields than the header")
    values = {key: _text_field(path, line, record, key) for key in REQUIRED_COLUMNS}
    captured_at: datetime | None = None
    raw = record.get("captured_at")
    if raw is not None and raw != "":
        if not isinstance(raw, str):
            raise SourceError(f"{path}:{line}: captured_at must be an ISO 8601 string, got {raw!r}")
        try:
            captured_at = parse_timestamp(raw)
        except ValueError as exc:
            raise SourceError(f"{path}:{line}: captured_at {raw!r} is not ISO 8601: {exc}") from exc
    source = Path(values["source"]).expanduser()
    if not source.is_absolute():
        source = path.parent / source
    return ManifestRow(line=line, source=source, unit_id=values["unit_id"], order_id=values["order_id"],
                       camera_id=values["camera_id"], captured_at=captured_at)


def load_manifest(path: Path | str) -> list[ManifestRow]:
    """Parse and validate a whole manifest up front, so a typo on line 900 fails before line 1 runs.

    Source files are *not* checked here: a missing one becomes a ``FrameFailure`` when its row is read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise SourceError(f"manifest does not exist: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"manifest {path} cannot be read: {exc}") from exc
    records = _csv_records(path, text) if manifest_format(path, text) == "csv" else _jsonl_records(path, text)
    return [_row(path, line, record) for line, record in records]


class ManifestSource(SourceBase):
    """Frames of a manifest, row by row; a video row yields all its frames.

    ``source_seq`` runs across the whole manifest. A row whose image or video is missing, unreadable
    or undecodable yields a ``FrameFailure`` whose error starts with ``<manifest>:<line>:``.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: tuple[ManifestRow, ...] = tuple(load_manifest(self.path))
        self._video: VideoFileSource | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _failure(self, row: ManifestRow, seq: int, why: str) -> FrameFailure:
        log.warning("%s:%d: %s", self.path, row.line, why)
        return FrameFailure(camera_id=row.camera_id, unit_id=row.unit_id, order_id=row.order_id,
                            captured_at=row.captured_at or utc_now(), source=str(row.source),
                            error=f"{self.path}:{row.line}: {why}", source_seq=seq)

    def _items(self) -> Iterator[SourceItem]:
        seq = 0
        for row in self.rows:
            if self.closed:
                return
            if not row.is_video:
                item = read_image_item(row.source, row.origin, row.captured_at or utc_now(), seq)
                if isinstance(item, FrameFailure):
                    item = dataclasses.replace(item, error=f"{self.path}:{row.line}: {item.error}")
                yield item
                seq += 1
                continue
            if not row.source.is_file():
                yield self._failure(row, seq, f"video file not found: {row.source}")
                seq += 1
                continue
            try:
                video = VideoFileSource(row.source, unit_id=row.unit_id, order_id=row.order_id,
                                        camera_id=row.camera_id, captured_at=row.captured_at)
            except SourceError as exc:
                yield self._failure(row, seq, str(exc))
                seq += 1
                continue
            self._video = video
            first_seq = seq
            try:
                for item in video:
                    yield dataclasses.replace(item, source_seq=seq)
                    seq += 1
            finally:
                video.close()
                self._video = None
            if seq == first_seq and not self.closed:
                yield self._failure(row, seq, f"video {row.source} has no readable frames")
                seq += 1
            elif video.stats.last_error:
                self._record_error(f"{self.path}:{row.line}: {video.stats.last_error}")

    def close(self) -> None:
        super().close()
        video = self._video
        if video is not None:
            video.close()
