"""``qcline units``: a unit's whole record (verdict and why, frames, findings, reviews), and closing it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import typer
from rich.table import Table

from api.cli.common import (
    DataDirOption,
    JsonOption,
    local_time,
    out,
    print_json,
    require_database,
    settings_for,
    zone_of,
)
from api.cli.inspect import unit_json, verdict_table
from inspection.store.records import UnitRecord
from inspection.store.reviews import DispositionRecord, ReviewRecord, ReviewService
from inspection.types import Verdict

units_app = typer.Typer(help="Units on the line and their verdicts.", no_args_is_help=True)


@units_app.command("show")
def units_show(unit: str, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Everything recorded for a unit: verdict and why, frames and findings, reviews, dispositions, the model
    and profile versions that judged it (a table; --json for the full record)."""
    from api.composition import open_store

    settings = settings_for(data_dir)
    require_database(settings)
    with open_store(settings) as store:
        record = store.unit_record(unit)
        reviews = ReviewService(store)
        dispositions = reviews.dispositions(unit)
        histories = reviews.histories([f.id for f in record.frames])
    if as_json:
        data = record.to_json()
        data["dispositions"] = [d.to_json() for d in dispositions]
        for frame, shown in zip(record.frames, data["frames"], strict=True):
            shown["reviews"] = [r.to_json() for r in histories.get(frame.id, [])]
        print_json(data)
        return
    out.print(_unit_card(record, dispositions, histories, zone_of(settings)))


def _unit_card(record: UnitRecord, dispositions: Sequence[DispositionRecord],
               reviews: Mapping[int, Sequence[ReviewRecord]], zone: Any) -> Any:
    from rich.console import Group

    from api.composition import VERDICT_STYLE

    verdict = record.verdict
    style = VERDICT_STYLE.get(Verdict(verdict), "") if verdict else "dim"
    order = record.order
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("unit", f"{record.unit_id}  [{style}]{verdict or 'not judged yet'}[/]  ({record.status})")
    head.add_row("order", f"{order.id}  {order.customer_ref}  {order.product}"
                 + (f"  due {order.due_date.isoformat()}" if order.due_date else ""))
    head.add_row("profile", f"{record.profile.name} ({record.profile.hash[:12]})")
    head.add_row("why", "\n".join(record.reasons) or "no defect beyond the order's tolerance")
    if record.missing_views:
        head.add_row("missing views", ", ".join(record.missing_views))
    head.add_row("model", ", ".join(sha[:12] for sha in record.model_sha256s) or "-")
    head.add_row("disposition", "\n".join(f"{d.disposition} by {d.actor} at {local_time(d.at, zone)}"
                                          + (f" ({d.note})" if d.note else "") for d in dispositions)
                 or ("awaiting an operator" if verdict in ("REVIEW", "FAIL") else "-"))
    frames = Table("frame", "camera", "captured", "verdict", "findings", "why", "reviews", show_lines=True,
                   title="frames")
    for f in record.frames:
        fstyle = VERDICT_STYLE.get(Verdict(f.verdict), "") if f.verdict else ""
        findings = "\n".join(f"{d.class_name} {d.confidence:.2f} {d.outcome}" for d in f.findings) or "-"
        shown = "\n".join(f"{r.decision} by {r.actor}" for r in reviews.get(f.id, [])) or "-"
        frames.add_row(str(f.id), f.camera_id, local_time(f.captured_at, zone), f"[{fstyle}]{f.verdict}[/]",
                       findings, "\n".join(f.reasons) or (f.error or "-"), shown)
    return Group(head, frames)


@units_app.command("close")
def units_close(unit: str, data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Close a unit now; required views that never arrived are named in its verdict."""
    from api.composition import open_core

    settings = settings_for(data_dir)
    require_database(settings)
    core = open_core(settings)  # the service's path: journal, store roll-up under the unit's lock, audit, sinks
    try:
        verdict = core.close_unit(unit)
    finally:
        core.close()
    if as_json:
        print_json(unit_json(verdict))
    else:
        out.print(verdict_table([verdict], {}))
