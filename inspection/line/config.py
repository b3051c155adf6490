"""The station configuration file: which cameras a line station holds open, how it binds their frames to
the units its triggers announce, and within which budgets it answers the line.

One YAML file per station (its path is ``QC_STATION_CONFIG``), read through ``inspection.safe_yaml``. Every
refusal is one ``ConfigError`` line naming the file, the key and its line (``station.yaml, line 9,
cameras[1].url: ...``), because the person reading it is a controls engineer at a cabinet, not a developer.

Example (``docs/station.example.yaml`` has the whole of it)::

    station: press-3
    capture: {policy: first}            # or {policy: burst, frames: 5} / {policy: window, window_ms: 150}
    budgets: {frame_wait_ms: 800, answer_within_ms: 1500}
    queue_max: 32
    cameras:
      - {name: top, url: "rtsp://10.0.0.21:554/stream1"}
      - {name: side, url: "usb:0", max_fps: 15, capture: {policy: burst, frames: 3}}
    triggers:
      - {kind: http}
      - {kind: modbus, host: 10.0.0.5, unit_register: 100}   # validated by inspection.line.sources

Trigger entries other than ``http`` are kept as plain mappings (``TriggerSpec``): the trigger source
factories (``inspection.line.sources.build_trigger_sources``) validate their own keys and say where.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection import safe_yaml
from inspection.errors import ConfigError
from inspection.ids import IdentifierError, check_identifier

MAX_CAMERAS = 16
"""Cameras one station holds open (each is a decoder thread and a ring of frames in memory)."""
MAX_RING = 64
MAX_BURST = 32
MAX_WINDOW_MS = 5000
MAX_TRIGGERS = 16
MAX_CONFIG_BYTES = 256 * 1024
TRIGGER_KINDS = ("http", "modbus", "opcua", "mqtt", "label")

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_VIEW = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class CapturePolicy(BaseModel):
    """Which frame of a view a trigger takes: the ``first`` captured at or after the trigger, or the sharpest
    (variance of the Laplacian) of a ``burst`` of ``frames`` frames, or of every frame in a ``window`` of
    ``window_ms`` after the trigger. A burst or window trades latency for a frame without motion blur."""

    model_config = _FROZEN

    policy: Literal["first", "burst", "window"] = "first"
    frames: int = Field(default=3, ge=1, le=MAX_BURST, description="Frames of a burst.")
    window_ms: float = Field(default=150.0, gt=0.0, le=MAX_WINDOW_MS, description="Length of a window.")


class Budgets(BaseModel):
    model_config = _FROZEN

    frame_wait_ms: float = Field(default=800.0, gt=0.0, le=60_000.0, description="How long after a trigger is "
                                 "taken up a view's frame is waited for; a view without one is recorded as a "
                                 "failed frame naming the camera, and the unit cannot PASS.")
    answer_within_ms: float = Field(default=1500.0, gt=0.0, le=120_000.0, description="The line's cycle budget: "
                                    "an HTTP trigger waits this long for its answer (then 202); answers later "
                                    "than this are counted as late.")


class Reconnect(BaseModel):
    model_config = _FROZEN

    min_s: float = Field(default=0.5, ge=0.0, le=60.0)
    max_s: float = Field(default=10.0, gt=0.0, le=600.0)

    @model_validator(mode="after")
    def _ordered(self) -> Reconnect:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s ({self.max_s:g}) must be >= min_s ({self.min_s:g})")
        return self


class CameraSpec(BaseModel):
    """One camera the station holds open. ``name`` is the view name the order profiles' ``required_views``
    use. ``url``: ``rtsp://`` / ``rtsps://`` / ``http(s)://`` stream, ``usb:N`` (device index N) or a video
    file path (replayed in a loop at its own frame rate, for commissioning and demos)."""

    model_config = _FROZEN

    name: str
    url: str = Field(min_length=1, max_length=2048)
    read: Literal["live", "replay"] | None = Field(default=None, description="live: drain the stream as it "
                                                    "comes; replay: read at the file's frame rate. Default: "
                                                    "replay for a file, live otherwise.")
    ring: int = Field(default=8, ge=1, le=MAX_RING, description="Latest frames kept for triggers to claim.")
    reconnect: Reconnect = Reconnect()
    max_fps: float | None = Field(default=None, gt=0.0, le=1000.0, description="Frames kept per second at most "
                                  "(the rest are read and skipped, counted as dropped).")
    clock_tolerance_ms: float = Field(default=20.0, ge=0.0, le=10_000.0, description="A frame stamped up to this "
                                      "long before a trigger still counts as after it (camera and PLC clocks "
                                      "differ).")
    timestamps: Literal["grab", "stream"] = Field(default="grab", description="grab: when the frame was read; "
                                                  "stream: the stream's own presentation times, anchored to the "
                                                  "grab clock (re-anchored when they drift past the tolerance).")
    capture: CapturePolicy | None = None
    open_timeout_s: float = Field(default=5.0, gt=0.0, le=120.0)
    read_timeout_s: float = Field(default=3.0, gt=0.0, le=120.0)

    @field_validator("name")
    @classmethod
    def _view_name(cls, value: str) -> str:
        if not _VIEW.match(value):
            raise ValueError("a camera name is a view name: 1-64 of A-Z a-z 0-9 _ . - (starting with a letter "
                             f"or digit), got {value!r}")
        return value

    @field_validator("url")
    @classmethod
    def _target(cls, value: str) -> str:
        text = value.strip()
        lower = text.lower()
        if "://" in text and not lower.startswith(("rtsp://", "rtsps://", "http://", "https://")):
            raise ValueError("a camera url is rtsp://, rtsps://, http(s)://, usb:N or a video file path")
        if lower.startswith("usb:") and not text[4:].isdigit():
            raise ValueError(f"usb camera must be usb:N with N the device index, got {text!r}")
        return text

    @property
    def target(self) -> str | int:
        """What ``cv2.VideoCapture`` opens: a device index for ``usb:N``, else the URL or path."""
        return int(self.url[4:]) if self.url.lower().startswith("usb:") else self.url

    @property
    def is_file(self) -> bool:
        return not isinstance(self.target, int) and "://" not in self.url

    @property
    def read_mode(self) -> Literal["live", "replay"]:
        return self.read or ("replay" if self.is_file else "live")


@dataclass(frozen=True)
class TriggerSpec:
    """One ``triggers:`` entry: its ``kind`` and the rest of its keys, validated by the source that reads them.
    ``where`` names the file, entry and line for that source's own error messages."""

    kind: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    where: str = ""


