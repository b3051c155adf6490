"""``ResultsStore`` on SQLite and PostgreSQL: orders, units, frame results, records and the report."""

from __future__ import annotations

from datetime import UTC, date

import pytest

from inspection.errors import ConflictError, NotFoundError, QCError
from inspection.profiles import InspectionProfile
from inspection.store import ResultsStore
from inspection.store.repository import FAILURE_KEY_PREFIX
from inspection.types import Verdict
from tests.inspection.store.factories import (
    GLOSS,
    MODEL_SHA,
    RUSTIC,
    book,
    failure,
    finding,
    order,
    result,
    standard_book,
)

# -- orders and profiles -------------------------------------------------------------------------------------


def test_import_creates_orders_and_is_idempotent(store: ResultsStore) -> None:
    first = store.import_order_book(standard_book())
    assert first == {"created": 2, "updated": 0, "unchanged": 0, "profiles_added": 2}
    again = store.import_order_book(standard_book())
    assert again == {"created": 0, "updated": 0, "unchanged": 2, "profiles_added": 0}
    assert [o.id for o in store.list_orders()] == ["ORD-1", "ORD-2"]


def test_get_order_round_trips_fields_and_profile(store: ResultsStore) -> None:
    detailed = order("ORD-9", "gloss", attributes={"finish": "high-gloss", "size": [2100, 900]},
                     due_date="2025-12-01")
    store.import_order_book(book(detailed))
    got, profile = store.get_order("ORD-9")
    assert got == detailed
    assert got.due_date == date(2025, 12, 1)
    assert profile == GLOSS
    assert profile.content_hash == GLOSS.content_hash
    assert store.get_profile(GLOSS.content_hash) == GLOSS


