"""Line manifests: CSV and JSONL, relative paths, timestamps, structural errors and bad rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.errors import SourceError
from inspection.sources import ManifestRow, ManifestSource, load_manifest
from inspection.types import Frame, FrameFailure

HEADER = "source,unit_id,order_id,camera_id,captured_at"


def write_image(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((24, 32, 3), value, np.uint8))
    return path


def write_video(path: Path, frames: int = 3, fps: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (32, 24))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 30 + 60 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def line(tmp_path: Path) -> Path:
    """A replay folder: two stills, a video in a subfolder, next to where the manifest goes."""
    write_image(tmp_path / "u1_top.jpg", 50)
    write_image(tmp_path / "u1_side.png", 150)
    write_video(tmp_path / "clips" / "u2.avi", frames=3)
    return tmp_path


ROWS = [
    {"source": "u1_top.jpg", "unit_id": "U1", "order_id": "O1", "camera_id": "top",
     "captured_at": "2024-06-01T10:00:00Z"},
    {"source": "u1_side.png", "unit_id": "U1", "order_id": "O1", "camera_id": "side",
     "captured_at": "2024-06-01T12:00:01+02:00"},
    {"source": "clips/u2.avi", "unit_id": "U2", "order_id": "O2", "camera_id": "top",
     "captured_at": "2024-06-01T10:00:05"},
]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    lines = [HEADER] + [",".join(row.get(k, "") for k in HEADER.split(",")) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(("name", "writer"), [
    ("line.csv", write_csv),
    ("line.jsonl", write_jsonl),
    ("line.ndjson", write_jsonl),
    ("line.manifest", write_jsonl),  # no known suffix: sniffed
    ("line.txt", write_csv),         # sniffed
])
def test_manifest_replays_rows_in_order(line: Path, name: str, writer) -> None:
    manifest = writer(line / name, ROWS)
    with ManifestSource(manifest) as source:
        items = list(source)
    assert all(isinstance(i, Frame) for i in items)
    frames = [i for i in items if isinstance(i, Frame)]
    assert [(f.unit_id, f.order_id, f.camera_id) for f in frames] == [
        ("U1", "O1", "top"), ("U1", "O1", "side"), *[("U2", "O2", "top")] * 3]
    assert [f.source for f in frames] == [str(line / "u1_top.jpg"), str(line / "u1_side.png")] + [
        f"{line / 'clips' / 'u2.avi'}#{i}" for i in range(3)]
    assert [f.source_seq for f in frames] == list(range(5))
    assert frames[0].data == (line / "u1_top.jpg").read_bytes() and frames[2].data == b""
    base = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
    assert [f.captured_at for f in frames] == [
        base, base + timedelta(seconds=1),
        *(base + timedelta(seconds=5, milliseconds=100 * i) for i in range(3))]
    assert source.stats.frames_read == 5 and source.stats.frames_failed == 0


def test_load_manifest_returns_validated_rows(line: Path) -> None:
    rows = load_manifest(write_csv(line / "m.csv", ROWS))
    assert rows[0] == ManifestRow(line=2, source=line / "u1_top.jpg", unit_id="U1", order_id="O1",
                                  camera_id="top", captured_at=datetime(2024, 6, 1, 10, 0, tzinfo=UTC))
    assert [r.line for r in rows] == [2, 3, 4] and rows[2].is_video and not rows[0].is_video


def test_optional_captured_at_absolute_paths_bom_and_blank_lines(line: Path, tmp_path: Path) -> None:
    absolute = write_image(tmp_path / "elsewhere" / "abs.png")
    csv_text = f"\ufeff source , unit_id,order_id,camera_id\n{absolute},U9,O9,cam\n\nu1_top.jpg,7,O9,cam\n"
    (line / "m.csv").write_text(csv_text, encoding="utf-8")
    rows = load_manifest(line / "m.csv")
    assert [(r.source, r.unit_id, r.captured_at, r.line) for r in rows] == [
        (absolute, "U9", None, 2), (line / "u1_top.jpg", "7", None, 4)]
    (line / "m.jsonl").write_text('\n{"source": "u1_top.jpg", "unit_id": 42, "order_id": "O", '
                                  '"camera_id": "c", "captured_at": null}\n\n')
    (row,) = load_manifest(line / "m.jsonl")
    assert (row.unit_id, row.captured_at, row.line) == ("42", None, 2)
    frames = list(ManifestSource(line / "m.jsonl"))
    assert isinstance(frames[0], Frame) and frames[0].captured_at.tzinfo is not None


GOOD = "a.png,U1,O1,cam,"


@pytest.mark.parametrize(("name", "text", "message"), [
    ("empty.csv", "", r":1: manifest is empty"),
    ("nocol.csv", "source,unit_id,order_id\na.png,U,O\n", r":1: header is missing column\(s\) camera_id"),
    ("blank.csv", f"{HEADER}\n{GOOD}\na.png,,O1,cam,\n", r":3: unit_id is empty"),
    ("short.csv", f"{HEADER}\n{GOOD}\n{GOOD}\na.png,U1\n", r":4: order_id is missing \(fewer fields"),
    ("long.csv", f"{HEADER}\n{GOOD},extra\n", r":2: row has more fields"),
    ("badtime.csv", f"{HEADER}\na.png,U1,O1,cam,yesterday\n", r":2: captured_at 'yesterday' is not ISO"),
    ("badjson.jsonl", '{"source": "a.png", "unit_id": "U", "order_id": "O", "camera_id": "c"}\n{oops\n',
     r":2: not valid JSON"),
    ("array.jsonl", "[1, 2]\n", r":1: expected a JSON object"),
    ("missingkey.jsonl", '\n\n{"source": "a.png", "unit_id": "U", "order_id": "O"}\n',
     r":3: missing column 'camera_id'"),
    ("nested.jsonl", '{"source": "a.png", "unit_id": {"x": 1}, "order_id": "O", "camera_id": "c"}\n',
     r":1: unit_id must be a string"),
    ("numtime.jsonl",
     '{"source": "a.png", "unit_id": "U", "order_id": "O", "camera_id": "c", "captured_at": 5}\n',
     r":1: captured_at must be an ISO 8601 string"),
    ("binary.csv", b"\xff\xfe\x00garbage".decode("latin-1"), r"cannot be read|header"),
])
def test_broken_manifest_is_a_source_error_naming_the_line(tmp_path: Path, name: str, text: str,
                                                           message: str) -> None:
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1") if name == "binary.csv" else text.encode())
    with pytest.raises(SourceError, match=message) as info:
        ManifestSource(path)
    assert name in str(info.value)


def test_missing_manifest_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        load_manifest(tmp_path / "nope.csv")


def test_bad_rows_become_failures_and_the_line_goes_on(line: Path) -> None:
    (line / "empty.png").write_bytes(b"")
    _, buf = cv2.imencode(".jpg", np.full((32, 32, 3), 9, np.uint8))
    (line / "trunc.jpg").write_bytes(buf.tobytes()[:100])
    (line / "junk.mp4").write_bytes(b"not a video")
    rows = [
        {"source": "gone.png", "unit_id": "U1", "order_id": "O1", "camera_id": "a"},
        {"source": "empty.png", "unit_id": "U2", "order_id": "O1", "camera_id": "a"},
        {"source": "trunc.jpg", "unit_id": "U3", "order_id": "O1", "camera_id": "a"},
        {"source": "missing.mkv", "unit_id": "U4", "order_id": "O1", "camera_id": "a"},
        {"source": "junk.mp4", "unit_id": "U5", "order_id": "O1", "camera_id": "a"},
        {"source": "u1_top.jpg", "unit_id": "U6", "order_id": "O1", "camera_id": "a"},
    ]
    manifest = write_csv(line / "m.csv", rows)
    source = ManifestSource(manifest)
    items = list(source)
    assert [type(i) for i in items] == [FrameFailure] * 5 + [Frame]
    failures = [i for i in items if isinstance(i, FrameFailure)]
    expected = [(2, "not found"), (3, "empty"), (4, "truncated"), (5, "not found"), (6, "cannot open video")]
    for failure, (number, why) in zip(failures, expected, strict=True):
        assert failure.error.startswith(f"{manifest}:{number}: ") and why in failure.error
    assert [i.unit_id for i in items] == ["U1", "U2", "U3", "U4", "U5", "U6"]
    assert [i.source_seq for i in items] == list(range(6))
    assert (source.stats.frames_read, source.stats.frames_failed) == (1, 5)


def test_close_mid_video_row_stops_and_releases(line: Path) -> None:
    source = ManifestSource(write_jsonl(line / "m.jsonl", ROWS[2:] + ROWS[:1]))
    iterator = iter(source)
    first = next(iterator)
    assert isinstance(first, Frame) and first.source.endswith("#0")
    video = source._video
    assert video is not None
    source.close()
    assert list(iterator) == [] and video.closed and video._cap is None
