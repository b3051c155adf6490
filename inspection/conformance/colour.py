"""Colour of a panel against its order: CIELAB measurement on a region, CIEDE2000 against the order's colour.

The camera is treated as an sRGB device (what industrial colour cameras deliver after their own
debayering and gamma). A per-camera white balance, taken from a reference patch of known colour under
the line's light, corrects the illuminant's cast (a von Kries diagonal in linear RGB) before the pixels
become XYZ (D65) and CIELAB. Conversions and ΔE00 come from colour-science, the maintained reference
implementation, rather than a hand-written formula.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inspection.errors import QCError

PALETTE_FILE = Path(__file__).resolve().parent / "ral_classic.csv"
MAX_SAMPLES = 65_536
"""Pixels of a region averaged at most (evenly spread): bounded time on any camera resolution."""

Lab = tuple[float, float, float]
Roi = tuple[float, float, float, float]
"""A region as fractions of the frame: (x0, y0, x1, y1), each in [0, 1]."""


class ColourSpecError(QCError):
    """An order's colour that cannot be read as Lab, hex or a palette name."""


def _colour() -> Any:
    # colour-science takes over a second to import: only stations whose profiles measure colour pay it.
    import colour

    return colour


def warm_up() -> None:
    """Import colour-science now (a long-running station calls this in the background at start), so the first
    unit whose order measures colour does not pay the import inside its answer to the line."""
    _colour()


@cache
def palette(path: Path = PALETTE_FILE) -> dict[str, Lab]:
    """Palette code (upper case, e.g. ``RAL 7016``) -> Lab (D65). L,a,b columns win over the hex."""
    entries: dict[str, Lab] = {}
    with path.open(newline="") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        for row in rows:
            code = " ".join(row["code"].upper().split())
            if row.get("L") and row.get("a") and row.get("b"):
                entries[code] = (float(row["L"]), float(row["a"]), float(row["b"]))
            else:
                entries[code] = srgb_hex_to_lab(row["hex"])
    return entries


def srgb_hex_to_lab(value: str) -> Lab:
    text = value.strip().lstrip("#")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", text):
        raise ColourSpecError(f"colour {value!r} is not a #RRGGBB hex colour")
    rgb = np.array([int(text[i:i + 2], 16) for i in (0, 2, 4)], np.float64) / 255.0
    return srgb_to_lab(rgb)


def srgb_to_lab(rgb: npt.ArrayLike) -> Lab:
    """sRGB (non-linear, 0..1) -> CIELAB (D65, 2°)."""
    c = _colour()
    linear = c.models.eotf_sRGB(np.asarray(rgb, np.float64))
    return linear_rgb_to_lab(linear)


def linear_rgb_to_lab(linear: npt.ArrayLike) -> Lab:
    c = _colour()
    srgb = c.RGB_COLOURSPACES["sRGB"]
    xyz = c.RGB_to_XYZ(np.asarray(linear, np.float64), srgb, apply_cctf_decoding=False)
    lab = c.XYZ_to_Lab(xyz, srgb.whitepoint)
    return (float(lab[0]), float(lab[1]), float(lab[2]))


def lab_to_srgb(lab: Lab) -> npt.NDArray[np.float64]:
    """CIELAB (D65) -> sRGB (non-linear, 0..1, clipped): for drawing test panels and demo frames."""
    c = _colour()
    srgb = c.RGB_COLOURSPACES["sRGB"]
    xyz = c.Lab_to_XYZ(np.asarray(lab, np.float64), srgb.whitepoint)
    linear = c.XYZ_to_RGB(xyz, srgb, apply_cctf_encoding=False)
    return np.clip(c.models.eotf_inverse_sRGB(np.clip(linear, 0, 1)), 0, 1)


def delta_e_2000(first: Lab, second: Lab) -> float:
    """CIEDE2000 colour difference (kL = kC = kH = 1)."""
    return float(_colour().delta_E(np.asarray(first), np.asarray(second), method="CIE 2000"))


