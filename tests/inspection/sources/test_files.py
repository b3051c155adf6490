"""ImageFileSource, the shared source plumbing (stats, single pass, close) and the open_source factory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from inspection.errors import SourceError
from inspection.hashing import sha256_bytes
from inspection.sources import (
    FrameSource,
    ImageFileSource,
    LiveCaptureSource,
    SourceStats,
    VideoFileSource,
    open_source,
)
from inspection.types import Frame, FrameFailure

IDS: dict[str, Any] = {"unit_id": "U1", "order_id": "O1", "camera_id": "cam-top"}


def write_image(path: Path, value: int = 100, size: tuple[int, int] = (32, 24)) -> Path:
    image = np.full((size[1], size[0], 3), value, np.uint8)
    assert cv2.imwrite(str(path), image), path
    return path


def write_video(path: Path, frames: int = 5, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (32, 24))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((24, 32, 3), 20 + 40 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for name, value in (("b.png", 20), ("a.JPG", 60), ("c.jpeg", 100), ("d.bmp", 140), ("e.TIFF", 180),
                        ("f.webp", 220)):
        write_image(images / name, value)
    (images / "notes.txt").write_text("not an image")
    (images / "sub").mkdir()
    write_image(images / "sub" / "z.png")
    return images


def test_folder_is_expanded_to_images_sorted_by_name(folder: Path) -> None:
    source = ImageFileSource([folder], **IDS)
    assert [p.name for p in source.paths] == ["a.JPG", "b.png", "c.jpeg", "d.bmp", "e.TIFF", "f.webp"]
    items = list(source)
    assert all(isinstance(item, Frame) for item in items)
    frames = [item for item in items if isinstance(item, Frame)]
    assert [f.source_seq for f in frames] == list(range(6))
    assert frames[0].source == str(folder / "a.JPG")
    assert frames[1].data == (folder / "b.png").read_bytes()
    assert frames[1].sha256 == sha256_bytes((folder / "b.png").read_bytes())  # the file's, not a re-encoding
    assert (frames[0].unit_id, frames[0].order_id, frames[0].camera_id) == ("U1", "O1", "cam-top")
    assert source.stats == SourceStats(frames_read=6)


def test_files_and_folders_mix_in_given_order(tmp_path: Path, folder: Path) -> None:
    single = write_image(tmp_path / "single.png")
    source = ImageFileSource([single, folder], **IDS)
    assert source.paths[0] == single
    assert len(source) == 7


@pytest.mark.parametrize("missing", ["nope.png", "nope_dir"])
def test_missing_path_is_a_source_error_naming_it(tmp_path: Path, missing: str) -> None:
    with pytest.raises(SourceError, match=missing):
        ImageFileSource([write_image(tmp_path / "ok.png"), tmp_path / missing], **IDS)


def test_folder_without_images_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="no image files"):
        ImageFileSource([tmp_path], **IDS)


def _truncated_jpeg(path: Path) -> None:
    _, buf = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    path.write_bytes(buf.tobytes()[: len(buf) // 2])


def _truncated_png(path: Path) -> None:
    _, buf = cv2.imencode(".png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    path.write_bytes(buf.tobytes()[:60])


@pytest.mark.parametrize(("name", "make", "why"), [
    ("empty.png", lambda p: p.write_bytes(b""), "empty"),
    ("trunc.jpg", _truncated_jpeg, "truncated"),
    ("trunc.png", _truncated_png, "cannot be decoded"),
    ("garbage.jpg", lambda p: p.write_bytes(b"this is not an image at all"), "cannot be decoded"),
    ("tiny.png", lambda p: write_image(p, size=(4, 4)), "too small"),
])
def test_bad_file_yields_failure_and_iteration_continues(tmp_path: Path, name: str, make, why: str) -> None:
    bad = tmp_path / name
    make(bad)
    good = write_image(tmp_path / "zz_good.png")
    items = list(ImageFileSource([bad, good], **IDS))
    assert isinstance(items[0], FrameFailure)
    assert why in items[0].error and name in items[0].error
    assert items[0].source == str(bad) and items[0].unit_id == "U1" and items[0].source_seq == 0
    assert isinstance(items[1], Frame) and items[1].source_seq == 1


def test_unreadable_file_yields_failure(tmp_path: Path) -> None:
    vanished = write_image(tmp_path / "gone.png")
    source = ImageFileSource([vanished], **IDS)
    vanished.unlink()  # disappears between listing and reading (a cleanup job, a network share)
    (item,) = list(source)
    assert isinstance(item, FrameFailure) and "not found" in item.error
    stats = source.stats
    assert (stats.frames_read, stats.frames_failed) == (0, 1) and "gone.png" in stats.last_error


@pytest.mark.parametrize(("given", "expected"), [
    (datetime(2024, 5, 1, 12, 0), datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
    (datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
     datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
])
def test_captured_at_given_is_utc(tmp_path: Path, given: datetime, expected: datetime) -> None:
    (frame,) = list(ImageFileSource([write_image(tmp_path / "a.png")], captured_at=given, **IDS))
    assert frame.captured_at == expected and frame.captured_at.utcoffset() == timedelta(0)


def test_captured_at_defaults_to_now_utc(tmp_path: Path) -> None:
    before = datetime.now(UTC)
    (frame,) = list(ImageFileSource([write_image(tmp_path / "a.png")], **IDS))
    assert frame.captured_at.tzinfo is not None and frame.captured_at >= before - timedelta(seconds=1)


@pytest.mark.parametrize("field", ["unit_id", "order_id", "camera_id"])
def test_blank_ids_are_refused(tmp_path: Path, field: str) -> None:
    with pytest.raises(SourceError, match=field):
        ImageFileSource([write_image(tmp_path / "a.png")], **{**IDS, field: " "})


def test_source_is_single_pass_closable_and_a_context_manager(folder: Path) -> None:
    with ImageFileSource([folder], **IDS) as source:
        assert isinstance(source, FrameSource)
        iterator = iter(source)
        next(iterator)
        with pytest.raises(SourceError, match="single-pass"):
            iter(source)
    assert source.closed
    assert list(iterator) == []
    assert source.stats.frames_read == 1


# -- open_source --------------------------------------------------------------------------------------


@pytest.fixture
def specs(tmp_path: Path) -> dict[str, str]:
    write_image(tmp_path / "one.png")
    folder = tmp_path / "dir"
    folder.mkdir()
    write_image(folder / "x.jpg")
    write_video(tmp_path / "clip.avi")
    (tmp_path / "line.csv").write_text("source,unit_id,order_id,camera_id\n")
    (tmp_path / "data.bin").write_bytes(b"\0")
    return {"root": str(tmp_path)}


@pytest.mark.parametrize(("spec", "kind"), [
    ("{root}/one.png", ImageFileSource),
    ("{root}/dir", ImageFileSource),
    ("{root}/clip.avi", VideoFileSource),
    ("rtsp://user:secret@127.0.0.1:8554/line", LiveCaptureSource),
    ("rtsps://cam.local/stream", LiveCaptureSource),
    ("http://cam.local/video.mjpg", LiveCaptureSource),
    ("HTTPS://cam.local/video", LiveCaptureSource),
    ("0", LiveCaptureSource),
    (" 2 ", LiveCaptureSource),
])
def test_open_source_picks_by_spec(specs: dict[str, str], spec: str, kind: type) -> None:
    source = open_source(spec.format(**specs), **IDS)
    try:
        assert isinstance(source, kind)
        if isinstance(source, LiveCaptureSource):
            assert "secret" not in source.label
            assert not source.running  # nothing is opened before iteration
    finally:
        source.close()


@pytest.mark.parametrize(("spec", "message"), [
    ("", "empty"),
    ("{root}/missing.png", "does not exist"),
    ("{root}/missing.mp4", "does not exist"),
    ("{root}/line.csv", "ManifestSource"),
    ("{root}/data.bin", "cannot tell"),
    ("ftp://host/x.mp4", "unsupported source URL scheme"),
    ("-1", "does not exist"),
])
def test_open_source_refuses_unknown_specs(specs: dict[str, str], spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec.format(**specs), **IDS)
