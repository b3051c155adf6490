"""Dimension conformance: px/mm from a checkerboard or reference plate, panels of exactly known size."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.conformance.dimensions import (
    CalibrationError,
    DimensionSpecError,
    Scale,
    measure_panel_mm,
    parse_dimensions,
    scale_from_checkerboard,
    scale_from_reference,
)
from inspection.conformance.synthetic import checkerboard, panel

PX_PER_MM = 1.5  # a 20 mm checkerboard square is 30 px


@pytest.mark.parametrize(("square_px", "square_mm"), [(30, 20.0), (45, 30.0), (25, 10.0)])
def test_checkerboard_gives_the_scale(square_px: int, square_mm: float) -> None:
    board = checkerboard((7, 5), square_px)
    assert scale_from_checkerboard(board, (7, 5), square_mm) == pytest.approx(square_px / square_mm, rel=2e-3)


def test_a_missing_checkerboard_is_a_calibration_error() -> None:
    with pytest.raises(CalibrationError, match="no checkerboard"):
        scale_from_checkerboard(np.full((200, 200, 3), 128, np.uint8), (7, 5), 20.0)


def test_reference_plate_gives_the_scale() -> None:
    plate = panel((800, 600), (300 * PX_PER_MM, 200 * PX_PER_MM), (85.0, 0.0, 0.0), angle_deg=4, tile=False)
    assert scale_from_reference(plate, 300, 200) == pytest.approx(PX_PER_MM, rel=3e-3)


@pytest.mark.parametrize(("width_mm", "height_mm", "angle"), [
    (900, 600, 0.0), (900, 600, 3.5), (600, 900, 12.0), (450, 450, 30.0), (1200, 250, -2.0), (333.3, 222.2, 7.0),
])
def test_panel_size_within_a_millimetre_at_the_calibrated_scale(width_mm: float, height_mm: float,
                                                                angle: float) -> None:
    scale = Scale(scale_from_checkerboard(checkerboard((7, 5), 30), (7, 5), 20.0))
    image = panel((2100, 1900), (width_mm * PX_PER_MM, height_mm * PX_PER_MM), (60.0, 30.0, 20.0),
                  angle_deg=angle, noise=3.0, seed=5)
    long_mm, short_mm = measure_panel_mm(image, scale)
    assert abs(long_mm - max(width_mm, height_mm)) < 1.0
    assert abs(short_mm - min(width_mm, height_mm)) < 1.0


def test_a_panel_cut_off_by_the_frame_cannot_be_measured() -> None:
    image = panel((400, 300), (500, 200), (60.0, 30.0, 20.0), tile=False)  # wider than the frame
    with pytest.raises(CalibrationError, match="no panel"):
        measure_panel_mm(image, Scale(1.0))


@pytest.mark.parametrize(("spec", "expected"), [
    ("900x600x1.2 mm", (900.0, 600.0)), ("900 x 600", (900.0, 600.0)), ("90x60 cm", (900.0, 600.0)),
    ({"width_mm": 1800, "height_mm": 450}, (1800.0, 450.0)), ([1000, 2000], (1000.0, 2000.0)),
])
def test_order_dimensions_parse(spec: object, expected: tuple[float, float]) -> None:
    assert parse_dimensions(spec) == expected


@pytest.mark.parametrize("spec", ["big", "900", {"width_mm": 1}, None, "900 by 600"])
def test_unreadable_dimensions_say_so(spec: object) -> None:
    with pytest.raises(DimensionSpecError):
        parse_dimensions(spec)
