"""What the line hears: MQTT topics and the JSON payloads of unit verdicts, frame events and station status.

Pure functions of the typed records, so the schema files under ``docs/schemas/`` and these builders are
checked against each other by a test. Payloads carry the raw ids; topics carry them escaped (see
``topic_level``), because MQTT reserves ``/``, ``+`` and ``#`` inside topic names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from inspection.errors import ConfigError
from inspection.types import FrameFailure, FrameResult, UnitVerdict

UNIT_VERDICT_SCHEMA = "qcline.unit-verdict/1"
FRAME_EVENT_SCHEMA = "qcline.frame-event/1"
STATION_STATUS_SCHEMA = "qcline.station-status/1"

_ESCAPE = {"%": "%25", "/": "%2F", "+": "%2B", "#": "%23", "\x00": "%00"}


def topic_level(value: str) -> str:
    """One topic level holding an id: ``%``, ``/``, ``+``, ``#`` and NUL are percent-encoded (as in URLs), and
    a leading ``$`` (reserved for broker topics) becomes ``%24``; ``urllib.parse.unquote`` restores the id."""
    escaped = "".join(_ESCAPE.get(ch, ch) for ch in value)
    if escaped.startswith("$"):
        escaped = "%24" + escaped[1:]
    return escaped or "%00"


def check_prefix(prefix: str) -> str:
    """A configured prefix may have several levels (``plant1/qcline``) but no wildcards or empty levels."""
    prefix = prefix.strip()
    if not prefix or any(ch in prefix for ch in "+#\x00") or "" in prefix.split("/") or prefix.startswith("$"):
        raise ConfigError(f"QC_MQTT_TOPIC_PREFIX {prefix!r} must be non-empty levels without +, #, $ or //")
    return prefix


class Topics:
    """Every topic of one station, under ``<prefix>/<station>/``."""

    def __init__(self, prefix: str, station_id: str) -> None:
        self.base = f"{check_prefix(prefix)}/{topic_level(station_id)}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def unit_verdict(self, unit_id: str) -> str:
        return f"{self.base}/units/{topic_level(unit_id)}/verdict"

    def frame_event(self, unit_id: str, camera_id: str) -> str:
        return f"{self.base}/units/{topic_level(unit_id)}/frames/{topic_level(camera_id)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


def unit_verdict_payload(verdict: UnitVerdict, station_id: str) -> dict[str, object]:
    """The MES's record of a unit. ``model_sha256`` is the model of the unit's latest frame; ``models`` lists
    every model that judged one of its frames (a hot swap can fall inside a unit)."""
    frames = verdict.frames
    models = list(dict.fromkeys(f.model_sha256 for f in frames))
    return {
        "schema": UNIT_VERDICT_SCHEMA,
        "event_id": str(uuid.uuid4()),
        "station_id": station_id,
        "time": _now(),
        "unit_id": verdict.unit_id,
        "order_id": verdict.order_id,
        "verdict": verdict.verdict.value,
        "reasons": list(verdict.reasons),
        "complete": verdict.complete,
        "missing_views": list(verdict.missing_views),
        "frame_count": len(frames),
        "cameras": sorted({f.camera_id for f in frames}),
        "model_sha256": frames[-1].model_sha256 if frames else "",
        "models": models,
        "profile_hash": frames[-1].profile_hash if frames else "",
    }


def frame_event_payload(result: FrameResult, station_id: str) -> dict[str, object]:
    v = result.verdict
    return {
        "schema": FRAME_EVENT_SCHEMA,
        "event_id": str(uuid.uuid4()),
        "station_id": station_id,
        "time": _now(),
        "unit_id": v.unit_id,
        "order_id": v.order_id,
        "camera_id": v.camera_id,
        "verdict": v.verdict.value,
        "reasons": list(v.reasons),
        "findings": [f.to_json() for f in v.findings],
        "error": v.error,
        "unreadable": isinstance(result.frame, FrameFailure),
        "frame_sha256": v.frame_sha256,
        "captured_at": _iso(v.captured_at),
        "model_sha256": v.model_sha256,
        "profile_hash": v.profile_hash,
    }


def status_payload(station_id: str, state: str, model_sha256: str | None) -> dict[str, object]:
    return {"schema": STATION_STATUS_SCHEMA, "station_id": station_id, "state": state,
            "model_sha256": model_sha256, "time": _now()}


def encode(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
