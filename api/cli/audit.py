"""``qcline audit verify``: walk the traceability chains and name the first broken link.

Exit codes: 0 intact, 2 broken (the first problem on stderr, all of them with ``--json``), 1 bad input,
3 unknown order.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from api.cli.common import DataDirOption, JsonOption, print_json
from inspection.settings import load_settings

audit_app = typer.Typer(help="The traceability record of every unit, chained by hash.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

BROKEN_EXIT = 2


@audit_app.command("verify")
def audit_verify(order: Annotated[str | None, typer.Option(help="Only the units of this order.")] = None,
                 data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Check every link of every station's chain, and every unit's rows against its latest link."""
    from api.composition import open_store

    with open_store(load_settings(data_dir=data_dir)) as store:
        report = store.audit_verify(order)
    if as_json:
        print_json(report.to_json())
    else:
        links = ", ".join(f"{station}: {n} links" for station, n in sorted(report.stations.items())) or "no links"
        out.print(f"{links}; {report.units_checked} units checked"
                  + (f", {len(report.pending)} pending (verdict on its way)" if report.pending else "")
                  + (f", {len(report.unsealed)} open without a verdict" if report.unsealed else "")
                  + (f", {len(report.legacy)} recorded before the chain (qcline audit seal)" if report.legacy else ""))
        if report.ok:
            out.print("[green]chain intact[/]: every link and every unit's rows match")
        else:
            err.print(f"[bold red]chain broken[/] at {report.problems[0]}")
            for problem in report.problems[1:]:
                err.print(f"  also: {problem}")
    if not report.ok:
        raise typer.Exit(BROKEN_EXIT)


@audit_app.command("seal")
def audit_seal(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Chain units recorded before the traceability chain existed (their rows as they are now)."""
    from api.composition import open_store

    with open_store(load_settings(data_dir=data_dir)) as store:
        units = store.seal_legacy_units()
    if as_json:
        print_json({"sealed": units})
    else:
        out.print(f"{len(units)} units sealed into the chain of station {store.station_id}")
