"""Triggers from the part's own label: a camera sees a unit's QR / DataMatrix / barcode come into view.

The source takes frames through ``latest_frame`` (a callable returning the camera's newest ``(image,
captured_at)`` or ``None``), so it needs nothing of the station's camera classes, and reads labels with
``inspection.identity`` (zxing-cpp) under the camera's ``LabelSettings`` (formats, region, pattern with a
``unit`` and optional ``order`` group).

Debounce, all on capture times (never the wall clock, so a replayed video behaves as the live line):

* a unit is *in view* from the frame its label is first read on; the trigger is that frame's capture time
  (``at``), after ``confirm_frames`` consecutive readings of the same unit (1: at once);
* it stays in view while its label is read again within ``rearm_s`` of the last reading: frames where the
  label is hidden or unreadable for a moment (glare, a hand) do not end it;
* a different unit's label ends it at once (the next unit is there); the same label read again after a gap
  longer than ``rearm_s`` is a new trigger (the unit came back, e.g. after rework).

A frame with labels of two different units is counted ``malformed`` and changes nothing. The answer has no
channel to go to (the label does not listen): it is counted and logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from inspection.identity import IdentityError, LabelSettings, label_identity
from inspection.line.sources.base import SourceStats, StatsBox, now_utc, run_token
from inspection.line.triggers import Trigger, TriggerAnswer, TriggerChannel, TriggerOutcome, TriggerSink

log = logging.getLogger(__name__)

LatestFrame = Callable[[], "tuple[npt.NDArray[np.uint8], datetime] | None"]


class LabelTriggerSource:
    """A ``TriggerSource`` that watches one camera's newest frames for part labels."""

    channel = TriggerChannel.LABEL

    def __init__(self, latest_frame: LatestFrame, settings: LabelSettings, *, name: str, camera_id: str,
                 interval_s: float = 0.05, rearm_s: float = 2.0, confirm_frames: int = 1) -> None:
        if confirm_frames < 1 or rearm_s <= 0 or interval_s <= 0:
            raise ValueError("confirm_frames >= 1, rearm_s > 0 and interval_s > 0")
        self.name = name
        self.camera_id = camera_id
        self.settings = settings
        self.interval_s = interval_s
        self.rearm = timedelta(seconds=rearm_s)
        self.confirm_frames = confirm_frames
        self._latest_frame = latest_frame
        self._token = run_token()
        self._stats = StatsBox()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._submit: TriggerSink | None = None
        self._last_frame_at: datetime | None = None
        self._in_view: str | None = None         # the unit a trigger was emitted for, while still in view
        self._last_read: datetime | None = None  # when its label was last read
        self._candidate: tuple[str, str | None, datetime, int] | None = None  # unit, order, first seen, count
        self._count = 0

    @property
    def stats(self) -> SourceStats:
        return self._stats.snapshot()

    def start(self, submit: TriggerSink) -> None:
        if self._thread is not None:
            raise RuntimeError(f"trigger source {self.name} is already started")
        self._submit = submit
        self._stats.set(connected=True)
        self._thread = threading.Thread(target=self._run, name=f"qcline-trigger-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._stats.set(connected=False)

    def answer(self, answer: TriggerAnswer) -> None:
        self._stats.add(answered=1)
        if answer.outcome is not TriggerOutcome.JUDGED:
            log.warning("trigger source %s: unit %s (label) ended %s: %s", self.name, answer.trigger.unit_id,
                        answer.outcome.value, answer.error or "; ".join(answer.verdict.reasons if answer.verdict
                                                                        else ()))

    # -- the watch loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                latest = self._latest_frame()
                if latest is None:
                    continue
                image, captured_at = latest
                if self._last_frame_at is not None and captured_at <= self._last_frame_at:
                    continue  # not a newer frame: read each frame once
                self._last_frame_at = captured_at
                trigger = self.process(image, captured_at)
                self._stats.add(polls=1)
                if trigger is not None:
                    assert self._submit is not None
                    self._submit(trigger)
            except Exception:  # a camera hiccup or a station that refuses must not end the watch
                self._stats.add(errors=1)
                log.exception("trigger source %s: reading labels from %s failed", self.name, self.camera_id)

    def process(self, image: npt.NDArray[np.uint8], captured_at: datetime) -> Trigger | None:
        """One frame through the debounce: the trigger it starts, if any (the loop hands it on)."""
        try:
            label = label_identity(image, self.settings)
        except IdentityError as e:
            self._stats.add(malformed=1)
            log.warning("trigger source %s: %s", self.name, e)
            return None
        if label is None:
            if self.confirm_frames > 1:  # confirmation needs consecutive readings
                self._candidate = None
            return None
        unit, order = label.unit_id, label.order_id
        if (unit == self._in_view and self._last_read is not None
                and captured_at - self._last_read <= self.rearm):
            self._last_read = captured_at  # the same pass of the same unit
            self._candidate = None
            return None
        c = self._candidate
        if c is not None and c[0] == unit and c[1] == order:
            self._candidate = (unit, order, c[2], c[3] + 1)
        else:
            self._candidate = (unit, order, captured_at, 1)
        if self._candidate[3] < self.confirm_frames:
            return None
        first_seen = self._candidate[2]
        self._candidate = None
        if unit == self._in_view:
            log.info("trigger source %s: unit %s is back after more than %.1f s: a new trigger", self.name, unit,
                     self.rearm.total_seconds())
        self._in_view, self._last_read = unit, captured_at
        self._count += 1
        self._stats.add(received=1)
        return Trigger(trigger_id=f"{self.name}-{self._token}-{self._count}", unit_id=unit, order_id=order,
                       channel=TriggerChannel.LABEL, received_at=now_utc(), at=first_seen,
                       reply_to=self.camera_id)
