"""Deterministic cameras and a real station core for line-station tests.

``FakeCapture`` is a ``CaptureLike`` whose ``read`` blocks until the test hands it a frame (``push``) or a
disconnect (``drop``), so "a frame after the trigger", "no frame", "a late frame" and "the camera reconnects
mid-unit" happen exactly when the test says. ``Rig`` wires the real parts around it: a SQLite results
store, the group-commit writer, the tiny ONNX model (a bright frame shows a critical scratch, a black one
nothing), an ``Inspector`` run inline, the trigger log and a ``LineStation``.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inspection.detector import OnnxDetector
from inspection.line.cameras import Camera, CameraHub
from inspection.line.config import CameraSpec, StationConfig
from inspection.line.station import InlineRunner, LineStation
from inspection.line.triggers import Trigger, TriggerChannel
from inspection.pipeline import Inspector
from inspection.profiles import OrderBook
from inspection.store import BatchedResultWriter, ResultsStore
from inspection.store.db import open_database
from inspection.store.triggers import TriggerLog
from tests.builders import Candidate, tiny_package

BOOK: dict[str, Any] = {
    "profiles": {
        "gloss": {"name": "gloss", "default": {"confidence": 0.5, "review_from": 0.3},
                  "classes": {"scratch": {"confidence": 0.5, "critical": True}}, "required_views": ["top"]},
        "two-views": {"name": "two-views", "default": {"confidence": 0.5},
                      "classes": {"scratch": {"confidence": 0.5, "critical": True}},
                      "required_views": ["top", "side"]},
    },
    "orders": [{"id": "ORD-1", "profile": "gloss"}, {"id": "ORD-2", "profile": "two-views"}],
}

_DROP = object()


class FakeCapture:
    """A camera connection; ``read`` blocks (up to ``read_timeout``) until the test pushes a frame."""

    def __init__(self, feed: FakeCamera, read_timeout: float = 0.2) -> None:
        self.feed = feed
        self.read_timeout = read_timeout
        self.released = False
        self.position_ms = -1.0

    def get(self, prop: int) -> float:
        """``CAP_PROP_POS_MSEC`` of the last frame read, when the test gave frames stream times."""
        return self.position_ms if prop == 0 else 0.0  # cv2.CAP_PROP_POS_MSEC == 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.feed.online

    def read(self) -> tuple[bool, Any]:
        while not self.released and not self.feed.closed:
            try:
                item = self.feed.frames.get(timeout=self.read_timeout)
            except queue.Empty:
                continue
            if item is _DROP:
                return False, None
            if isinstance(item, tuple):  # (image, stream time in ms)
                item, self.position_ms = item
            return True, item
        return False, None

    def release(self) -> None:
        self.released = True


@dataclass
class FakeCamera:
    """What a test drives: frames to push, a connection to drop, the opens counted."""

    frames: queue.Queue[Any] = field(default_factory=queue.Queue)
    online: bool = True
    opens: int = 0
    closed: bool = False
    """Set before the camera is closed: a blocked read returns at once (a real one waits its read timeout)."""

    def factory(self) -> FakeCapture:
        self.opens += 1
        return FakeCapture(self)

    def push(self, value: int = 0, *, size: int = 64) -> None:
        """One frame of grey level ``value`` (255: the tiny model sees a scratch; 0: nothing)."""
        self.frames.put(np.full((size, size, 3), value, np.uint8))

    def drop(self) -> None:
        self.frames.put(_DROP)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


_ids = itertools.count(1)


def trigger(unit: str, order: str | None = "ORD-1", *, at: datetime | None = None,
            channel: TriggerChannel = TriggerChannel.HTTP) -> Trigger:
    now = datetime.now(UTC)
    return Trigger(trigger_id=f"t{next(_ids)}", unit_id=unit, order_id=order, channel=channel, received_at=now,
                   at=at or now)


class Rig:
    """A real station core (SQLite, writer, tiny model, inline inspector) around fake or real cameras."""

    def __init__(self, tmp: Path, config: StationConfig, *, fakes: dict[str, FakeCamera] | None = None) -> None:
        self.fakes = fakes or {}
        self.store = ResultsStore.open(f"sqlite:///{tmp / 'db' / 'qcline.db'}", tmp / "frames", station_id="st")
        self.store.import_order_book(OrderBook.model_validate(BOOK))
        model = tiny_package(tmp / "tiny-model", [Candidate(32, 32, 16, 16, 0, 0.9)], ("scratch", "dent"))
        self.detector = OnnxDetector.from_package(model, engine="onnxruntime")
        self.writer = BatchedResultWriter(self.store)
        self.inspector = Inspector(self.detector, self.store, journal=self.writer)
        self.log = TriggerLog(open_database(f"sqlite:///{tmp / 'db' / 'qcline.db'}"), config.station)

        def camera(spec: CameraSpec) -> Camera:
            fake = self.fakes.get(spec.name)
            return Camera(spec, capture_factory=fake.factory if fake is not None else None)

        self.hub = CameraHub.open(config.cameras, factory=camera)
        self.station = LineStation(config, self.hub, InlineRunner(self.inspector), self.store, records=self.log,
                                   status_path=tmp / "line" / "status.json", status_interval_s=0.2)
        self.station.start()

    def close(self) -> None:
        for fake in self.fakes.values():
            fake.closed = True
        self.station.close()
        self.hub.close()
        self.writer.close()
        self.log.close()
        self.store.close()


def config(*cameras: str, **values: Any) -> StationConfig:
    lines = ["station: test-station"]
    for key, value in values.items():
        lines.append(f"{key}: {value}")
    lines.append("cameras:")
    for name in cameras:
        url = name.split("=", 1)[1] if "=" in name else "rtsp://127.0.0.1:1/none"
        lines.append(f"  - {{name: {name.split('=')[0]}, url: '{url}', reconnect: {{min_s: 0.05, max_s: 0.2}}}}")
    return StationConfig.parse("\n".join(lines) + "\n", origin="test.yaml")

