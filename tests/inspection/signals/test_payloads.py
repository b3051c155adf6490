from __future__ import annotations

from urllib.parse import unquote

import jsonschema
import pytest

from inspection.errors import ConfigError
from inspection.signals.payloads import (
    Topics,
    check_prefix,
    frame_event_payload,
    status_payload,
    topic_level,
    unit_verdict_payload,
)
from inspection.types import FrameFailure, FrameResult, Verdict
from tests.inspection.signals.records import MODEL, PROFILE, frame_result, frame_verdict, unit_verdict
from tests.inspection.signals.schemas import validate


@pytest.mark.parametrize(("raw", "escaped"), [
    ("U-1", "U-1"),
    ("cab/42", "cab%2F42"),
    ("a+b", "a%2Bb"),
    ("#7", "%237"),
    ("100%", "100%25"),
    ("$SYS", "%24SYS"),
    ("x$y", "x$y"),
    ("nul\x00", "nul%00"),
    ("Küche 3", "Küche 3"),
    ("", "%00"),
])
def test_topic_level_escapes_what_mqtt_reserves(raw: str, escaped: str) -> None:
    assert topic_level(raw) == escaped
    level = topic_level(raw)
    assert not set(level) & {"/", "+", "#", "\x00"}
    if raw:
        assert unquote(level) == raw


def test_topics_put_the_escaped_unit_id_under_prefix_and_station() -> None:
    topics = Topics("plant1/qcline", "line 3/st+1")
    assert topics.status == "plant1/qcline/line 3%2Fst%2B1/status"
    assert topics.unit_verdict("W/12#3") == "plant1/qcline/line 3%2Fst%2B1/units/W%2F12%233/verdict"
    assert topics.frame_event("W-1", "top") == "plant1/qcline/line 3%2Fst%2B1/units/W-1/frames/top"


@pytest.mark.parametrize("bad", ["", "qc/#", "qc/+/x", "qc//x", "/qc", "$SYS/qc", "qc/"])
def test_prefix_with_wildcards_or_empty_levels_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="QC_MQTT_TOPIC_PREFIX"):
        check_prefix(bad)


@pytest.mark.parametrize(("verdict", "missing"), [
    (Verdict.PASS, ()), (Verdict.FAIL, ()), (Verdict.REVIEW, ("back",)), (Verdict.FAIL, ("back", "left")),
])
def test_unit_verdict_payload_matches_its_schema(verdict: Verdict, missing: tuple[str, ...]) -> None:
    payload = unit_verdict_payload(unit_verdict("U/1", verdict, missing=missing), "st-1")
    validate("unit-verdict", payload)
    assert payload["unit_id"] == "U/1" and payload["verdict"] == verdict.value
    assert payload["model_sha256"] == MODEL and payload["profile_hash"] == PROFILE
    assert payload["missing_views"] == list(missing) and payload["complete"] is (not missing)
    assert payload["frame_count"] == 2 and payload["cameras"] == ["side", "top"]


def test_schema_rejects_a_payload_without_unit_id() -> None:
    payload = unit_verdict_payload(unit_verdict("U-1", Verdict.FAIL), "st-1")
    del payload["unit_id"]
    with pytest.raises(jsonschema.ValidationError, match="unit_id"):
        validate("unit-verdict", payload)


def test_unit_payload_names_every_model_of_a_unit_judged_across_a_swap() -> None:
    v = unit_verdict("U-1")
    swapped = type(v)(unit_id=v.unit_id, order_id=v.order_id, verdict=v.verdict,
                      frames=(v.frames[0], frame_verdict("U-1", "side", model="d" * 64)), reasons=())
    payload = unit_verdict_payload(swapped, "st-1")
    assert payload["model_sha256"] == "d" * 64 and payload["models"] == [MODEL, "d" * 64]


def test_frame_event_payloads_match_their_schema() -> None:
    judged = frame_event_payload(frame_result("U-1"), "st-1")
    validate("frame-event", judged)
    findings = judged["findings"]
    assert isinstance(findings, list) and findings[0]["class"] == "scratch" and judged["unreadable"] is False
    v = frame_verdict("U-2", "top", Verdict.FAIL)
    failure = FrameFailure(camera_id="top", unit_id="U-2", order_id="O-1", captured_at=v.captured_at,
                           source="cam", error="truncated JPEG")
    unreadable = frame_event_payload(FrameResult(failure, None, v), "st-1")
    validate("frame-event", unreadable)
    assert unreadable["unreadable"] is True


@pytest.mark.parametrize(("state", "model"), [("online", MODEL), ("offline", None)])
def test_status_payload_matches_its_schema(state: str, model: str | None) -> None:
    validate("station-status", status_payload("st-1", state, model))
