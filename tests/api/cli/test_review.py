"""``qcline review`` and ``qcline datasets build-from-reviews`` through ``typer.testing.CliRunner``.

The apps are invoked on their own (the main CLI maps the ``QCError`` they raise to exit codes), against a
store in ``tmp_path`` holding inspections with evidence frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from api.cli.datasets import datasets_app
from api.cli.review import review_app
from api.composition import open_store
from inspection.errors import NotFoundError
from inspection.reviews import ReviewError
from inspection.settings import load_settings
from inspection.store.reviews import ReviewRecord, ReviewService
from inspection.types import Verdict
from tests.inspection.store.factories import standard_book
from tests.inspection.store.test_reviews import add_inspection

runner = CliRunner()


@pytest.fixture
def line(tmp_path: Path) -> dict[str, object]:
    """A data dir with units U1 (FAIL, two frames) and U2 (REVIEW, one frame), all with evidence."""
    data = tmp_path / "data"
    with open_store(load_settings(data_dir=data)) as store:
        store.import_order_book(standard_book())
        ids = [add_inspection(store, "U1", camera="top", seq=1), add_inspection(store, "U1", camera="side", seq=2),
               add_inspection(store, "U2", "ORD-2", seq=3, verdict=Verdict.REVIEW)]
        store.commit_group([], close_units=["U1", "U2"])  # FAIL (two views), REVIEW (its one frame)
    return {"data": str(data), "ids": ids, "tmp": tmp_path}


def invoke(app: object, args: list[str], line: dict[str, object]) -> Result:
    return runner.invoke(app, [*args, "--data-dir", str(line["data"])])  # type: ignore[arg-type]


def ok_json(app: object, args: list[str], line: dict[str, object]) -> Any:
    done = invoke(app, [*args, "--json"], line)
    assert done.exit_code == 0, (done.output, done.exception)
    return json.loads(done.stdout)


def history(line: dict[str, object], inspection: int) -> list[ReviewRecord]:
    with open_store(load_settings(data_dir=Path(str(line["data"])))) as store:
        return ReviewService(store).history(inspection)


def test_record_confirm_twice_is_one_review(line: dict) -> None:
    first_id = line["ids"][0]
    first = ok_json(review_app, ["record", str(first_id), "--confirm", "--actor", "ana", "--note", "deep"], line)
    assert isinstance(first, dict)
    assert (first["decision"], first["actor"], first["note"], first["duplicate"]) == ("confirm", "ana", "deep", False)
    again = ok_json(review_app, ["record", str(first_id), "--confirm", "--actor", "ana"], line)
    assert isinstance(again, dict) and again["duplicate"] is True and again["id"] == first["id"]
    human = invoke(review_app, ["record", str(first_id), "--confirm", "--actor", "ana"], line)
    assert "already recorded" in human.stdout
    assert len(history(line, first_id)) == 1


def test_record_boxes_and_bad_input(line: dict) -> None:
    inspection = line["ids"][1]
    fixed = ok_json(review_app, ["record", str(inspection), "--box", "knot,1,2,10,12", "--box", "dent,20,5,30,9",
                                 "--actor", "ana"], line)
    assert isinstance(fixed, dict)
    assert fixed["decision"] == "correct" and fixed["boxes"] == [["knot", 1, 2, 10, 12], ["dent", 20, 5, 30, 9]]
    for args, error, message in [
        (["record", str(inspection)], ReviewError, "exactly one"),
        (["record", str(inspection), "--confirm", "--false-alarm"], ReviewError, "not --confirm and --false-alarm"),
        (["record", str(inspection), "--confirm", "--box", "dent,1,1,2,2"], ReviewError, "exactly one"),
        (["record", str(inspection), "--box", "dent,1,1,2"], ReviewError, "class,x1,y1,x2,y2"),
        (["record", str(inspection), "--box", "dent,1,1,999,2"], ReviewError, "outside"),
        (["record", "424242", "--false-alarm"], NotFoundError, "424242"),
    ]:
        done = invoke(review_app, args, line)
        assert isinstance(done.exception, error), (args, done.output, done.exception)
        assert message in str(done.exception)
    assert len(history(line, inspection)) == 1


def test_file_reports_every_line_and_keeps_what_was_accepted(line: dict) -> None:
    top, side, other = line["ids"]
    decisions = line["tmp"] / "decisions.jsonl"
    decisions.write_text("\n".join([
        json.dumps({"inspection_id": top, "decision": "confirm", "actor": "ana"}),
        json.dumps({"inspection_id": top, "decision": "confirm", "actor": "ana"}),
        "{not json",
        "",
        json.dumps({"inspection_id": 999, "decision": "false_alarm"}),
        json.dumps({"inspection_id": side, "decision": "correct", "boxes": [["knot", 1, 1, 500, 5]]}),
        json.dumps({"inspection_id": other, "decision": "correct", "boxes": [["knot", 1, 1, 5, 5]],
                    "note": "knot, not a scratch"}),
    ]) + "\n")
    done = invoke(review_app, ["file", str(decisions), "--json", "--actor", "batch"], line)
    assert isinstance(done.exception, ReviewError) and "3 rejected" in str(done.exception)
    reports = [json.loads(text) for text in done.stdout.splitlines()]
    assert [(r["line"], r["status"]) for r in reports] == [
        (1, "accepted"), (2, "duplicate"), (3, "rejected"), (5, "rejected"), (6, "rejected"), (7, "accepted")]
    assert "not JSON" in reports[2]["reason"]
    assert "999" in reports[3]["reason"]
    assert "outside" in reports[4]["reason"]
    assert [h.actor for h in history(line, other)] == ["batch"]
    assert len(history(line, top)) == 1 and history(line, side) == []

    decisions.write_text(json.dumps({"inspection_id": side, "decision": "false-alarm"}) + "\n")
    clean = invoke(review_app, ["file", str(decisions)], line)
    assert clean.exit_code == 0, (clean.output, clean.exception)
    assert "line 1: accepted" in clean.stdout and "1 accepted, 0 duplicate, 0 rejected" in clean.stdout
    missing = invoke(review_app, ["file", str(line["tmp"] / "nope.jsonl")], line)
    assert isinstance(missing.exception, ReviewError)


def test_list_dispose_and_queue(line: dict) -> None:
    top, _, other = line["ids"]
    assert ok_json(review_app, ["list"], line) == []
    ok_json(review_app, ["record", str(top), "--false-alarm", "--actor", "ana"], line)
    rows = ok_json(review_app, ["list"], line)
    assert isinstance(rows, list) and [(r["inspection_id"], r["decision"]) for r in rows] == [(top, "false_alarm")]
    assert rows[0]["evidence_exists"] and rows[0]["findings"]
    assert ok_json(review_app, ["list", "--since", str(rows[0]["id"])], line) == []
    assert "false_alarm" in invoke(review_app, ["history", str(top)], line).stdout

    queue = ok_json(review_app, ["queue"], line)
    assert isinstance(queue, list) and [q["unit_id"] for q in queue] == ["U1", "U2"]
    assert queue[0]["reviewed_frames"] == 1
    done = ok_json(review_app, ["dispose", "U1", "rework", "--actor", "lead", "--note", "sand"], line)
    assert isinstance(done, dict) and (done["disposition"], done["actor"]) == ("rework", "lead")
    assert [q["unit_id"] for q in ok_json(review_app, ["queue"], line)] == ["U2"]
    human = invoke(review_app, ["queue"], line)
    assert "U2" in human.stdout and "U1" not in human.stdout

    bad = invoke(review_app, ["dispose", "U2", "ship"], line)
    assert isinstance(bad.exception, ReviewError)
    unknown = invoke(review_app, ["dispose", "U404", "scrap"], line)
    assert isinstance(unknown.exception, NotFoundError)
    assert other  # U2's frame stays unreviewed


def test_datasets_build_from_reviews(line: dict) -> None:
    top, side, other = line["ids"]
    ok_json(review_app, ["record", str(top), "--confirm"], line)
    ok_json(review_app, ["record", str(side), "--false-alarm"], line)
    first = ok_json(datasets_app, ["build-from-reviews"], line)
    assert isinstance(first, dict)
    assert (first["images"], first["reviews"], first["skipped"]) == (2, 2, [])
    last = ok_json(review_app, ["record", str(other), "--box", "knot,1,1,9,9"], line)
    assert isinstance(last, dict)
    # the U2 frame's evidence disappears before the second build of U1's frames + this one
    for row in ok_json(review_app, ["list"], line):
        if row["inspection_id"] == other:
            Path(row["evidence_path"]).unlink()
    ok_json(review_app, ["record", str(side), "--box", "knot,2,2,9,9"], line)
    child = ok_json(datasets_app, ["build-from-reviews", "--parent", first["snapshot"][:10],
                                   "--since", str(last["id"] - 1)], line)
    assert isinstance(child, dict)
    assert child["images"] == 2 and child["reviews"] == 1
    assert len(child["skipped"]) == 1 and "gone" in child["skipped"][0]["reason"]
    shown = ok_json(datasets_app, ["show", child["snapshot"]], line)
    assert isinstance(shown, dict) and shown["classes"] == ["scratch", "knot"] and shown["parent"] == first["snapshot"]
    human = invoke(datasets_app, ["build-from-reviews", "--since", "0"], line)
    assert human.exit_code == 0 and "reviews used" in human.stdout
    nothing = invoke(datasets_app, ["build-from-reviews", "--since", "10000"], line)
    assert "no reviews" in str(nothing.exception)