def test_profile_change_moves_the_order_but_not_its_history(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    store.record_frame_results([result("U1", seq=1)])
    stricter = GLOSS.model_copy(update={"description": "no scratch at all, v2"})
    counts = store.import_order_book(book(order("ORD-1", "gloss"), order("ORD-2", "rustic"),
                                          profiles=(stricter, RUSTIC)))
    assert counts == {"created": 0, "updated": 1, "unchanged": 1, "profiles_added": 1}
    _, now = store.get_order("ORD-1")
    assert now.content_hash == stricter.content_hash != GLOSS.content_hash
    assert store.frame_verdicts("U1")[0].profile_hash == GLOSS.content_hash
    assert store.get_profile(GLOSS.content_hash) == GLOSS  # the old version stays readable


@pytest.mark.parametrize("change", [{"customer_ref": "other"}, {"product": "window"},
                                    {"attributes": {"colour": "red"}}, {"due_date": "2026-01-02"},
                                    {"profile": "rustic"}])
def test_any_field_change_updates_the_order(store: ResultsStore, change: dict[str, object]) -> None:
    store.import_order_book(book(order("ORD-1")))
    counts = store.import_order_book(book(order("ORD-1", **change)))  # type: ignore[arg-type]
    assert (counts["updated"], counts["unchanged"]) == (1, 0)


@pytest.mark.parametrize("call", ["get_order", "get_profile", "units_of_order", "unit_record"])
def test_unknown_ids_raise_not_found_naming_the_id(store: ResultsStore, call: str) -> None:
    with pytest.raises(NotFoundError, match="NOPE-42"):
        getattr(store, call)("NOPE-42")


# -- units ---------------------------------------------------------------------------------------------------


def test_ensure_unit(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    assert store.ensure_unit("U1", "ORD-1") is True
    assert store.ensure_unit("U1", "ORD-1") is False
    with pytest.raises(ConflictError, match=r"U1.*ORD-1"):
        store.ensure_unit("U1", "ORD-2")
    with pytest.raises(NotFoundError, match="ORD-404"):
        store.ensure_unit("U2", "ORD-404")
    [unit] = store.units_of_order("ORD-1")
    assert (unit.unit_id, unit.status, unit.verdict, unit.frames) == ("U1", "open", None, 0)


# -- frame results -------------------------------------------------------------------------------------------


def test_replaying_frames_inserts_nothing(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    batch = [result("U1", camera="top", seq=1), result("U1", camera="side", seq=2,
                                                       verdict=Verdict.FAIL, findings=[finding()]),
             failure("U1", seq=3)]
    assert store.record_frame_results(batch) == 3
    assert store.record_frame_results(batch) == 0
    assert len(store.frame_verdicts("U1")) == 3


@pytest.mark.parametrize(("first", "second", "inserted"), [
    ("same frame, same unit and camera", "dup", 1),
    ("same frame, other camera", "camera", 2),
    ("same frame, other unit", "unit", 2),
    ("other frame", "frame", 2),
])
def test_what_counts_as_a_duplicate(store: ResultsStore, first: str, second: str, inserted: int) -> None:
    store.import_order_book(standard_book())
    base = result("U1", camera="top", seq=1)
    other = {"dup": result("U1", camera="top", seq=1), "camera": result("U1", camera="side", seq=1),
             "unit": result("U2", camera="top", seq=1), "frame": result("U1", camera="top", seq=2)}[second]
    assert store.record_frame_results([base, other]) == inserted, first


def test_batch_with_one_duplicate_still_writes_the_rest(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    store.record_frame_results([result("U1", seq=1)])
    batch = [result("U1", seq=n) for n in (0, 1, 2, 3)]
    assert store.record_frame_results(batch) == 3
    assert [v.captured_at.second for v in store.frame_verdicts("U1")] == [0, 1, 2, 3]


def test_distinct_failures_are_kept_and_replayed_ones_are_not(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    assert store.record_frame_results([failure(seq=1), failure(seq=2), failure(seq=1)]) == 2
    verdicts = store.frame_verdicts("U1")
    assert [v.error for v in verdicts] == ["truncated JPEG"] * 2
    assert all(v.frame_sha256 == "" for v in verdicts)
    assert all(f["frame_sha256"].startswith(FAILURE_KEY_PREFIX) for f in store.unit_record("U1").to_json()["frames"])


def test_unknown_order_or_conflicting_unit_writes_nothing(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    store.ensure_unit("U1", "ORD-1")
    with pytest.raises(NotFoundError, match="ORD-404"):
        store.record_frame_results([result("U2", seq=1), result("U3", "ORD-404", seq=2)])
    with pytest.raises(ConflictError, match="U1"):
        store.record_frame_results([result("U4", seq=3), result("U1", "ORD-2", seq=4)])
    assert store.frame_verdicts("U2") == [] and store.frame_verdicts("U4") == []


def test_frame_verdicts_round_trip(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    findings = [finding("scratch", Verdict.FAIL, 0.91), finding("dent", Verdict.REVIEW, 0.35),
                finding("knot", Verdict.PASS, 0.7)]
    batch = [result("U1", camera="top", seq=2, verdict=Verdict.FAIL, findings=findings),
             result("U1", camera="side", seq=1)]
    store.record_frame_results(batch)
    got = store.frame_verdicts("U1")
    assert got == [batch[1].verdict, batch[0].verdict]  # oldest first, every field equal
    assert all(v.captured_at.tzinfo is UTC for v in got)
    assert store.frame_verdicts("never-seen") == []


# -- unit verdicts and records -------------------------------------------------------------------------------


def test_unit_record_round_trip(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    frames = [result("U1", camera="top", seq=1, verdict=Verdict.FAIL, findings=[finding()]),
              result("U1", camera="side", seq=2)]
    store.record_frame_results(frames, {0: "/evidence/ab/" + "ab" * 32 + ".jpg"})
    store.commit_group([], close_units=["U1"])  # rolled up from the frames, under the unit's lock
    record = store.unit_record("U1").to_json()
    assert (record["unit_id"], record["order_id"], record["status"], record["verdict"]) == \
        ("U1", "ORD-1", "closed", "FAIL")
    assert record["reasons"] == ["scratch -> FAIL"] and record["complete"] is True
    assert record["closed_at"] is not None and record["closed_at"].endswith("+00:00")
    assert record["profile"] == {"name": "gloss", "hash": GLOSS.content_hash}
    assert record["order"]["customer_ref"] == "cust-ORD-1"
    assert record["model_sha256s"] == [MODEL_SHA]
    top, side = record["frames"]
    assert (top["camera_id"], top["verdict"], top["evidence_path"]) == \
        ("top", "FAIL", "/evidence/ab/" + "ab" * 32 + ".jpg")
    assert top["findings"] == [{"class": "scratch", "confidence": 0.9, "box": [1.0, 2.0, 30.5, 40.25],
                                "outcome": "FAIL", "rule": "scratch -> FAIL"}]
    assert (side["verdict"], side["findings"], side["evidence_path"]) == ("PASS", [], None)
    assert top["model_sha256"] == MODEL_SHA and top["profile_hash"] == GLOSS.content_hash
    assert (top["engine"], top["precision"]) == ("openvino", "bf16")  # beside the model sha256 (migration 0009)


def test_a_late_view_rolls_a_closed_unit_up_again_and_never_reopens_it(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    store.record_frame_results([result("U1", camera="top", seq=1)])
    assert (store.unit_record("U1").status, store.unit_record("U1").verdict) == ("open", None)
    closed = store.commit_group([], close_units=["U1"]).unit_verdicts["U1"]
    assert (closed.verdict, closed.missing_views, closed.complete) == (Verdict.REVIEW, ("side",), False)
    assert (store.unit_record("U1").status, store.unit_record("U1").verdict) == ("closed", "REVIEW")
    late = store.commit_group([result("U1", camera="side", seq=2)]).unit_verdicts["U1"]
    assert (late.verdict, late.complete) == (Verdict.PASS, True)
    assert (store.unit_record("U1").status, store.unit_record("U1").verdict) == ("closed", "PASS")
    with pytest.raises(ConflictError):
        store.commit_group([result("U1", "ORD-2", camera="top", seq=3, profile=RUSTIC)])


# -- report, source stats, evidence --------------------------------------------------------------------------


def test_report_counts(store: ResultsStore) -> None:
    store.import_order_book(book(order("ORD-1"), order("ORD-2", "rustic"), order("ORD-3")))
    scratch_fail = finding("scratch", Verdict.FAIL)
    scratch_unsure = finding("scratch", Verdict.REVIEW, 0.4)
    dent = finding("dent", Verdict.PASS, 0.8)
    store.record_frame_results([
        result("U1", seq=1, verdict=Verdict.FAIL, findings=[scratch_fail, scratch_fail]),
        result("U1", camera="side", seq=2, verdict=Verdict.REVIEW, findings=[scratch_unsure]),
        result("U2", seq=3, verdict=Verdict.REVIEW, findings=[scratch_unsure, dent]),
        result("U3", seq=4), result("U3", camera="side", seq=7), result("U4", seq=5),
        result("U5", "ORD-2", seq=6, findings=[dent], profile=RUSTIC),
    ])
    verdicts = store.commit_group([], close_units=["U1", "U2", "U3", "U5"]).unit_verdicts  # U4 stays open
    assert {u: v.verdict for u, v in verdicts.items()} == {"U1": Verdict.FAIL, "U2": Verdict.REVIEW,
                                                           "U3": Verdict.PASS, "U5": Verdict.PASS}
    report = store.report().to_json()
    assert report["per_order"] == [
        {"order_id": "ORD-1", "customer_ref": "cust-ORD-1", "units": 4, "PASS": 1, "REVIEW": 1, "FAIL": 1,
         "open": 1},
        {"order_id": "ORD-2", "customer_ref": "cust-ORD-2", "units": 1, "PASS": 1, "REVIEW": 0, "FAIL": 0,
         "open": 0},
        {"order_id": "ORD-3", "customer_ref": "cust-ORD-3", "units": 0, "PASS": 0, "REVIEW": 0, "FAIL": 0,
         "open": 0},
    ]
    assert report["per_class"] == [
        {"class": "dent", "counted": 2, "uncertain": 0, "frames": 2, "units": 2},
        {"class": "scratch", "counted": 2, "uncertain": 2, "frames": 3, "units": 2},
    ]


def test_report_of_an_empty_store(store: ResultsStore) -> None:
    assert store.report().to_json() == {"per_order": [], "per_class": []}


def test_source_stats_keep_history_and_show_the_latest(store: ResultsStore) -> None:
    store.record_source_stats("rtsp://cam1", "top", frames_read=10, frames_dropped=1)
    store.record_source_stats("rtsp://cam1", "top", frames_read=20, frames_dropped=3, reconnects=1,
                              last_error="timeout")
    store.record_source_stats("folder:/in", "side", frames_read=5, frames_failed=1)
    latest = store.source_stats()
    assert [(s.source, s.frames_read, s.last_error) for s in latest] == \
        [("folder:/in", 5, ""), ("rtsp://cam1", 20, "timeout")]


def test_evidence_in_use(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    shared, pass_only = "ab" * 32, "cd" * 32
    store.record_frame_results(
        [result("U1", seq=1, verdict=Verdict.FAIL, findings=[finding()]), result("U2", seq=1),
         result("U3", seq=2)],
        {0: f"/e/ab/{shared}.jpg", 1: f"/e/ab/{shared}.jpg", 2: f"/e/cd/{pass_only}.jpg"})
    assert store.evidence_in_use(shared) is True
    assert store.evidence_in_use(pass_only) is False
    assert store.evidence_in_use(pass_only, include_pass=True) is True
    assert store.evidence_in_use("ef" * 32, include_pass=True) is False


def test_store_profile_hash_is_the_profile_content_hash(store: ResultsStore) -> None:
    store.import_order_book(standard_book())
    _, profile = store.get_order("ORD-2")
    assert isinstance(profile, InspectionProfile) and profile.content_hash == RUSTIC.content_hash


def test_a_unit_count_failure_is_stored_on_its_findings(store: ResultsStore) -> None:
    store.import_order_book(standard_book())  # rustic tolerates 3 of a class on the unit
    frames = [result("U7", "ORD-2", cam, seq=i, findings=[finding("dent", Verdict.PASS)] * 2, profile=RUSTIC)
              for i, cam in enumerate(("top", "side"))]
    uv = store.commit_group(frames).unit_verdicts["U7"]  # rolled up in the same transaction
    assert uv.verdict is Verdict.FAIL
    record = store.unit_record("U7").to_json()
    outcomes = [f["outcome"] for fr in record["frames"] for f in fr["findings"]]
    assert outcomes == ["FAIL"] * 4
    assert all("4 dent on the unit, 3 tolerated" in f["rule"] for fr in record["frames"] for f in fr["findings"])


def test_conformance_results_and_calibrations_round_trip(store: ResultsStore) -> None:
    from dataclasses import replace

    from inspection.types import ConformanceResult

    store.import_order_book(standard_book())
    measured = ConformanceResult(kind="dimensions", name="dimensions", outcome=Verdict.FAIL,
                                 measured="1000.2 x 780.1 mm", expected="1000 x 800 mm", tolerance="± 3 mm",
                                 deviation=19.9, reason="dimensions: off by 19.9 mm",
                                 values=(("long_mm", 1000.2), ("short_mm", 780.1)))
    r = result("U9", seq=3)
    r = type(r)(r.frame, r.detections, replace(r.verdict, verdict=Verdict.FAIL, reasons=(measured.reason,),
                                               conformance=(measured,)))
    store.record_frame_results([r])
    stored = store.unit_record("U9").to_json()["frames"][0]["conformance"]
    assert stored == [measured.to_json()]
    assert store.frame_verdicts("U9")[0].conformance == (measured,)
    assert store.camera_calibration("top") is None
    store.record_calibration("top", "scale", {"px_per_mm": 2.0, "method": "checkerboard"}, actor="eng")
    store.record_calibration("top", "colour", {"gains": [1.1, 1.0, 0.8]}, actor="eng")
    store.record_calibration("top", "scale", {"px_per_mm": 2.5, "method": "checkerboard"}, actor="eng")
    cal = store.camera_calibration("top")
    assert cal is not None and cal.scale is not None and cal.white_balance is not None
    assert cal.scale.px_per_mm == 2.5 and cal.white_balance.gains == (1.1, 1.0, 0.8)
    with pytest.raises(ValueError):
        store.record_calibration("top", "scale", {"px_per_mm": -1})


def test_order_of_unit_from_the_record_or_the_order_books_unit_list(store: ResultsStore) -> None:
    store.import_order_book(book(order("ORD-1"), order("ORD-3", "rustic", attributes={"units": ["U-31", "U-32"]})))
    store.record_frame_results([result("U1", seq=1)])
    assert store.order_of_unit("U1") == "ORD-1"
    assert store.order_of_unit("U-32") == "ORD-3"
    assert store.order_of_unit("U-99") is None
    with pytest.raises(QCError, match="named group 'unit'"):
        store.record_calibration("top", "label", {"pattern": "(.+)"})
    store.record_calibration("top", "label", {"formats": ["QRCode"], "pattern": "(?P<unit>U-.+)"})
    cal = store.camera_calibration("top")
    assert cal is not None and cal.label is not None and cal.label.formats == ("QRCode",)


def test_line_history_of_a_window(store: ResultsStore) -> None:
    from datetime import timedelta

    from inspection.analytics import first_pass_yield, pareto
    from tests.inspection.store.factories import T0

    store.import_order_book(book(order("ORD-1"), order("ORD-2", "rustic", attributes={"family": "shelf"})))
    bad = result("U1", "ORD-1", "top", seq=1, verdict=Verdict.FAIL, findings=[finding("scratch")])
    store.record_frame_results([bad, result("U1", "ORD-1", "side", seq=2),
                                result("U2", "ORD-2", "top", seq=3600, profile=RUSTIC)])
    store.commit_group([], close_units=["U1", "U2"])
    history = store.line_history()
    assert [f.unit_id for f in history.frames] == ["U1", "U1", "U2"]
    assert [(u.unit_id, u.product_family, u.verdict, u.line) for u in history.units] == [
        ("U1", "door", "FAIL", store.station_id), ("U2", "shelf", "PASS", store.station_id)]
    assert [(b.category, b.count) for b in pareto(history)] == [("scratch", 1)]
    assert first_pass_yield(history) == (0.5, 1, 2)
    early = store.line_history(T0, T0 + timedelta(minutes=30))
    assert [u.unit_id for u in early.units] == ["U1"] and len(early.frames) == 2


def test_a_finding_clipped_to_a_line_is_stored_and_read_back(store: ResultsStore) -> None:
    """A model box wholly in the letterbox padding is clipped to a line on the frame border: such rows are in
    stores already, and a unit's roll-up reads them back, so ``Box`` allows zero area (labels do not)."""
    from inspection.boxes import Box
    from inspection.types import DefectFinding

    store.import_order_book(standard_book())
    line = DefectFinding("scratch", 0.9, Box(16.0, 5.0, 16.0, 9.0), Verdict.FAIL, "scratch is critical")
    store.record_frame_results([result("U1", seq=1, verdict=Verdict.FAIL, findings=[line])])
    assert store.frame_verdicts("U1")[0].findings == (line,)
    closed = store.commit_group([], close_units=["U1"]).unit_verdicts["U1"]
    assert closed.verdict is Verdict.FAIL and closed.frames[0].findings[0].box == line.box
