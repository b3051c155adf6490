"""Part labels read from generated frames: QR, DataMatrix and Code 128, a region per camera, the text's
pattern, and what a missing or contradicting label does to the unit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from inspection.conformance import CameraCalibration
from inspection.errors import QCError
from inspection.identity import IdentityError, LabelSettings, check_identity, identify, label_image, read_labels
from inspection.pipeline import Inspector
from inspection.profiles import InspectionProfile, Order
from inspection.types import Detections, Frame, FrameVerdict, Verdict

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def frame_with(*labels: tuple[str, str, tuple[int, int]], size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A grey belt with each (text, format, (x, y)) label pasted at (x, y)."""
    image = np.full((size[1], size[0], 3), 150, np.uint8)
    for text, fmt, (x, y) in labels:
        label = label_image(text, fmt, scale=3)
        image[y:y + label.shape[0], x:x + label.shape[1]] = label
    return image


@pytest.mark.parametrize("fmt", ["QRCode", "DataMatrix", "Code128"])
def test_each_format_is_read(fmt: str) -> None:
    labels = read_labels(frame_with(("U-1005-A", fmt, (20, 20))), LabelSettings(formats=(fmt,)))
    assert [(lab.text, lab.unit_id) for lab in labels] == [("U-1005-A", "U-1005-A")]


def test_only_the_configured_formats_and_region_are_read() -> None:
    image = frame_with(("U-1", "QRCode", (20, 20)), ("U-2", "DataMatrix", (400, 300)))
    assert [lab.unit_id for lab in read_labels(image, LabelSettings(formats=("DataMatrix",)))] == ["U-2"]
    top_left = LabelSettings(formats=("QRCode", "DataMatrix"), roi=(0.0, 0.0, 0.5, 0.5))
    assert [lab.unit_id for lab in read_labels(image, top_left)] == ["U-1"]


def test_the_pattern_names_unit_and_order_and_filters_other_labels() -> None:
    image = frame_with(("ORD-24-1005/U-1005-A", "QRCode", (20, 20)), ("LOT 7731", "Code128", (20, 300)))
    settings = LabelSettings(pattern=r"(?P<order>ORD-[0-9-]+)/(?P<unit>U-[0-9A-Z-]+)")
    [label] = read_labels(image, settings)
    assert (label.unit_id, label.order_id) == ("U-1005-A", "ORD-24-1005")


@pytest.mark.parametrize(("raw", "message"), [
    ({"formats": ["Qr"]}, "unknown label format"), ({"pattern": "(.+)"}, "named group 'unit'"),
    ({"pattern": "(?P<unit>"}, "not a regular expression"), ({"roi": [0.5, 0, 0.4, 1]}, "x0 < x1"),
    ({"formats": []}, "at least one"),
])
def test_bad_label_settings_are_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(QCError, match=message):
        LabelSettings.parse(raw)


SETTINGS = LabelSettings(pattern=r"(?P<unit>U-[0-9A-Z-]+)", required=True)


@pytest.mark.parametrize(("labels", "unit", "outcome", "reason"), [
    ([("U-7", "QRCode", (20, 20))], "U-7", Verdict.PASS, "matches unit U-7"),
    ([("U-8", "QRCode", (20, 20))], "U-7", Verdict.REVIEW, "label says unit U-8, the frame was sent for unit U-7"),
    ([], "U-7", Verdict.REVIEW, "no readable"),
    ([("U-7", "QRCode", (20, 20)), ("U-9", "DataMatrix", (400, 300))], "U-7", Verdict.REVIEW, "different units"),
])
def test_check_identity(labels: list[tuple[str, str, tuple[int, int]]], unit: str, outcome: Verdict,
                        reason: str) -> None:
    result = check_identity(frame_with(*labels), unit_id=unit, order_id="O-1", settings=SETTINGS)
    assert result is not None and result.outcome is outcome and reason in result.reason


def test_a_label_is_optional_unless_required() -> None:
    optional = SETTINGS.model_copy(update={"required": False})
    assert check_identity(frame_with(), unit_id="U-7", order_id="O-1", settings=optional) is None


def test_a_contradicting_order_on_the_label_goes_to_review() -> None:
    settings = LabelSettings(pattern=r"(?P<order>O-\d+)/(?P<unit>U-\d+)")
    result = check_identity(frame_with(("O-2/U-7", "QRCode", (20, 20))), unit_id="U-7", order_id="O-1",
                            settings=settings)
    assert result is not None and result.outcome is Verdict.REVIEW and "label says order O-2" in result.reason


def test_identify_takes_unit_from_the_label_and_order_from_the_book() -> None:
    image = frame_with(("U-1005-A", "QRCode", (20, 20)))
    assert identify(image, SETTINGS, camera_id="top", order_of_unit={"U-1005-A": "ORD-5"}.get) == ("U-1005-A",
                                                                                                  "ORD-5")
    with pytest.raises(IdentityError, match="no order"):
        identify(image, SETTINGS, camera_id="top", order_of_unit=lambda _u: None)
    with pytest.raises(IdentityError, match="no readable"):
        identify(frame_with(), SETTINGS, camera_id="top", order_of_unit=lambda _u: "O")
    with pytest.raises(IdentityError, match="no label settings"):
        identify(image, None, camera_id="top", order_of_unit=lambda _u: "O")


class _Detector:
    model_sha256 = "d" * 64
    class_names = ("scratch",)

    def detect(self, images: Sequence[np.ndarray], confidence: float | None = None) -> list[Detections]:
        return [Detections.empty(self.class_names) for _ in images]


class _Orders:
    PROFILE = InspectionProfile.model_validate({"name": "plain"})

    def get_order(self, order_id: str) -> tuple[Order, InspectionProfile]:
        return Order(id=order_id, profile="plain"), self.PROFILE

    def unit_histories(self, unit_ids: Sequence[str]) -> dict[str, tuple[str, list[FrameVerdict]]]:
        return {}


class _Labels:
    def camera_calibration(self, camera_id: str) -> CameraCalibration | None:
        return CameraCalibration(camera_id, label=SETTINGS)


def test_a_frame_whose_label_contradicts_its_unit_sends_the_unit_to_review() -> None:
    inspector = Inspector(_Detector(), _Orders(), calibrations=_Labels())
    frames = [Frame(frame_with(("U-1", "QRCode", (20, 20))), "top", "U-1", "O-1", NOW),
              Frame(frame_with(("U-3", "QRCode", (20, 20))), "top", "U-2", "O-1", NOW)]
    verdicts = [o.result.verdict for o in inspector.inspect_frames(frames) if o.result is not None]
    assert [v.verdict for v in verdicts] == [Verdict.PASS, Verdict.REVIEW]
    assert "label says unit U-3, the frame was sent for unit U-2" in verdicts[1].reasons[0]
    assert verdicts[1].unit_id == "U-2"  # never silently relabelled
    assert inspector.summary.unit_verdicts["U-2"].verdict is Verdict.REVIEW