class _File(BaseModel):
    model_config = _FROZEN

    station: str = Field(min_length=1, max_length=128)
    capture: CapturePolicy = CapturePolicy()
    budgets: Budgets = Budgets()
    queue_max: int = Field(default=32, ge=1, le=1024, description="Triggers waiting to be handled; one more is "
                           "answered REJECTED (queue full), never dropped.")
    order_from_unit: str | None = Field(default=None, max_length=512, description="Regular expression with a "
                                        "named group 'order' that reads the order id from a unit id, for triggers "
                                        "that carry only the unit and units met for the first time.")
    cameras: Annotated[tuple[CameraSpec, ...], Field(max_length=MAX_CAMERAS)] = ()
    triggers: Annotated[tuple[dict[str, Any], ...], Field(max_length=MAX_TRIGGERS)] = ({"kind": "http"},)

    @field_validator("station")
    @classmethod
    def _station(cls, value: str) -> str:
        try:
            return check_identifier("station", value)
        except IdentifierError as e:
            raise ValueError(str(e)) from e

    @field_validator("order_from_unit")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as e:
            raise ValueError(f"not a regular expression: {e}") from e
        if "order" not in compiled.groupindex:
            raise ValueError("needs a named group (?P<order>...)")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> _File:
        names = [c.name for c in self.cameras]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"camera names must be distinct: {', '.join(twice)} appear more than once")
        for index, entry in enumerate(self.triggers):
            kind = entry.get("kind")
            if kind not in TRIGGER_KINDS:
                raise ValueError(f"triggers[{index}].kind must be one of {', '.join(TRIGGER_KINDS)}, got {kind!r}")
            if kind == "http" and set(entry) - {"kind"}:
                raise ValueError(f"triggers[{index}]: an http trigger takes no options (the service's "
                                 f"POST /v1/triggers), got {', '.join(sorted(set(entry) - {'kind'}))}")
        return self


