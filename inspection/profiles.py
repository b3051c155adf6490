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
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection.errors import ProfileError

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
    tiling: Tiling | None = None

    @field_validator("required_views")
    @classmethod
    def _unique_views(cls, views: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(views)) != len(views) or any(not v for v in views):
            raise ValueError(f"required_views must be distinct non-empty names, got {list(views)}")
        return views

    def rule_for(self, class_name: str) -> ClassRule:
        return self.classes.get(class_name, self.default)

    def canonical(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data.get("tiling") is None:  # profiles without tiling keep the hash they had before it existed
            data.pop("tiling", None)
        return data

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
            raw = yaml.safe_load(text)
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
        raw = yaml.safe_load(path.read_text())
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
