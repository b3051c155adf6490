"""The traceability chain on SQLite and PostgreSQL: links on every verdict, review and disposition; rows
edited, inserted or deleted behind the store's back (plain SQL) are found, and the first broken link named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from inspection.reviews import Decision, ReviewDecision
from inspection.store import ResultsStore
from inspection.store.db import normalise_url
from inspection.store.reviews import ReviewService
from inspection.types import Verdict
from tests.inspection.store.factories import RUSTIC, finding, result, standard_book


@pytest.fixture
def line(db_url: str, tmp_path: Path) -> Iterator[tuple[ResultsStore, str]]:
    """Three units of two orders, judged, closed, one reviewed and dispositioned: five links on station S1."""
    store = ResultsStore.open(db_url, tmp_path / "frames", station_id="S1")
    store.import_order_book(standard_book())
    u1 = [result("U1", "ORD-1", cam, seq=i, verdict=Verdict.FAIL, findings=[finding("scratch")])
          for i, cam in enumerate(("top", "side"))]
    u2 = [result("U2", "ORD-2", cam, seq=10 + i, findings=[finding("dent", Verdict.PASS)] * 2, profile=RUSTIC)
          for i, cam in enumerate(("top", "side"))]  # 4 dents on the unit, 3 tolerated: the unit fails them
    u3 = [result("U3", "ORD-2", "top", seq=20, profile=RUSTIC)]
    _sha, evidence = store.evidence.put_image(u1[0].frame.image)  # type: ignore[union-attr]
    store.record_frame_results(u1 + u2 + u3, {0: str(evidence)})
    closed = store.commit_group([], close_units=["U1", "U2", "U3"]).unit_verdicts  # rolled up, sealed
    assert [closed[u].verdict for u in ("U1", "U2", "U3")] == [Verdict.FAIL, Verdict.FAIL, Verdict.PASS]
    reviews = ReviewService(store)
    inspection_id = store.unit_record("U1").frames[0].id
    reviews.record(ReviewDecision(inspection_id, Decision.CONFIRM, (), "olga", "real scratch"))
    reviews.set_disposition("U1", "scrap", "olga")
    try:
        yield store, db_url
    finally:
        store.close()


def _sql(url: str, *statements: str) -> None:
    """Behind the store's back: a separate connection, plain SQL."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


def test_an_untouched_line_verifies(line: tuple[ResultsStore, str]) -> None:
    store, _ = line
    report = store.audit_verify()
    assert report.ok, [str(p) for p in report.problems]
    assert report.stations == {"S1": 5} and report.units_checked == 3
    assert store.audit_verify("ORD-2").units_checked == 2
    links = store.chain_links(["U1", "U2"])
    assert links["U1"].event == "disposition" and links["U1"].seq == 5
    assert len(links["U2"].entry_hash) == 64


def test_the_chain_records_the_unit_count_failure_on_its_findings(line: tuple[ResultsStore, str]) -> None:
    import json

    from sqlalchemy import select

    from inspection.store.tables.audit import AuditChainRow

    store, _ = line
    with store.engine.connect() as conn:
        stored = conn.execute(select(AuditChainRow.record).where(AuditChainRow.unit_id == "U2")).scalar_one()
    record = json.loads(stored)
    assert [f["outcome"] for fr in record["frames"] for f in fr["findings"]] == ["FAIL"] * 4


U1_FINDING = "(SELECT MIN(d.id) FROM detections d JOIN inspections i ON i.id = d.inspection_id WHERE i.unit_id = 'U1')"
U2_INSPECTION = "(SELECT MIN(id) FROM inspections WHERE unit_id = 'U2')"


