"""The drills' bookkeeping: the audit that decides "lost" and "duplicated", the backlog readers, the slope."""

from __future__ import annotations

import pytest

from drills import _harness as h


def _record(seq: int, acked: bool) -> h.FrameRecord:
    r = h.FrameRecord(0, seq, f"k-{seq}", f"DR-x-c0-{seq}", "top")
    r.acked = acked
    return r


def test_audit_counts_missing_duplicated_and_unacknowledged_rows() -> None:
    records = [_record(0, True), _record(1, True), _record(2, False), _record(3, True)]
    rows = {("DR-x-c0-0", "top"): 1, ("DR-x-c0-1", "top"): 3, ("DR-x-c0-2", "top"): 1}
    figures = h.audit(records, rows)
    assert figures["acknowledged"] == 3
    assert figures["missing"] == 1 and figures["missing_samples"] == ["k-3"]
    assert figures["duplicated"] == 2
    assert figures["stored_but_not_acknowledged"] == 1
    assert figures["stored_rows"] == 5
    assert h.audit(records[:2], {("DR-x-c0-0", "top"): 1, ("DR-x-c0-1", "top"): 1})["missing"] == 0


def test_summarize_counts_attempts_by_status() -> None:
    r = _record(0, True)
    r.attempts = [h.Attempt(0, 0.1, h.STATUS_DOWN, "ConnectError"), h.Attempt(1, 0.1, 409, "already judged"),
                  h.Attempt(2, 0.1, 200)]
    s = h.summarize([r, _record(1, False)])
    assert s["attempts_by_status"] == {"200": 1, "409": 1, "no_answer": 1}
    assert (s["frames"], s["acknowledged"], s["retried_frames"], s["conflict_409_frames"]) == (2, 1, 1, 1)
    assert h.error_samples([r]) == ["409: already judged"]


@pytest.mark.parametrize(("state", "expected"), [
    ({"ready": True, "sha256": "abc"}, None),
    ({"status": "degraded", "backlog": 12}, 12),
    ({"status": "ok", "outbox": {"backlog": 0, "oldest_age_s": 0.0}}, 0),
    ({"outbox": {"enabled": True, "frames": 7}}, 7),
    ({"station": {"outbox_pending": 3}}, 3),
    ({"outbox": True}, None),
    ("not json", None),
])
def test_backlog_from_readyz(state: object, expected: int | None) -> None:
    assert h.backlog_from_readyz(state) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("qcline_batch_size_sum 3.0\nqcline_frames_total 10.0\n", None),
    ("qcline_outbox_backlog 12.0\nqcline_outbox_backlog_age_seconds 30.0\nqcline_outbox_bytes 1e6\n", 12),
    ('qcline_outbox_pending{kind="result"} 3.0\nqcline_outbox_pending{kind="evidence"} 1.0\n', 4),
    ("qcline_outbox_size 0.0\n", 0),
])
def test_backlog_from_metrics(text: str, expected: int | None) -> None:
    assert h.backlog_from_metrics(text) == expected


def test_linear_slope() -> None:
    assert h.linear_slope([0, 1, 2, 3], [10, 12, 14, 16]) == pytest.approx(2.0)
    assert h.linear_slope([0, 1, 2], [5, 5, 5]) == pytest.approx(0.0)
    assert h.linear_slope([1], [1]) is None
    assert h.linear_slope([2, 2], [1, 3]) is None
