"""Colour conformance on generated panels of exactly known colour, under a colour cast the calibration undoes."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.conformance.colour import (
    ColourSpecError,
    WhiteBalance,
    delta_e_2000,
    measure_lab,
    parse_colour,
    srgb_hex_to_lab,
    srgb_to_lab,
)
from inspection.conformance.synthetic import WHITE_TILE, panel, srgb8, tile_roi
from inspection.errors import QCError

CANVAS = (600, 400)
CENTRE = (0.4, 0.4, 0.6, 0.6)
CAST = (1.1, 1.0, 0.75)  # warm light: more red, less blue


@pytest.mark.parametrize(("first", "second", "expected"), [
    # G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference formula: implementation notes,
    # supplementary test data, and mathematical observations", Color Res. Appl. 30 (2005), table 1.
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
])
def test_delta_e_2000_matches_the_published_test_data(first: tuple[float, float, float],
                                                      second: tuple[float, float, float], expected: float) -> None:
    assert delta_e_2000(first, second) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize(("spec", "lab"), [
    ({"L": 50, "a": 10, "b": -5}, (50.0, 10.0, -5.0)),
    ([50, 10, -5], (50.0, 10.0, -5.0)),
    ("Lab(50, 10, -5)", (50.0, 10.0, -5.0)),
    ("lab(50 10 -5)", (50.0, 10.0, -5.0)),
    ("#FFFFFF", (100.0, 0.0, 0.0)),  # sRGB white is D65 white (to the precision of the sRGB matrix)
    ("RAL 7016 anthracite", srgb_hex_to_lab("#383E42")),
    ("ral7016", srgb_hex_to_lab("#383E42")),
    ("RAL 9005", srgb_hex_to_lab("#0E0E10")),
])
def test_order_colours_parse(spec: object, lab: tuple[float, float, float]) -> None:
    assert parse_colour(spec) == pytest.approx(lab, abs=0.01)


@pytest.mark.parametrize("spec", ["satin", "RAL 0000", "#12345", {"L": 50}, [1, 2], "", None, 7])
def test_unreadable_order_colours_say_so(spec: object) -> None:
    with pytest.raises(ColourSpecError):
        parse_colour(spec)


def _truth(lab: tuple[float, float, float]) -> tuple[float, float, float]:
    """The Lab of the 8-bit colour actually painted (the panel's exact colour before cast and noise)."""
    return srgb_to_lab(np.array(srgb8(lab)) / 255.0)


@pytest.mark.parametrize("painted", [(40.0, 20.0, -30.0), (25.8, -1.5, -3.3), (60.0, -40.0, 30.0),
                                     (80.0, 5.0, 60.0), (50.0, 0.0, 0.0)])
@pytest.mark.parametrize("ordered_offset", [(0.0, 0.0, 0.0), (1.0, 0.5, -0.5), (3.0, -4.0, 2.0)])
def test_measured_delta_e_is_within_half_a_unit_of_the_truth(painted: tuple[float, float, float],
                                                              ordered_offset: tuple[float, float, float]) -> None:
    image = panel(CANVAS, (300, 200), painted, cast=CAST, noise=2.0, seed=3)
    balance = WhiteBalance.from_patch(image, tile_roi(CANVAS), WHITE_TILE)
    ordered = tuple(p + o for p, o in zip(painted, ordered_offset, strict=True))
    measured = measure_lab(image, CENTRE, balance)
    true_delta = delta_e_2000(_truth(painted), ordered)  # type: ignore[arg-type]
    assert abs(delta_e_2000(measured, ordered) - true_delta) < 0.5  # type: ignore[arg-type]


def test_without_white_balance_the_cast_is_measured_as_a_colour_error() -> None:
    painted = (40.0, 20.0, -30.0)
    image = panel(CANVAS, (300, 200), painted, cast=CAST, noise=2.0, seed=3)
    assert delta_e_2000(measure_lab(image, CENTRE), _truth(painted)) > 3.0


def test_a_clipped_or_black_reference_patch_is_refused() -> None:
    white = np.full((64, 64, 3), 255, np.uint8)
    with pytest.raises(QCError, match="clipped"):
        WhiteBalance.from_patch(white, (0, 0, 1, 1), WHITE_TILE)
    with pytest.raises(QCError, match="too dark"):
        WhiteBalance.from_patch(np.zeros((64, 64, 3), np.uint8), (0, 0, 1, 1), WHITE_TILE)
