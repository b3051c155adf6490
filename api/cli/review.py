"""``qcline review``: record operator decisions about flagged frames, dispose of units, read the queue.

The same ``ReviewService`` backs the review page, so a decision typed here and one clicked there are
recorded, validated and de-duplicated identically. Commands raise ``QCError`` subclasses and leave exit
codes to the main CLI. ``--json`` prints exactly one JSON value (or, for ``file``, one per line) for scripts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.common import DataDirOption, JsonOption, default_actor, print_json, require_database
from inspection.errors import QCError
from inspection.reviews import Decision, Disposition, ReviewDecision, ReviewedBox, ReviewError
from inspection.settings import load_settings
from inspection.store.repository import ResultsStore
from inspection.store.reviews import ReviewService

log = logging.getLogger(__name__)

review_app = typer.Typer(help="Operator review of flagged frames: decisions, unit dispositions, the queue.",
                         no_args_is_help=True)

ActorOption = Annotated[str | None, typer.Option("--actor", help="Who decided (default: the login name).")]
NoteOption = Annotated[str, typer.Option("--note", help="Free text kept with the decision.")]




@contextmanager
def _service(data_dir: Path | None) -> Iterator[ReviewService]:
    from api.composition import open_store

    settings = load_settings(data_dir=data_dir)
    require_database(settings)  # reviewing an empty, freshly created database helps nobody
    store: ResultsStore = open_store(settings)
    try:
        yield ReviewService(store)
    finally:
        store.close()




def _describe(review: dict[str, Any]) -> str:
    boxes = f" boxes {review['boxes']}" if review["boxes"] else ""
    return (f"review {review['id']}: inspection {review['inspection_id']} (unit {review['unit_id']}) "
            f"{review['decision']}{boxes} by {review['actor']}")


@review_app.command("record")
def record_cmd(
    inspection_id: Annotated[int, typer.Argument(metavar="INSPECTION_ID", help="Inspection (frame) id.")],
    confirm: Annotated[bool, typer.Option("--confirm", help="The model's findings are right.")] = False,
    false_alarm: Annotated[bool, typer.Option("--false-alarm", help="No defect: a negative example.")] = False,
    box: Annotated[list[str] | None, typer.Option(
        "--box", help="'class,x1,y1,x2,y2' in frame pixels; repeat for several. Replaces the model's boxes.")] = None,
    actor: ActorOption = None,
    note: NoteOption = "",
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record one decision about one inspected frame (a repeated identical decision is not stored twice)."""
    boxes = tuple(ReviewedBox.parse(b) for b in box or ())
    modes = [name for name, on in (("--confirm", confirm), ("--false-alarm", false_alarm), ("--box", bool(boxes)))
             if on]
    if len(modes) != 1:
        raise ReviewError("give exactly one of --confirm, --false-alarm or --box (repeatable)"
                          + (f", not {' and '.join(modes)}" if modes else ""))
    decision = Decision.CONFIRM if confirm else Decision.FALSE_ALARM if false_alarm else Decision.CORRECT
    with _service(data_dir) as service:
        recorded = service.record(ReviewDecision(inspection_id, decision, boxes, actor or default_actor(), note))
    review = recorded.to_json()
    if as_json:
        print_json(review)
    else:
        typer.echo(_describe(review) + (" (already recorded)" if review["duplicate"] else ""))


@review_app.command("file")
def file_cmd(
    path: Annotated[Path, typer.Argument(help="JSONL file: one decision object per line.")],
    actor: ActorOption = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record a JSONL file of decisions, one transaction per line.

    Each line is reported as accepted, duplicate or rejected (with the reason) and the file is read to the
    end; accepted lines stay recorded even when others are rejected, and the command then fails so a
    script notices. ``--actor`` is the default for lines without one.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"cannot read decisions file {path}: {exc}") from exc
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    fallback_actor = actor or default_actor()
    with _service(data_dir) as service:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            report: dict[str, Any] = {"line": number}
            try:
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ReviewError(f"not JSON: {exc}") from exc
                review = service.record(ReviewDecision.from_json(data, default_actor=fallback_actor)).to_json()
            except QCError as exc:  # includes NotFoundError and StoreError: report it, go on with the file
                report |= {"status": "rejected", "reason": str(exc)}
                log.warning("%s line %d rejected: %s", path, number, exc)
            else:
                report |= {"status": "duplicate" if review["duplicate"] else "accepted", "review": review["id"],
                           "inspection_id": review["inspection_id"]}
            counts[report["status"]] += 1
            if as_json:
                print_json(report)
            elif report["status"] == "rejected":
                typer.echo(f"line {number}: rejected: {report['reason']}")
            else:
                typer.echo(f"line {number}: {report['status']}: review {report['review']} "
                           f"(inspection {report['inspection_id']})")
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    if counts["rejected"]:
        raise ReviewError(f"{path}: {summary}; fix the rejected lines and run the file again "
                          "(accepted lines are kept and repeat as duplicates)")
    if not as_json:
        typer.echo(summary)


@review_app.command("list")
def list_cmd(
    since: Annotated[int, typer.Option("--since", help="Only inspections whose latest review id is above this.")] = 0,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """The latest decision of each reviewed inspection, oldest review first."""
    with _service(data_dir) as service:
        rows = service.latest_reviews(since)
    if as_json:
        print_json([row.to_json() for row in rows])
        return
    if not rows:
        typer.echo("no reviews yet")
    for row in rows:
        evidence = "" if row.evidence_exists else "  (evidence gone)"
        typer.echo(f"{_describe(row.review.to_json())}  {row.review.created_at}  findings {len(row.findings)}"
                   f"{evidence}")


@review_app.command("history")
def history_cmd(
    inspection_id: Annotated[int, typer.Argument(metavar="INSPECTION_ID")],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every decision recorded for one inspection, oldest first."""
    with _service(data_dir) as service:
        rows = [r.to_json() for r in service.history(inspection_id)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"inspection {inspection_id} has no reviews")
    for row in rows:
        typer.echo(f"{_describe(row)}  {row['created_at']}  {row['note']}")


@review_app.command("dispose")
def dispose_cmd(
    unit: Annotated[str, typer.Argument(metavar="UNIT", help="Unit id (serial number).")],
    disposition: Annotated[str, typer.Argument(metavar="DISPOSITION", help="release, rework or scrap.")],
    actor: ActorOption = None,
    note: NoteOption = "",
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record what happens to a flagged unit; it leaves the review queue."""
    value = Disposition.parse(disposition)
    with _service(data_dir) as service:
        row = service.set_disposition(unit, value, actor or default_actor(), note).to_json()
    if as_json:
        print_json(row)
    else:
        typer.echo(f"unit {unit}: {row['disposition']} by {row['actor']} (verdict {row['verdict']})")


@review_app.command("queue")
def queue_cmd(
    limit: Annotated[int, typer.Option("--limit", help="At most this many units.")] = 100,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Units waiting for a decision: FAIL before REVIEW, then by order due date."""
    with _service(data_dir) as service:
        rows = [item.to_json() for item in service.queue(limit)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("queue is empty")
    for row in rows:
        typer.echo(f"{row['verdict']:<6} {row['unit_id']}  order {row['order_id']}  due {row['due_date'] or '-'}  "
                   f"flagged {row['flagged_frames']}  reviewed {row['reviewed_frames']}  "
                   f"{'; '.join(row['reasons'])}")


__all__ = ["review_app"]
