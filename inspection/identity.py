"""Which unit is this? The part's label (QR, DataMatrix, 1-D barcode) read from the frame with zxing-cpp.

Per camera, ``LabelSettings`` say which formats to look for, in which region of the frame, and how the
label's text names the unit (and optionally its order): a regular expression with a ``unit`` group and an
optional ``order`` group. A frame sent without a unit id takes it from the label; a frame whose label
contradicts the unit id it was sent with is never silently relabelled: ``check_identity`` returns a
REVIEW result with both ids, which the rules fold into the frame's verdict.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import zxingcpp
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from inspection.errors import InvalidFrameError, QCError
from inspection.types import ConformanceResult, Verdict

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class IdentityError(InvalidFrameError):
    """A frame whose unit cannot be named: no readable label, several different ones, or an unknown unit."""


class LabelSettings(BaseModel):
    """How one camera reads part labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    formats: tuple[str, ...] = Field(("QRCode", "DataMatrix", "Code128"),
                                     description="zxing-cpp format names, e.g. QRCode, DataMatrix, Code128, EAN13.")
    roi: tuple[Fraction, Fraction, Fraction, Fraction] = (0.0, 0.0, 1.0, 1.0)
    pattern: str = Field(r"(?P<unit>.+)", max_length=256,
                         description="Regex over the label text with a 'unit' group and optionally an 'order' one.")
    required: bool = Field(False, description="A frame without a readable label goes to REVIEW.")

    @field_validator("formats")
    @classmethod
    def _known_formats(cls, formats: tuple[str, ...]) -> tuple[str, ...]:
        if not formats:
            raise ValueError("name at least one label format")
        for name in formats:
            try:
                zxingcpp.barcode_format_from_str(name)
            except ValueError as e:
                raise ValueError(f"unknown label format {name!r} (zxing-cpp names: QRCode, DataMatrix, Code128, "
                                 "EAN13, ...)") from e
        return formats

    @field_validator("pattern")
    @classmethod
    def _unit_group(cls, pattern: str) -> str:
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"pattern {pattern!r} is not a regular expression: {e}") from e
        if "unit" not in compiled.groupindex:
            raise ValueError(f"pattern {pattern!r} needs a named group 'unit', e.g. (?P<unit>U-[0-9A-Z-]+)")
        return pattern

    @field_validator("roi")
    @classmethod
    def _roi_ordered(cls, roi: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        if not (roi[0] < roi[2] and roi[1] < roi[3]):
            raise ValueError(f"roi must be (x0, y0, x1, y1) fractions with x0 < x1 and y0 < y1, got {list(roi)}")
        return roi

    @classmethod
    def parse(cls, raw: object) -> LabelSettings:
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            raise QCError("label settings: " + "; ".join(f"{'.'.join(map(str, x['loc'])) or '(root)'}: {x['msg']}"
                                                         for x in e.errors())) from e


@dataclass(frozen=True)
class Label:
    text: str
    format: str
    unit_id: str
    order_id: str | None


def read_labels(image_bgr: npt.NDArray[np.uint8], settings: LabelSettings) -> list[Label]:
    """Every label of the configured formats in the configured region whose text matches the pattern."""
    formats = zxingcpp.barcode_formats_from_str(",".join(settings.formats))
    h, w = image_bgr.shape[:2]
    x0, y0, x1, y1 = settings.roi
    crop = np.ascontiguousarray(image_bgr[round(y0 * h):max(round(y1 * h), round(y0 * h) + 1),
                                          round(x0 * w):max(round(x1 * w), round(x0 * w) + 1)])
    try:
        found = zxingcpp.read_barcodes(crop, formats=formats)
    except (RuntimeError, ValueError) as e:
        raise IdentityError(f"label reader failed: {e}") from e
    pattern = re.compile(settings.pattern)
    labels = []
    for barcode in found:
        match = pattern.fullmatch(barcode.text.strip())
        if match is None or not match["unit"]:
            continue
        order = match.groupdict().get("order") or None
        labels.append(Label(barcode.text, str(barcode.format), match["unit"][:128], order[:128] if order else None))
    return labels


def label_identity(image_bgr: npt.NDArray[np.uint8], settings: LabelSettings) -> Label | None:
    """The one unit the frame's labels name; ``None`` without a label; ``IdentityError`` if they disagree."""
    labels = read_labels(image_bgr, settings)
    units = {(lab.unit_id, lab.order_id) for lab in labels}
    if len(units) > 1:
        raise IdentityError("the frame shows labels of different units: "
                            + ", ".join(sorted(f"{u}" + (f" ({o})" if o else "") for u, o in units)))
    return labels[0] if labels else None


def identify(image_bgr: npt.NDArray[np.uint8], settings: LabelSettings | None, *, camera_id: str,
             order_of_unit: Callable[[str], str | None]) -> tuple[str, str]:
    """(unit id, order id) of a frame sent without a unit id: the label names the unit, and the order comes
    from the label's ``order`` group, else from the order book (``order_of_unit``). ``IdentityError`` says
    why when it cannot: the camera reads no labels, none is readable, or the unit is in no order."""
    if settings is None:
        raise IdentityError(f"camera {camera_id} has no label settings (qcline calibrate label): send unit_id "
                            "and order_id with the frame")
    label = label_identity(image_bgr, settings)
    if label is None:
        raise IdentityError(f"no readable {'/'.join(settings.formats)} label on the frame from {camera_id}, and no "
                            "unit_id was sent: the frame cannot be attributed to a unit")
    order_id = label.order_id or order_of_unit(label.unit_id)
    if not order_id:
        raise IdentityError(f"label names unit {label.unit_id}, which no order in the order book lists: send "
                            "order_id, or list the unit under its order's attributes.units")
    return label.unit_id, order_id


def check_identity(image_bgr: npt.NDArray[np.uint8], *, unit_id: str, order_id: str,
                   settings: LabelSettings) -> ConformanceResult | None:
    """The label against the unit (and order) the frame was sent for: PASS when they agree, REVIEW with both
    ids when they contradict (never a silent relabel), REVIEW when a required label is missing."""
    try:
        label = label_identity(image_bgr, settings)
    except IdentityError as e:
        return _identity(Verdict.REVIEW, "-", unit_id, f"identity: {e}; the frame was sent for unit {unit_id}")
    if label is None:
        if not settings.required:
            return None
        return _identity(Verdict.REVIEW, "no label", unit_id,
                         f"identity: no readable {'/'.join(settings.formats)} label; sent for unit {unit_id}")
    if label.unit_id != unit_id:
        return _identity(Verdict.REVIEW, label.unit_id, unit_id,
                         f"identity: label says unit {label.unit_id}, the frame was sent for unit {unit_id}")
    if label.order_id is not None and label.order_id != order_id:
        return _identity(Verdict.REVIEW, f"{label.unit_id} / {label.order_id}", f"{unit_id} / {order_id}",
                         f"identity: label says order {label.order_id}, the frame was sent for order {order_id}")
    return _identity(Verdict.PASS, label.unit_id, unit_id, f"identity: {label.format} label {label.text!r} "
                     f"matches unit {unit_id}")


def _identity(outcome: Verdict, measured: str, expected: str, reason: str) -> ConformanceResult:
    return ConformanceResult(kind="identity", name="label", outcome=outcome, measured=measured, expected=expected,
                             tolerance="exact", deviation=None, reason=reason)


def label_image(text: str, label_format: str = "QRCode", scale: int = 4) -> npt.NDArray[np.uint8]:
    """A label as a BGR image (for tests, demo frames, printing): zxing-cpp's own writer."""
    barcode = zxingcpp.create_barcode(text, zxingcpp.barcode_format_from_str(label_format))
    gray = np.asarray(zxingcpp.write_barcode_to_image(barcode, scale=scale), dtype=np.uint8)
    if gray.ndim == 3:
        gray = gray[..., 0]
    padded = np.pad(gray, 4 * scale, constant_values=255)  # the quiet zone a printed label has
    return np.ascontiguousarray(np.stack([padded] * 3, axis=-1))


def to_json(settings: LabelSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")