@dataclass(frozen=True)
class StationConfig:
    """A validated station configuration (built by ``load_station_config`` or ``StationConfig.parse``)."""

    station: str
    cameras: tuple[CameraSpec, ...]
    capture: CapturePolicy
    budgets: Budgets
    queue_max: int
    triggers: tuple[TriggerSpec, ...]
    order_from_unit: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.cameras) > MAX_CAMERAS:
            raise ConfigError(f"a station holds at most {MAX_CAMERAS} cameras, got {len(self.cameras)}")

    def capture_for(self, camera: str) -> CapturePolicy:
        for spec in self.cameras:
            if spec.name == camera and spec.capture is not None:
                return spec.capture
        return self.capture

    def order_of_unit(self, unit_id: str) -> str | None:
        """The order id ``order_from_unit`` reads from ``unit_id``, or ``None``."""
        if not self.order_from_unit:
            return None
        found = re.search(self.order_from_unit, unit_id)
        order = found.group("order") if found else None
        return order or None

    @property
    def http_triggers(self) -> bool:
        return any(t.kind == "http" for t in self.triggers)

    @classmethod
    def parse(cls, text: str | bytes, *, origin: str = "station config") -> StationConfig:
        try:
            raw, lines = safe_yaml.load_with_lines(text, max_bytes=MAX_CONFIG_BYTES, max_depth=16,
                                                   max_nodes=20_000)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{origin}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{origin}: a station config is a mapping (station, cameras, triggers, ...), got "
                              f"{type(raw).__name__}")
        try:
            parsed = _File.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(first["loc"])
            raise ConfigError(f"{origin}, {_where(loc, lines)}: {first['msg'].removeprefix('Value error, ')}"
                              + (f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else "")) from exc
        triggers = tuple(
            TriggerSpec(kind=str(entry["kind"]),
                        options=MappingProxyType({k: v for k, v in entry.items() if k != "kind"}),
                        where=f"{origin}, {_where(('triggers', i), lines)}")
            for i, entry in enumerate(parsed.triggers))
        return cls(station=parsed.station, cameras=parsed.cameras, capture=parsed.capture, budgets=parsed.budgets,
                   queue_max=parsed.queue_max, triggers=triggers, order_from_unit=parsed.order_from_unit,
                   source=origin)


def _where(loc: tuple[Any, ...], lines: dict[tuple[str | int, ...], int]) -> str:
    """``line 9, cameras[1].url`` for a pydantic error location (the nearest enclosing line known)."""
    path = tuple(p for p in loc if isinstance(p, (str, int)))
    key = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "(top level)"
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"line {line}, {key}" if line is not None else key


def load_station_config(path: Path | str) -> StationConfig:
    """Read and validate a station file; every problem is one ``ConfigError`` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()[: MAX_CONFIG_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"cannot read the station config {path}: {exc.strerror or exc}") from exc
    config = StationConfig.parse(data, origin=str(path))
    cameras = tuple(c.model_copy(update={"url": str((path.parent / c.url).resolve())})
                    if c.is_file and not Path(c.url).is_absolute() else c for c in config.cameras)
    return dataclasses.replace(config, cameras=cameras)  # a replayed clip is found beside its config file


__all__ = ["MAX_CAMERAS", "MAX_RING", "TRIGGER_KINDS", "Budgets", "CameraSpec", "CapturePolicy", "Reconnect",
           "StationConfig", "TriggerSpec", "load_station_config"]