@pytest.mark.parametrize(("statements", "first_seq", "message"), [
    ([f"UPDATE detections SET outcome = 'PASS' WHERE id = {U1_FINDING}"], 5, "findings[0].outcome"),
    ([f"DELETE FROM detections WHERE id = {U1_FINDING}"], 5, "findings: 1 recorded in the chain, 0"),
    ([f"INSERT INTO detections (inspection_id, class_name, confidence, x1, y1, x2, y2, outcome, rule) "
      f"VALUES ({U2_INSPECTION}, 'dent', 0.9, 1, 1, 5, 5, 'FAIL', 'added')"], 2, "findings: 2 recorded"),
    (["UPDATE inspections SET verdict = 'PASS' WHERE unit_id = 'U1'"], 5, "frames[0].verdict"),
    (["UPDATE inspections SET model_sha256 = 'x' WHERE unit_id = 'U3'"], 3, "model_sha256"),
    (["UPDATE conformance_results SET outcome = 'PASS'",
      "UPDATE units SET verdict = 'PASS' WHERE id = 'U2'"], 2, "verdict was 'FAIL', is 'PASS'"),
    ([f"DELETE FROM detections WHERE inspection_id = {U2_INSPECTION}",
      f"DELETE FROM inspections WHERE id = {U2_INSPECTION}"], 2, "frames: 2 recorded in the chain, 1"),
    (["DELETE FROM unit_dispositions WHERE unit_id = 'U1'"], 5, "dispositions: 1 recorded"),
    (["UPDATE reviews SET decision = 'false_alarm'"], 5, "reviews[0].decision"),
    (["UPDATE audit_chain SET record = REPLACE(record, 'FAIL', 'PASS') WHERE seq = 1"], 1, "record was edited"),
    (["UPDATE audit_chain SET event = 'review' WHERE seq = 3"], 3, "fields were edited"),
    (["DELETE FROM audit_chain WHERE seq = 2"], 3, "link #2 is missing"),
    (["DELETE FROM audit_chain WHERE seq = 5"], 4, "links at the end were deleted"),
    (["INSERT INTO units (id, order_id, status, verdict, reasons, missing_views, complete, created_at, updated_at) "
      "VALUES ('U9', 'ORD-2', 'closed', 'PASS', '[]', '[]', TRUE, '2030-01-01', '2030-01-01')"], None,
     "has a verdict but no link"),
])
def test_rows_changed_behind_the_stores_back_break_the_chain(line: tuple[ResultsStore, str], statements: list[str],
                                                            first_seq: int | None, message: str) -> None:
    store, url = line
    _sql(url, *statements)
    report = store.audit_verify()
    assert not report.ok
    first = report.problems[0]
    assert first.seq == first_seq, [str(p) for p in report.problems]
    assert any(message in str(p) for p in report.problems), [str(p) for p in report.problems]


def test_a_deleted_unit_is_named(line: tuple[ResultsStore, str]) -> None:
    store, url = line
    _sql(url, "DELETE FROM detections WHERE inspection_id IN (SELECT id FROM inspections WHERE unit_id = 'U2')",
         "DELETE FROM inspections WHERE unit_id = 'U2'", "DELETE FROM units WHERE id = 'U2'")
    problems = [str(p) for p in store.audit_verify().problems]
    assert any("U2" in p and "no longer in the database" in p for p in problems)


def test_order_filter_checks_only_that_orders_units(line: tuple[ResultsStore, str]) -> None:
    store, url = line
    _sql(url, "UPDATE inspections SET verdict = 'PASS' WHERE unit_id = 'U1'")
    assert not store.audit_verify("ORD-1").ok
    assert store.audit_verify("ORD-2").ok


def test_an_open_unit_with_newer_frames_is_pending_not_broken(line: tuple[ResultsStore, str]) -> None:
    store, _ = line
    first = result("U5", "ORD-1", "top", seq=30)
    _sha, evidence = store.evidence.put_image(first.frame.image)  # type: ignore[union-attr]
    store.commit_group([first], {0: str(evidence)})  # gloss needs the side view too: open, no verdict yet
    inspection_id = store.unit_record("U5").frames[0].id
    ReviewService(store).record(ReviewDecision(inspection_id, Decision.CONFIRM, (), "olga"))  # sealed while open
    store.record_frame_results([result("U5", "ORD-1", "side", seq=31)])  # its verdict: on the way
    report = store.audit_verify()
    assert report.ok and report.pending == ["U5"]


def test_units_from_before_the_chain_are_legacy_until_sealed(db_url: str, tmp_path: Path) -> None:
    store = ResultsStore.open(db_url, tmp_path / "frames", station_id="S2")
    try:
        store.import_order_book(standard_book())
        frames = [result("U1", "ORD-2", "top", seq=1, profile=RUSTIC)]
        store.record_frame_results(frames)
        store.commit_group([], close_units=["U1"])
        _sql(db_url, "DELETE FROM audit_chain", "DELETE FROM audit_heads")  # as a database from before 0006
        report = store.audit_verify()
        assert report.ok and report.legacy == ["U1"]
        assert store.seal_legacy_units() == ["U1"]
        report = store.audit_verify()
        assert report.ok and report.legacy == [] and report.units_checked == 1
    finally:
        store.close()


def test_a_unit_inserted_with_a_backdated_time_is_reported_as_legacy_not_hidden(line: tuple[ResultsStore, str]) -> None:
    """The limit of the chain, stated: a row dated before the chain began looks like pre-0006 data. It is
    listed (``legacy``), never silently counted as verified."""
    store, url = line
    _sql(url, "INSERT INTO units (id, order_id, status, verdict, reasons, missing_views, complete, created_at, "
              "updated_at) VALUES ('U9', 'ORD-2', 'closed', 'PASS', '[]', '[]', TRUE, '2020-01-01', '2020-01-01')")
    report = store.audit_verify()
    assert report.legacy == ["U9"] and report.units_checked == 3