def parse_colour(value: object, *, palette_path: Path = PALETTE_FILE) -> Lab:
    """An order's colour as Lab: ``{L, a, b}``, ``[L, a, b]``, ``"Lab(L, a, b)"``, ``"#RRGGBB"`` or a palette
    code (``"RAL 7016"``, optionally followed by its name: ``"RAL 7016 anthracite"``)."""
    if isinstance(value, Mapping):
        try:
            return (float(value["L"]), float(value["a"]), float(value["b"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ColourSpecError(f"colour {dict(value)!r} needs numeric L, a and b") from e
    if isinstance(value, list | tuple) and len(value) == 3:
        try:
            return (float(value[0]), float(value[1]), float(value[2]))
        except (TypeError, ValueError) as e:
            raise ColourSpecError(f"colour {value!r} is not three numbers L, a, b") from e
    if not isinstance(value, str) or not value.strip():
        raise ColourSpecError(f"colour {value!r} is not Lab, #RRGGBB or a palette code such as 'RAL 7016'")
    text = value.strip()
    lab = re.fullmatch(r"(?i)lab\s*\(\s*([-+\d.eE]+)\s*[, ]\s*([-+\d.eE]+)\s*[, ]\s*([-+\d.eE]+)\s*\)", text)
    if lab:
        return (float(lab[1]), float(lab[2]), float(lab[3]))
    if text.startswith("#"):
        return srgb_hex_to_lab(text)
    code = re.match(r"(?i)(RAL)\s*(\d{4})\b", text)
    if code:
        key = f"RAL {code[2]}"
        known = palette(palette_path)
        if key not in known:
            raise ColourSpecError(f"colour {value!r}: {key} is not in the palette {palette_path.name}")
        return known[key]
    raise ColourSpecError(f"colour {value!r} is not Lab(L, a, b), #RRGGBB or a palette code such as 'RAL 7016'")


def region(image: npt.NDArray[np.uint8], roi: Roi) -> npt.NDArray[np.uint8]:
    """The pixels of ``roi`` (fractions of the frame); at least one pixel."""
    h, w = image.shape[:2]
    x0, y0 = round(roi[0] * w), round(roi[1] * h)
    x1, y1 = max(x0 + 1, round(roi[2] * w)), max(y0 + 1, round(roi[3] * h))
    return image[y0:min(y1, h), x0:min(x1, w)]


def mean_linear_rgb(image_bgr: npt.NDArray[np.uint8], roi: Roi) -> npt.NDArray[np.float64]:
    """Mean linear RGB of a region, in 0..1, after dropping the 5 % darkest and brightest pixels per channel
    (specular glints, dust) so one reflection does not move the mean."""
    pixels = region(image_bgr, roi).reshape(-1, 3)
    if len(pixels) > MAX_SAMPLES:  # a regular subsample: the mean of a flat panel needs no million pixels
        pixels = pixels[:: len(pixels) // MAX_SAMPLES + 1]
    linear = _srgb_lut()[pixels[:, ::-1]]
    lo, hi = np.percentile(linear, [5, 95], axis=0)
    means = []
    for ch in range(3):
        values = linear[:, ch]
        kept = values[(values >= lo[ch]) & (values <= hi[ch])]
        means.append(float(np.mean(kept if kept.size else values)))
    return np.array(means)


@cache
def _srgb_lut() -> npt.NDArray[np.float64]:
    """The sRGB decoding of each 8-bit code value: a table lookup per pixel instead of a power per pixel."""
    return np.asarray(_colour().models.eotf_sRGB(np.arange(256) / 255.0), np.float64)


@dataclass(frozen=True)
class WhiteBalance:
    """Per-channel gains in linear RGB that map the reference patch, as seen, onto its known colour."""

    gains: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.gains) != 3 or not all(np.isfinite(g) and 0.05 < g < 20 for g in self.gains):
            raise ValueError(f"white-balance gains must be three finite values in (0.05, 20), got {self.gains}")

    @classmethod
    def identity(cls) -> WhiteBalance:
        return cls((1.0, 1.0, 1.0))

    @classmethod
    def from_patch(cls, image_bgr: npt.NDArray[np.uint8], roi: Roi, reference: Lab) -> WhiteBalance:
        """Gains from a patch of known colour (a grey card or white tile) seen under the line's light."""
        seen = mean_linear_rgb(image_bgr, roi)
        c = _colour()
        srgb = c.RGB_COLOURSPACES["sRGB"]
        target = c.XYZ_to_RGB(c.Lab_to_XYZ(np.asarray(reference), srgb.whitepoint), srgb, apply_cctf_encoding=False)
        if np.any(seen < 1e-4) or np.any(target <= 0):
            raise QCError("reference patch is too dark (or the reference colour has no component in a channel) "
                          "to calibrate white balance: use a light neutral patch")
        if np.mean(np.any(region(image_bgr, roi) >= 254, axis=-1)) > 0.01:
            raise QCError("reference patch is clipped (saturated pixels): lower the exposure and calibrate again")
        gains = target / seen
        return cls((float(gains[0]), float(gains[1]), float(gains[2])))

    def to_json(self) -> dict[str, Any]:
        return {"gains": list(self.gains)}


def measure_lab(image_bgr: npt.NDArray[np.uint8], roi: Roi, balance: WhiteBalance | None = None) -> Lab:
    """The region's colour in CIELAB (D65), white-balanced with the camera's calibration."""
    linear = mean_linear_rgb(image_bgr, roi)
    if balance is not None:
        linear = linear * np.array(balance.gains)
    return linear_rgb_to_lab(linear)
