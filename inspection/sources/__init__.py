"""Frame sources: where a station's frames come from (files, folders, videos, cameras, manifests).

``open_source`` turns the one string a CLI flag or a station config holds into the right source, so
callers never branch on "is this a URL or a folder" themselves.
"""

from __future__ import annotations

from pathlib import Path

from inspection.errors import SourceError
from inspection.sources.base import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    FrameOrigin,
    FrameSource,
    SourceStats,
    as_utc,
    parse_timestamp,
)
from inspection.sources.capture import (
    CaptureFactory,
    CaptureLike,
    LiveCaptureSource,
    VideoFileSource,
    is_stream_url,
    redact_url,
)
from inspection.sources.files import ImageFileSource
from inspection.sources.manifest import ManifestRow, ManifestSource, load_manifest

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "CaptureFactory",
    "CaptureLike",
    "FrameOrigin",
    "FrameSource",
    "ImageFileSource",
    "LiveCaptureSource",
    "ManifestRow",
    "ManifestSource",
    "SourceStats",
    "VideoFileSource",
    "as_utc",
    "is_stream_url",
    "load_manifest",
    "open_source",
    "parse_timestamp",
    "redact_url",
]


def open_source(spec: str, *, unit_id: str, order_id: str, camera_id: str,
                max_frames: int | None = None, give_up_s: float | None = None) -> FrameSource:
    """Pick the source a spec names, in this order:

    ``rtsp://``/``rtsps://``/``http(s)://`` URL -> ``LiveCaptureSource`` (other schemes are refused);
    an integer -> USB camera of that index; a video suffix (.mp4 .avi .mkv .mov) -> ``VideoFileSource``;
    an existing image file or folder -> ``ImageFileSource``. Anything else is a ``SourceError`` saying
    what was expected.
    ``max_frames`` bounds live and video sources (image sources are bounded by their files);
    ``give_up_s`` ends a live source that delivers no frame for that long (``None``: retry forever).
    """
    text = spec.strip()
    if not text:
        raise SourceError("source spec is empty; expected an image file/folder, a video file, "
                          "an rtsp:// or http(s):// URL, or a camera index")
    if is_stream_url(text) or text.isdigit():
        target: str | int = int(text) if text.isdigit() else text
        return LiveCaptureSource(target, unit_id=unit_id, order_id=order_id, camera_id=camera_id,
                                 max_frames=max_frames, give_up_s=give_up_s)
    if "://" in text:
        raise SourceError(f"unsupported source URL scheme in {redact_url(text)!r}; "
                          "expected rtsp://, rtsps://, http:// or https://")
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES and not path.is_dir():
        return VideoFileSource(path, unit_id=unit_id, order_id=order_id, camera_id=camera_id,
                               max_frames=max_frames)
    if path.is_dir() or (path.is_file() and suffix in IMAGE_SUFFIXES):
        return ImageFileSource([path], unit_id=unit_id, order_id=order_id, camera_id=camera_id)
    if not path.exists():
        raise SourceError(f"source does not exist: {text}")
    if suffix in (".csv", ".jsonl", ".ndjson"):
        raise SourceError(f"{text} looks like a line manifest: open it with ManifestSource, which takes "
                          "unit/order/camera ids from each row")
    raise SourceError(f"cannot tell what kind of source {text} is: expected an image "
                      f"({', '.join(sorted(IMAGE_SUFFIXES))}) or video ({', '.join(sorted(VIDEO_SUFFIXES))}) "
                      "file, a folder, a URL or a camera index")
