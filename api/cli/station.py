"""``qcline station status``: the station's outbox (results waiting for the central database), the database, and
the line station's cameras; ``qcline station run``: a line station process without HTTP.

``station run`` holds the cameras of the station file open, starts its trigger sources (PLC, MQTT, labels), judges
each triggered unit through an Inspector this process owns, closes it durably and answers the line, until SIGTERM
or Ctrl-C; then the trigger in progress is finished and every queued one answered (station stopping). It writes its
figures to ``<data dir>/line/status.json`` once a second (a local file, like the outbox: telemetry that changes
every second does not belong in the central database, and ``station status`` must work while that is away).
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.common import DataDirOption, EngineOption, JsonOption, PrecisionOption, print_json

station_app = typer.Typer(help="This station: its outbox, its central database, its line cameras and triggers.",
                          no_args_is_help=True)

STALE_S = 10.0
"""A status file older than this is from a station that is not running (it writes one every second)."""


def line_status(data_dir: Path) -> dict[str, Any] | None:
    """The line station's last figures, with how old they are (``running`` false when stale or unreadable)."""
    from inspection.line.station import read_status

    status = read_status(data_dir)
    if status is None:
        return None
    if "error" in status:
        return {"running": False, **status}
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(str(status.get("updated_at")))).total_seconds()
    except (TypeError, ValueError):
        age = None
    return {**status, "age_s": None if age is None else round(age, 1),
            "running": age is not None and age <= STALE_S}


def station_status(data_dir: Any = None) -> dict[str, Any]:
    """What ``qcline station status`` prints: reachability of the results database and the outbox's backlog."""
    from inspection.settings import load_settings
    from inspection.store.db import create_store_engine, describe
    from inspection.store.outbox import read_status

    settings = load_settings(data_dir=data_dir)
    if not settings.database_url and not (settings.data_dir / "qcline.db").exists():
        return {"status": "down", "database": f"no database at {settings.data_dir} yet", "database_url": "",
                "outbox_enabled": False, "outbox": None, "line": line_status(settings.data_dir)}
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
            "outbox_enabled": settings.outbox_enabled, "outbox": outbox.as_json() if outbox else None,
            "line": line_status(settings.data_dir)}


@station_app.command("status")
def status(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Is the central database reachable, how many results wait in the outbox, and how old is the oldest."""
    state = station_status(data_dir)
    if as_json:
        print_json(state)
        return
    typer.echo(f"station: {state['status']}")
    typer.echo(f"database {state['database_url']}: {state['database']}")
    _echo_line(state["line"])
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


def _echo_line(line: dict[str, Any] | None) -> None:
    if line is None:
        typer.echo("line station: none has run with this data folder")
        return
    if "error" in line:
        typer.echo(f"line station: {line['error']}")
        return
    when = "running" if line["running"] else f"NOT running (figures {line['age_s']} s old)"
    triggers = line.get("triggers", {})
    answered = ", ".join(f"{n} {k}" for k, n in sorted(triggers.get("answered", {}).items())) or "none answered"
    typer.echo(f"line station {line.get('station')}: {when}; queue {line.get('queue')}/{line.get('queue_max')}; "
               f"triggers {triggers.get('received', 0)} received, {answered}, {triggers.get('late', 0)} late")
    for c in line.get("cameras", []):
        age = c.get("last_frame_age_s")
        typer.echo(f"  camera {c['name']} ({c['url']}): {'connected' if c['connected'] else 'DOWN'}, "
                   f"{c['fps']:.1f} fps, last frame {'-' if age is None else f'{age:.2f} s'} ago, "
                   f"{c['frames_in']} in, {c['frames_claimed']} bound to units, {c['frames_dropped']} dropped, "
                   f"{c['reconnects']} reconnects" + (f"; last error: {c['last_error']}" if c["last_error"] else ""))


ConfigOption = Annotated[Path | None, typer.Option("--config", help="Station file (YAML; default: "
                                                   "$QC_STATION_CONFIG). See docs/station.example.yaml.")]


@station_app.command("run")
def run(config: ConfigOption = None, model: Annotated[Path | None, typer.Option(
            "--model", help="Model package (default: $QC_MODEL_PATH, else the champion, else the bundled).")] = None,
        data_dir: DataDirOption = None, engine: EngineOption = None, precision: PrecisionOption = None,
        follow_champion: Annotated[bool, typer.Option(help="Swap in each newly promoted champion.")] = True) -> None:
    """Run a line station: cameras held open, triggers from the line, each unit judged and answered, until SIGTERM
    or Ctrl-C (then the unit in progress is finished and every queued trigger answered)."""
    from api.composition import open_line_station, open_station
    from inspection.errors import ConfigError
    from inspection.line.config import load_station_config
    from inspection.line.station import InlineRunner, answer_json
    from inspection.line.triggers import TriggerAnswer
    from inspection.settings import load_settings

    settings = load_settings(data_dir=data_dir, station_config=config, engine=engine, precision=precision)
    if settings.station_config is None:
        raise ConfigError("no station file: pass --config FILE or set QC_STATION_CONFIG")
    line_config = load_station_config(settings.station_config)
    if line_config.http_triggers:
        typer.echo("note: http triggers need the service (qcline serve with QC_STATION_CONFIG); this process "
                   "takes the station file's other trigger sources", err=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}

    def show(answer: TriggerAnswer) -> None:
        shown = answer_json(answer)
        verdict = shown["verdict"] or "-"  # plain text: one line per answered trigger, greppable from a log
        typer.echo(f"{shown['answered_at'][11:23]} {shown['channel']:6} unit {shown['unit_id']} order "
                   f"{shown['order_id'] or '-'}: {shown['outcome']} {verdict} in {shown['latency_ms']:.0f} ms"
                   + (f" ({shown['error']})" if shown["error"] else ""))

    try:
        with open_station(settings, model) as station:
            inspector = station.inspector()
            line = open_line_station(settings, line_config, InlineRunner(inspector), station.core,
                                     on_answer=[show])
            line.start()
            typer.echo(f"line station {line_config.station}: {len(line_config.cameras)} cameras, "
                       f"{len(line.sources)} trigger sources; Ctrl-C or SIGTERM stops it", err=True)
            try:
                if follow_champion and settings.model_path is None and model is None:
                    with station.following_champion(inspector):
                        while not stop.wait(0.5):
                            pass
                else:
                    while not stop.wait(0.5):
                        pass
            finally:
                started = time.monotonic()
                line.close()
                typer.echo(f"line station stopped in {time.monotonic() - started:.1f} s; "
                           f"{line.stats.received} triggers received, {dict(line.stats.answered)} answered",
                           err=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
