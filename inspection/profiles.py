"""Orders and their inspection profiles.

Each custom order names an inspection profile: what counts as a defect *for that order*. A high-gloss
lacquer door tolerates no scratch; a rustic oak door tolerates knots. Profiles are YAML, validated on
load, and versioned by the sha256 of their canonical form, so every verdict can name the exact rules
that made it even after the YAML file is edited.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection import safe_yaml
from inspection.errors import ProfileError
from inspection.ids import IdentifierError, check_identifier

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class ClassRule(BaseModel):
    """How one defect class is judged.

    A detection with ``confidence >= confidence`` *counts*. One with ``review_from <= conf < confidence``
    is uncertain and sends the frame to REVIEW. Below ``review_from`` it is ignored. A counted defect
    fails the frame when the class is ``critical``, when its box is larger than tolerated, or when more
    than ``max_count`` are counted (on a frame, and over the whole unit).
    """

    model_config = _FROZEN

    confidence: float = Field(0.5, ge=0.0, le=1.0)
    review_from: float | None = Field(None, ge=0.0, le=1.0)
    max_count: int = Field(0, ge=0)
    max_area_fraction: float | None = Field(None, gt=0.0, le=1.0)
    max_length_px: float | None = Field(None, gt=0.0)
    critical: bool = False
    ignore: bool = False

    @model_validator(mode="after")
    def _band_below_confidence(self) -> ClassRule:
        if self.review_from is not None and self.review_from > self.confidence:
            raise ValueError(f"review_from ({self.review_from}) must not exceed confidence ({self.confidence})")
        return self

    @property
    def review_threshold(self) -> float:
        return self.confidence if self.review_from is None else self.review_from


Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _ConformanceRule(BaseModel):
    """What every conformance rule shares: the order attribute holding the expected value, the cameras
    it is measured on, and what to conclude when the value is missing or cannot be measured."""

    model_config = _FROZEN

    name: str = Field("", max_length=64, description="Label in reports; defaults to the rule's kind.")
    views: tuple[str, ...] = Field((), description="Cameras the rule is measured on; empty: every camera.")
    attribute: str = Field("", max_length=128,
                           description="Order attribute with the expected value; dotted for nested (bom.handle).")
    unmeasurable: Literal["REVIEW", "FAIL"] = Field(
        "REVIEW", description="Verdict when the order lacks the value, the camera is not calibrated, or the "
        "frame cannot be measured: a person decides, the line is never silently passed.")

    def applies_to(self, camera_id: str) -> bool:
        return not self.views or camera_id in self.views


def _check_roi(roi: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    if not (roi[0] < roi[2] and roi[1] < roi[3]):
        raise ValueError(f"roi must be (x0, y0, x1, y1) fractions with x0 < x1 and y0 < y1, got {list(roi)}")
    return roi


Roi = Annotated[tuple[Fraction, Fraction, Fraction, Fraction], AfterValidator(_check_roi)]
"""A region of the frame as (x0, y0, x1, y1) fractions, checked once for every rule that has one."""


class ColourRule(_ConformanceRule):
    """CIEDE2000 between the region's measured CIELAB and the order's colour (Lab, #hex or a RAL code).

    ``delta_e <= max_delta_e`` passes, up to ``max_delta_e + review_margin`` goes to REVIEW, beyond fails.
    """

    kind: Literal["colour"] = "colour"
    attribute: str = "colour"
    roi: Roi = (0.3, 0.3, 0.7, 0.7)
    max_delta_e: float = Field(2.0, gt=0.0)
    review_margin: float = Field(0.0, ge=0.0)


class DimensionRule(_ConformanceRule):
    """The panel's minimum-area rectangle in mm (the camera's px/mm calibration) against the order's
    width x height: each side within ``tolerance_mm`` passes, up to ``tolerance_mm + review_margin_mm``
    goes to REVIEW, beyond fails. Sides are matched long to long, so the panel's orientation does not matter."""

    kind: Literal["dimensions"] = "dimensions"
    attribute: str = "dimensions"
    roi: Roi = (0.0, 0.0, 1.0, 1.0)
    tolerance_mm: float = Field(2.0, gt=0.0)
    review_margin_mm: float = Field(0.0, ge=0.0)


