"""Part-label triggers from generated frames (zxing-cpp's own QR / Code 128 writer): one trigger per pass of
a unit, debounced on capture times, a unit that comes back after the gap, two labels in one frame."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import numpy as np
import pytest

from inspection.identity import LabelSettings, label_image
from inspection.line.sources import build_trigger_sources
from inspection.line.sources.label import LabelTriggerSource
from inspection.line.triggers import TriggerChannel, TriggerOutcome
from tests.inspection.line.sources.helpers import Collected, judged, unjudged
from tests.inspection.signals.peers import wait_until

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SETTINGS = LabelSettings(pattern=r"(?:(?P<order>O-[0-9]+)/)?(?P<unit>U-[0-9A-Z-]+)")


def frame(*labels: str, fmt: str = "QRCode") -> np.ndarray:
    """A grey belt with each label pasted side by side."""
    image = np.full((360, 640, 3), 140, np.uint8)
    x = 20
    for text in labels:
        label = label_image(text, fmt, scale=3)
        image[20:20 + label.shape[0], x:x + label.shape[1]] = label
        x += label.shape[1] + 40
    return image


def source(**options: object) -> LabelTriggerSource:
    return LabelTriggerSource(lambda: None, SETTINGS, name="label", camera_id="top", **options)  # type: ignore[arg-type]


# (seconds after T0, labels on the frame) -> units triggered, in order
@pytest.mark.parametrize(("frames", "expected", "options"), [
    ([(0.0, ["U-1"]), (0.1, ["U-1"]), (0.2, ["U-1"])], ["U-1"], {}),                   # one pass, one trigger
    ([(0.0, ["U-1"]), (0.1, []), (0.5, ["U-1"])], ["U-1"], {}),                        # hidden a moment: same pass
    ([(0.0, ["U-1"]), (0.1, ["U-2"]), (0.2, ["U-1"])], ["U-1", "U-2", "U-1"], {}),    # next unit ends the pass
    ([(0.0, ["U-1"]), (1.0, []), (3.5, ["U-1"])], ["U-1", "U-1"], {"rearm_s": 2.0}),  # back after the gap
    ([(0.0, ["U-1"]), (1.9, ["U-1"]), (3.8, ["U-1"])], ["U-1"], {"rearm_s": 2.0}),    # each reading re-arms
    ([(0.0, ["U-1"]), (0.1, ["U-1"])], ["U-1"], {"confirm_frames": 2}),                # confirmed on the 2nd
    ([(0.0, ["U-1"]), (0.1, []), (0.2, ["U-1"])], [], {"confirm_frames": 2}),          # not consecutive
    ([(0.0, []), (0.1, ["LOT 7731"])], [], {}),                                       # no label of ours
    ([(0.0, ["U-1", "U-2"])], [], {}),                                                # two units: malformed
])
def test_debounce(frames: list[tuple[float, list[str]]], expected: list[str], options: dict[str, float]) -> None:
    src = source(**options)
    triggers = [t for at, labels in frames
                if (t := src.process(frame(*labels), T0 + timedelta(seconds=at))) is not None]
    assert [t.unit_id for t in triggers] == expected
    assert len({t.trigger_id for t in triggers}) == len(triggers)


def test_the_trigger_names_the_order_and_the_first_frame_time() -> None:
    src = source(confirm_frames=2)
    assert src.process(frame("O-77/U-5"), T0) is None
    trigger = src.process(frame("O-77/U-5"), T0 + timedelta(seconds=0.1))
    assert trigger is not None
    assert (trigger.unit_id, trigger.order_id, trigger.channel, trigger.at) == ("U-5", "O-77", TriggerChannel.LABEL,
                                                                                T0)


def test_two_units_on_one_frame_are_counted_malformed() -> None:
    src = source()
    assert src.process(frame("U-1", "U-2"), T0) is None
    assert src.stats.malformed == 1 and src.stats.received == 0


def test_built_from_the_config_it_watches_the_cameras_newest_frames() -> None:
    """The running loop: frames of a belt (nothing, U-10 for a while, nothing, U-11) through latest_frame."""
    script = [([], 0.0), (["U-10"], 0.2), (["U-10"], 0.3), ([], 0.4), (["U-11"], 0.6), (["U-11"], 0.7)]
    images = [(frame(*labels, fmt="Code128"), T0 + timedelta(seconds=s)) for labels, s in script]
    position = {"i": 0}
    lock = threading.Lock()

    def latest_frame() -> tuple[np.ndarray, datetime] | None:
        with lock:
            return images[min(position["i"], len(images) - 1)]

    asked: list[str] = []

    def latest_frame_for(camera: str) -> Callable[[], tuple[np.ndarray, datetime] | None]:
        asked.append(camera)
        return latest_frame

    [src] = build_trigger_sources([{"kind": "label", "camera": "belt", "interval_ms": 2,
                                    "label": {"formats": ["Code128"], "pattern": r"(?P<unit>U-[0-9]+)"}}],
                                  station_id="st-1", latest_frame_for=latest_frame_for)
    assert isinstance(src, LabelTriggerSource) and asked == ["belt"]
    got = Collected()
    src.start(got)
    try:
        for i in range(len(images)):
            with lock:
                position["i"] = i
            assert wait_until(partial(lambda n: src.stats.polls >= n, i + 1)), src.stats  # each frame read once
        got.wait(2)
        src.answer(judged(got.triggers[0]))
        src.answer(unjudged(got.triggers[1], TriggerOutcome.UNKNOWN_UNIT, "no order lists U-11"))
    finally:
        src.close()
    assert got.units == ["U-10", "U-11"]
    assert [t.at for t in got.triggers] == [T0 + timedelta(seconds=0.2), T0 + timedelta(seconds=0.6)]
    assert src.stats.polls == len(images) and src.stats.answered == 2


def test_the_metrics_collector_reads_each_sources_stats() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from inspection.line.sources.metrics import TriggerSourceCollector

    src = source()
    src.process(frame("U-1"), T0)
    src.process(frame("U-1", "U-2"), T0 + timedelta(seconds=0.1))
    registry = CollectorRegistry()
    registry.register(TriggerSourceCollector(lambda: [src]))
    text = generate_latest(registry).decode()
    assert 'qcline_trigger_received_total{channel="label",source="label"} 1.0' in text
    assert 'qcline_trigger_malformed_total{channel="label",source="label"} 1.0' in text
    assert 'qcline_trigger_source_connected{channel="label",source="label"} 0.0' in text
