"""What every frame source shares: the protocol the station consumes, its counters, and UTC handling.

A station does not care whether frames come from a folder, a video or an RTSP camera; it iterates a
``FrameSource`` and records its ``stats``. Counting reads, failures, drops and reconnects in one place
means a lost frame always shows up in a number somebody can alert on instead of vanishing silently.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from inspection.errors import SourceError
from inspection.types import Frame, SourceItem

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
"""Suffixes (lower-case) a folder is expanded to; anything else in a folder is not an image to us."""

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov"})
"""Suffixes (lower-case) read frame by frame through OpenCV instead of decoded as one image."""


@dataclass(frozen=True)
class SourceStats:
    """A snapshot of a source's counters, taken when ``.stats`` is read.

    ``frames_read`` counts frames yielded to the caller, ``frames_failed`` the ``FrameFailure`` records
    yielded, ``frames_dropped`` frames a live source grabbed but overwrote before anyone consumed them
    (latest-frame policy), ``reconnects`` reopen attempts after a read/open failure. ``last_error`` is
    the most recent thing that went wrong, kept so a source that simply stops can still say why.
    """

    frames_read: int = 0
    frames_failed: int = 0
    frames_dropped: int = 0
    reconnects: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class FrameOrigin:
    """The unit, order and camera a frame belongs to: given by the caller, or per manifest row.

    Validated here so a source with a blank id fails when it is built, not at its first frame.
    """

    unit_id: str
    order_id: str
    camera_id: str

    def __post_init__(self) -> None:
        for name in ("unit_id", "order_id", "camera_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise SourceError(f"{name} must be a non-empty string, got {value!r}")


@runtime_checkable
class FrameSource(Protocol):
    """Anything that yields ``Frame`` / ``FrameFailure`` items and can say how it went.

    Sources are single-pass streams (a camera cannot rewind), closable from any thread, and usable as
    context managers so the capture device or thread is released even when the consumer raises.
    """

    def __iter__(self) -> Iterator[SourceItem]: ...

    @property
    def stats(self) -> SourceStats: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive means UTC (what a line log without offsets means); aware values are converted to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (``Z`` accepted) to an aware UTC datetime; ``ValueError`` when it does not parse."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return as_utc(datetime.fromisoformat(text))


class SourceBase:
    """Shared plumbing: thread-safe counters, single-pass iteration, close and context management.

    Subclasses implement ``_items()``; this class refuses a second pass (a re-read of a folder would
    double-count every frame in the stats the caller records) and stops yielding once closed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames_read = 0
        self._frames_failed = 0
        self._frames_dropped = 0
        self._reconnects = 0
        self._last_error = ""
        self._closed = threading.Event()
        self._iterated = False

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(self._frames_read, self._frames_failed, self._frames_dropped,
                               self._reconnects, self._last_error)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __iter__(self) -> Iterator[SourceItem]:
        with self._lock:
            if self._iterated:
                raise SourceError(f"{type(self).__name__} is single-pass and was already iterated")
            self._iterated = True
        return self._counted(self._items())

    def _counted(self, items: Iterator[SourceItem]) -> Iterator[SourceItem]:
        try:
            for item in items:
                if self._closed.is_set():
                    return
                with self._lock:
                    if isinstance(item, Frame):
                        self._frames_read += 1
                    else:
                        self._frames_failed += 1
                        self._last_error = item.error
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _items(self) -> Iterator[SourceItem]:
        raise NotImplementedError

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._last_error = message

    def close(self) -> None:
        """Stop yielding; idempotent and safe from another thread. Subclasses release devices too."""
        self._closed.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