class PartCountRule(_ConformanceRule):
    """The number of detections of a part class (handle, hinge, hole) against the order's count, exactly.

    Detections at ``confidence`` or above count; ones in ``[review_from, confidence)`` are uncertain and send
    the frame to REVIEW when they could change the answer. A class counted as a part is not judged as a
    defect. ``attribute`` defaults to ``bom.<class_name>``.
    """

    kind: Literal["count"] = "count"
    class_name: str = Field(min_length=1, max_length=128)
    confidence: float = Field(0.5, ge=0.0, le=1.0)
    review_from: float | None = Field(None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _band(self) -> PartCountRule:
        if self.review_from is not None and self.review_from > self.confidence:
            raise ValueError(f"review_from ({self.review_from}) must not exceed confidence ({self.confidence})")
        return self

    @property
    def expected_attribute(self) -> str:
        return self.attribute or f"bom.{self.class_name}"


ConformanceRule = Annotated[ColourRule | DimensionRule | PartCountRule, Field(discriminator="kind")]


class Tiling(BaseModel):
    """Run large frames as overlapping tiles at the model's input size (``inspection.tiling``): small defects
    on a 2-5 MP panel keep their pixels instead of being shrunk into the model's input."""

    model_config = _FROZEN

    overlap: float = Field(0.2, ge=0.0, lt=0.9, description="Share of a tile its neighbour also covers.")
    min_side_px: int = Field(0, ge=0, description="Only tile frames whose longer side is at least this many "
                                                  "pixels (0: every frame; smaller frames go whole).")
    join_ios: float = Field(0.5, gt=0.0, le=1.0, description="Join boxes cut by a tile border when they "
                                                              "overlap by this share of the smaller one.")


class InspectionProfile(BaseModel):
    model_config = _FROZEN

    name: str = Field(min_length=1)
    description: str = ""
    default: ClassRule = ClassRule()
    classes: dict[str, ClassRule] = Field(default_factory=dict)
    required_views: tuple[str, ...] = ()
    missing_view_verdict: Literal["REVIEW", "FAIL"] = "REVIEW"
    failed_frame_verdict: Literal["REVIEW", "FAIL"] = "REVIEW"
    conformance: tuple[ConformanceRule, ...] = Field(
        (), description="Does the unit match its order (colour, size, part counts)? Values from the order.")
    tiling: Tiling | None = None

    @field_validator("required_views")
    @classmethod
    def _unique_views(cls, views: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(views)) != len(views) or any(not v for v in views):
            raise ValueError(f"required_views must be distinct non-empty names, got {list(views)}")
        return views

    def rule_for(self, class_name: str) -> ClassRule:
        return self.classes.get(class_name, self.default)

    @property
    def part_classes(self) -> frozenset[str]:
        """Classes counted as parts by a count rule: a handle is not a defect."""
        return frozenset(r.class_name for r in self.conformance if isinstance(r, PartCountRule))

    def canonical(self) -> dict[str, Any]:
        body = self.model_dump(mode="json")
        if not self.conformance:  # profiles without conformance rules keep the hash they always had
            body.pop("conformance")
        if body.get("tiling") is None:  # profiles without tiling keep the hash they had before it existed
            body.pop("tiling", None)
        return body

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON: equal rules give equal hashes, whatever the YAML looked like."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_mapping(cls, raw: object, *, origin: str = "profile") -> InspectionProfile:
        if not isinstance(raw, dict):
            raise ProfileError(f"{origin}: a profile must be a mapping, got {type(raw).__name__}")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors())
            raise ProfileError(f"{origin}: {problems}") from exc

    @classmethod
    def from_yaml(cls, text: str, *, origin: str = "profile") -> InspectionProfile:
        try:
            raw = safe_yaml.load(text)
        except yaml.YAMLError as exc:
            raise ProfileError(f"{origin}: YAML does not parse: {exc}") from exc
        return cls.from_mapping(raw, origin=origin)

    @classmethod
    def load(cls, path: Path) -> InspectionProfile:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ProfileError(f"cannot read profile {path}: {exc}") from exc
        return cls.from_yaml(text, origin=str(path))


class Order(BaseModel):
    """A customer's build-to-order unit specification and the profile it is inspected against."""

    model_config = _FROZEN

    id: str = Field(min_length=1, max_length=128)
    customer_ref: str = ""

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        try:  # look-alike ids (U+2010, full-width letters) would be other orders that read the same
            return check_identifier("order id", value)
        except IdentifierError as e:
            raise ValueError(str(e)) from e
    product: str = ""
    attributes: dict[str, Any] = Field(default_factory=dict)
    due_date: date | None = None
    profile: str = Field(min_length=1, description="Name of the inspection profile.")


class OrderBook(BaseModel):
    """The content of an orders file: profiles by name and the orders that use them."""

    model_config = _FROZEN

    profiles: dict[str, InspectionProfile]
    orders: tuple[Order, ...]


def load_order_book(path: Path) -> OrderBook:
    """Read an orders file (YAML or JSON): ``profiles`` (inline or file paths) and ``orders``.

    Profile paths are relative to the orders file. Every order must name a profile defined here;
    order ids must be unique. Errors name the file and the offending entry.
    """
    path = Path(path)
    try:
        raw = safe_yaml.load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read orders file {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: does not parse as YAML/JSON: {exc}") from exc
    if not isinstance(raw, dict) or "orders" not in raw:
        raise ProfileError(f"{path}: expected a mapping with 'orders' (and 'profiles')")
    profiles: dict[str, InspectionProfile] = {}
    for name, spec in (raw.get("profiles") or {}).items():
        if isinstance(spec, str):
            profile = InspectionProfile.load(path.parent / spec)
        else:
            profile = InspectionProfile.from_mapping(spec, origin=f"{path}: profiles.{name}")
        if profile.name != name:
            raise ProfileError(f"{path}: profile key {name!r} holds a profile named {profile.name!r}")
        profiles[name] = profile
    orders: list[Order] = []
    seen: set[str] = set()
    for index, item in enumerate(raw.get("orders") or []):
        try:
            order = Order.model_validate(item)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ProfileError(f"{path}: orders[{index}]: {problems}") from exc
        if order.id in seen:
            raise ProfileError(f"{path}: order id {order.id!r} appears twice")
        if order.profile not in profiles:
            raise ProfileError(f"{path}: order {order.id!r} names unknown profile {order.profile!r} "
                               f"(defined: {sorted(profiles)})")
        seen.add(order.id)
        orders.append(order)
    return OrderBook(profiles=profiles, orders=tuple(orders))
