"""``qcline station status``: the station's outbox (results waiting for the central database) and the database."""

from __future__ import annotations

from typing import Any

import typer

from api.cli.common import DataDirOption, JsonOption, print_json

station_app = typer.Typer(help="This station: its outbox and its central database.", no_args_is_help=True)


def station_status(data_dir: Any = None) -> dict[str, Any]:
    """What ``qcline station status`` prints: reachability of the results database and the outbox's backlog."""
    from inspection.settings import load_settings
    from inspection.store.db import create_store_engine, describe
    from inspection.store.outbox import read_status

    settings = load_settings(data_dir=data_dir)
    if not settings.database_url and not (settings.data_dir / "qcline.db").exists():
        return {"status": "down", "database": f"no database at {settings.data_dir} yet", "database_url": "",
                "outbox_enabled": False, "outbox": None}
    engine = create_store_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        database = "reachable"
    except Exception as e:  # any failure to connect is the answer, not an error of this command
        database = "unreachable: " + (str(getattr(e, "orig", None) or e).strip().splitlines() or [repr(e)])[0]
    finally:
        engine.dispose()
    outbox = read_status(settings.data_dir, int(settings.outbox_max_mb * 1024**2))
    state = "ok"
    if outbox is not None and (outbox.backlog or outbox.alarm):
        state = "degraded"
    if not database.startswith("reachable") and (outbox is None or not settings.outbox_enabled):
        state = "down"
    return {"status": state, "database": database, "database_url": describe(engine.url),
            "outbox_enabled": settings.outbox_enabled, "outbox": outbox.as_json() if outbox else None}


@station_app.command("status")
def status(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Is the central database reachable, how many results wait in the outbox, and how old is the oldest."""
    state = station_status(data_dir)
    if as_json:
        print_json(state)
        return
    typer.echo(f"station: {state['status']}")
    typer.echo(f"database {state['database_url']}: {state['database']}")
    outbox = state["outbox"]
    if outbox is None:
        typer.echo("outbox: none" + (" yet" if state["outbox_enabled"] else " (off: the database is local)"))
        return
    age = outbox["oldest_age_s"]
    typer.echo(f"outbox: {outbox['backlog']} results waiting"
               + (f", oldest {age:.1f} s" if age is not None else "")
               + f"; {outbox['size_bytes']} of {outbox['max_bytes']} bytes; {outbox['dead']} refused for good")
    if outbox["alarm"]:
        typer.echo(f"ALARM: {outbox['alarm']}", err=True)
