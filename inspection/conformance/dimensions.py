"""Size of a panel against its order: px/mm per camera from a target of known size, then the panel's
minimum-area rectangle in millimetres.

The scale holds in the plane the target was held in (the conveyor surface); the camera is assumed
square to that plane with its lens distortion corrected upstream (or negligible over the panel), which
is how fixed line cameras above a belt are mounted. OpenCV does the image work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from inspection.conformance.colour import Roi, region
from inspection.errors import QCError


class CalibrationError(QCError):
    """A calibration image in which the target cannot be found or measured."""


class DimensionSpecError(QCError):
    """An order's dimensions that cannot be read as width x height in mm."""


_UNITS_TO_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def parse_dimensions(value: object) -> tuple[float, float]:
    """The order's panel size (width, height) in mm from ``"900x600x1.2 mm"``, ``"900 x 600"``,
    ``{width_mm, height_mm}`` or ``[900, 600]``; a third number (thickness) is not visible from above."""
    if isinstance(value, Mapping):
        try:
            return float(value["width_mm"]), float(value["height_mm"])
        except (KeyError, TypeError, ValueError) as e:
            raise DimensionSpecError(f"dimensions {dict(value)!r} need numeric width_mm and height_mm") from e
    if isinstance(value, list | tuple) and len(value) in (2, 3):
        try:
            return float(value[0]), float(value[1])
        except (TypeError, ValueError) as e:
            raise DimensionSpecError(f"dimensions {value!r} are not numbers (mm)") from e
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*[x\u00d7*]\s*(\d+(?:\.\d+)?)(?:\s*[x\u00d7*]\s*\d+(?:\.\d+)?)?\s*"
                             r"(mm|cm|m)?\s*", value)
        if match:
            factor = _UNITS_TO_MM[match[3] or "mm"]
            return float(match[1]) * factor, float(match[2]) * factor
    raise DimensionSpecError(f"dimensions {value!r} are not 'W x H [x T] mm' or {{width_mm, height_mm}}")


def _gray(image_bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)  # type: ignore[return-value]


def scale_from_checkerboard(image_bgr: npt.NDArray[np.uint8], inner_corners: tuple[int, int],
                            square_mm: float) -> float:
    """px/mm from a printed checkerboard of ``inner_corners`` (columns, rows) and ``square_mm`` squares.

    Corners are refined to sub-pixel precision; the scale is the mean spacing of neighbouring corners along
    rows and columns, so a slightly rotated board still measures right.
    """
    if square_mm <= 0:
        raise CalibrationError(f"square size must be positive, got {square_mm} mm")
    gray = _gray(image_bgr)
    found, corners = cv2.findChessboardCorners(gray, inner_corners,
                                               flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        raise CalibrationError(f"no checkerboard with {inner_corners[0]}x{inner_corners[1]} inner corners found")
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1), criteria)
    grid = corners.reshape(inner_corners[1], inner_corners[0], 2)
    steps = np.concatenate([np.linalg.norm(np.diff(grid, axis=1), axis=2).ravel(),
                            np.linalg.norm(np.diff(grid, axis=0), axis=2).ravel()])
    return float(np.mean(steps) / square_mm)


def _largest_shape(image_bgr: npt.NDArray[np.uint8]) -> tuple[tuple[float, float], tuple[float, float], float]:
    """The minimum-area rectangle of the largest blob that does not touch the image border.

    Otsu separates panel and background whichever is brighter; the blob touching the border is the
    background (or a panel cut off by the field of view, which cannot be measured either).
    """
    gray = _gray(image_bgr)
    h, w = gray.shape
    _, mask = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    best: tuple[float, np.ndarray] | None = None
    for candidate in (mask, cv2.bitwise_not(mask)):
        contours, _ = cv2.findContours(candidate, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            x, y, cw, ch = cv2.boundingRect(contour)
            if x <= 0 or y <= 0 or x + cw >= w or y + ch >= h:
                continue
            area = float(cv2.contourArea(contour))
            if best is None or area > best[0]:
                best = (area, contour)
    if best is None or best[0] < 0.01 * h * w:
        raise CalibrationError("no panel found: nothing stands out from the background inside the field of view")
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(best[1])
    # The contour runs through the centres of the edge pixels, so the minimum-area rectangle sits inside the
    # shape by up to half a pixel per side (half a pixel when square to the axes, less when rotated). The
    # number of pixels the shape covers estimates its area without that bias: grow both sides by the one
    # offset ``grow`` that makes (rw + grow) * (rh + grow) equal that area.
    filled = np.zeros((h, w), np.uint8)
    cv2.drawContours(filled, [best[1]], -1, 255, thickness=cv2.FILLED)
    area = float(np.count_nonzero(filled))
    total = rw + rh
    grow = (-total + float(np.sqrt(max(total * total - 4 * (rw * rh - area), 0.0)))) / 2
    grow = min(max(grow, 0.0), 1.5)
    return (cx, cy), (rw + grow, rh + grow), angle


def measure_extent_px(image_bgr: npt.NDArray[np.uint8], roi: Roi = (0.0, 0.0, 1.0, 1.0)) -> tuple[float, float]:
    """The panel's (long, short) side in pixels inside ``roi``."""
    _, (rw, rh), _ = _largest_shape(np.ascontiguousarray(region(image_bgr, roi)))
    return max(rw, rh), min(rw, rh)


def scale_from_reference(image_bgr: npt.NDArray[np.uint8], width_mm: float, height_mm: float) -> float:
    """px/mm from a rectangular reference plate of known size (the largest shape in the image)."""
    if width_mm <= 0 or height_mm <= 0:
        raise CalibrationError("reference plate sides must be positive (mm)")
    long_px, short_px = measure_extent_px(image_bgr)
    long_mm, short_mm = max(width_mm, height_mm), min(width_mm, height_mm)
    return float((long_px / long_mm + short_px / short_mm) / 2)


@dataclass(frozen=True)
class Scale:
    """A camera's px/mm in the conveyor plane, and how it was obtained."""

    px_per_mm: float
    method: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.px_per_mm) and self.px_per_mm > 0):
            raise ValueError(f"px_per_mm must be positive, got {self.px_per_mm}")


def measure_panel_mm(image_bgr: npt.NDArray[np.uint8], scale: Scale,
                     roi: Roi = (0.0, 0.0, 1.0, 1.0)) -> tuple[float, float]:
    """The panel's (long, short) side in millimetres."""
    long_px, short_px = measure_extent_px(image_bgr, roi)
    return long_px / scale.px_per_mm, short_px / scale.px_per_mm
