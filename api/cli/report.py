"""``qcline report``: the shift report per order, and an order's inspection certificate."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.cli.common import (
    DataDirOption,
    JsonOption,
    out,
    print_json,
    require_database,
    settings_for,
    when,
    zone_of,
)
from inspection.errors import QCError

report_app = typer.Typer(help="Shift report; `report order ORDER --html FILE`: an order's inspection certificate.")


@report_app.callback(invoke_without_command=True)
def report(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="From this date / date-time (local time), inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date / date-time (local time), exclusive.")] = None,
    camera: Annotated[list[str] | None, typer.Option(
        "--camera", "--station", help="Only frames of this camera / station (repeatable).")] = None,
    shift: Annotated[str | None, typer.Option(help="Only frames captured in these local hours: 06-14, 22-06.")] = None,
    bucket: Annotated[str, typer.Option(help="p-chart subgroups (with --plot/--csv): hour, shift, day or week.")]
    = "day",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write QC analytics plots (SVG, PNG) here.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Write QC analytics tables (CSV) here.")] = None,
    data_dir: DataDirOption = None, as_json: JsonOption = False,
) -> None:
    """Units, verdicts, dispositions and yield per order; findings per defect class; for a window, cameras
    and a shift (hours in QC_TIMEZONE, else the machine's zone). With --plot/--csv: the QC analytics (Pareto,
    first-pass yield, p-charts per line/camera/shift, rates, REVIEW overturn rate) of the window."""
    from api.composition import open_store
    from inspection.store.shift_report import COUNT_COLUMNS, ReportFilter, parse_shift, shift_report

    if ctx.invoked_subcommand is not None:
        return
    settings = settings_for(data_dir)
    zone = zone_of(settings)
    filt = ReportFilter(since=when(since, zone, "--since"), until=when(until, zone, "--until"),
                        cameras=tuple(camera or ()), shift=parse_shift(shift) if shift else None, tz=zone)
    if filt.since and filt.until and filt.since >= filt.until:
        raise QCError("--since must be before --until")
    require_database(settings)
    if plot is not None or csv_dir is not None:
        _analytics_report(data_dir, as_json, filt.since, filt.until, bucket, plot, csv_dir)
        return
    with open_store(settings) as store:
        data = shift_report(store, filt)
    if as_json:
        print_json(data.to_json())
        return

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    per_order = Table("order", "customer", *(c.replace("awaiting_disposition", "to decide") for c in COUNT_COLUMNS),
                      "first-pass yield", "final yield", title="per order")
    for r in data.per_order:
        per_order.add_row(r.order_id, r.customer_ref, *(str(n) for n in r.counts.counts),
                          pct(r.counts.first_pass_yield), pct(r.counts.final_yield))
    t = data.total
    per_order.add_row("[bold]total[/]", "", *(f"[bold]{n}[/]" for n in t.counts),
                      f"[bold]{pct(t.first_pass_yield)}[/]", f"[bold]{pct(t.final_yield)}[/]")
    per_class = Table("defect class", "counted", "uncertain", "frames", "units", title="per defect class")
    for c in data.per_class:
        per_class.add_row(c.class_name, *(str(n) for n in (c.counted, c.uncertain, c.frames, c.units)))
    f = data.filter
    scope = ", ".join(x for x in (f"since {f.since.isoformat()}" if f.since else "",
                                  f"until {f.until.isoformat()}" if f.until else "",
                                  f"cameras {', '.join(f.cameras)}" if f.cameras else "",
                                  f"shift {f.shift_hours} ({f.tz})" if f.shift else "") if x)
    out.print(f"report: {scope or 'everything recorded'}")
    out.print(per_order, per_class)


def _analytics_report(data_dir: Path | None, as_json: bool, since: datetime | None, until: datetime | None,
                      bucket: str, plot: Path | None, csv_dir: Path | None) -> None:
    from api.composition import open_store
    from api.services.charts import write_csv, write_plots
    from inspection.analytics import summary

    if bucket not in ("hour", "shift", "day", "week"):
        raise QCError(f"--bucket {bucket!r}: use hour, shift, day or week")
    since, until = (None if t is None else t if t.tzinfo else t.replace(tzinfo=UTC) for t in (since, until))
    if since is not None and until is not None and since >= until:
        raise QCError("--since must be before --until")
    with open_store(settings_for(data_dir)) as store:
        data = summary(store.line_history(since, until), bucket=bucket, since=since, until=until)  # type: ignore[arg-type]
    written = (write_csv(data, csv_dir) if csv_dir else []) + (write_plots(data, plot) if plot else [])
    if as_json:
        print_json({**data, "files": [str(p) for p in written]})
        return
    fpy, overturn = data["first_pass_yield"], data["overturn_rate"]
    out.print(f"{data['frames']} frames, {data['units']} units; first-pass yield "
              + (f"{fpy['value']:.1%} ({fpy['passed']}/{fpy['judged']})" if fpy["value"] is not None else "-")
              + "; REVIEW overturn rate "
              + (f"{overturn['value']:.1%} ({overturn['false_alarms']}/{overturn['reviewed']})"
                 if overturn["value"] is not None else "- (no reviews)"))
    flagged = [(c["dimension"], c["key"], p["subgroup"]) for c in data["p_charts"] for p in c["points"]
               if p["out_of_control"]]
    for dimension, key, subgroup in flagged:
        out.print(f"[bold red]out of control[/]: {dimension} {key or '-'} at {subgroup}")
    for path in written:
        out.print(f"wrote {path}")


@report_app.command("order")
def report_order(order: Annotated[str, typer.Argument(help="Order id.")],
                 html: Annotated[Path, typer.Option("--html", help="Certificate file to write (HTML).")],
                 data_dir: DataDirOption = None) -> None:
    """Write the order's inspection certificate: each unit's verdict, evidence frames with their boxes,
    conformance values, model and profile versions, and its link in the traceability chain."""
    from api.composition import open_store
    from api.services.certificate import certificate_data, render_certificate

    with open_store(settings_for(data_dir)) as store:
        data = certificate_data(store, order)
    try:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(render_certificate(data), encoding="utf-8")
    except OSError as e:
        raise QCError(f"cannot write the certificate to {html}: {e}") from e
    state = "chain intact" if data.verification.ok else f"CHAIN BROKEN: {data.verification.first_broken}"
    out.print(f"certificate of {order} ({len(data.units)} units) written to {html}; {state}")
