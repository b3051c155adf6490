"""``qcline``: the command line for stations, operators and engineers.

Every command turns a ``QCError`` into one clear line on stderr and a non-zero exit code (1: bad input
or configuration, 3: an unknown id); a traceback is a bug.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape

from api.cli.audit import audit_app
from api.cli.calibrate import calibrate_app
from api.cli.common import (
    err,
    missing_train_extra,
)
from api.cli.datasets import datasets_app
from api.cli.evidence import evidence_app
from api.cli.inspect import inspect_app
from api.cli.models import registry_app
from api.cli.orders import orders_app
from api.cli.report import report_app
from api.cli.review import review_app
from api.cli.serve import keys_app, serve_app
from api.cli.station import station_app
from api.cli.training import training_app
from api.cli.units import units_app
from inspection.errors import NotFoundError, QCError
from inspection.settings import default_data_dir

APP_HELP = (
    "qcline: AI vision quality control for build-to-order lines.\n\n"
    f"Data folder (SQLite database, evidence frames, registry, snapshots): $QC_DATA_DIR, else {default_data_dir()} "
    "(the same from any working folder; --data-dir on a command wins). QC_DATABASE_URL points at PostgreSQL "
    "instead of the SQLite file.\n\n"
    "Model a station runs: --model, else $QC_MODEL_PATH, else the registry's champion, else the bundled "
    "models/neu-det-yolov8n (a fresh registry starts with it as champion).")
app = typer.Typer(help=APP_HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.registered_commands.extend(inspect_app.registered_commands)  # `qcline inspect`, `detect`, `demo`
app.add_typer(orders_app, name="orders")
app.add_typer(units_app, name="units")
app.add_typer(report_app, name="report")
app.add_typer(registry_app, name="models", help="Model packages and the registry: candidates, the champion, the gate.")
app.add_typer(datasets_app, name="datasets")
app.add_typer(evidence_app, name="evidence")
app.registered_commands.extend(training_app.registered_commands)  # `qcline train`, `qcline evaluate`
app.add_typer(review_app, name="review")
app.add_typer(keys_app, name="keys")
app.add_typer(station_app, name="station")
app.add_typer(calibrate_app, name="calibrate")
app.add_typer(audit_app, name="audit")
app.registered_commands.extend(serve_app.registered_commands)  # `qcline serve`


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"qcline {version('qcline')}")
        except PackageNotFoundError:  # running from a source tree that was never pip-installed
            typer.echo("qcline (not installed: run from a source tree)")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More logging on stderr (-v info, -vv debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    _show_version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.getLogger().setLevel(level)



# -- entry point ----------------------------------------------------------------------------------------
@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    try:
        yield
    except NotFoundError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(3) from None
    except QCError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise SystemExit(1) from None
    except ModuleNotFoundError as exc:
        hint = missing_train_extra(exc)
        if hint is None:
            raise
        err.print(f"[red]error:[/] {escape(str(hint))}")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with _errors_to_exit_codes():
        app(standalone_mode=True)


if __name__ == "__main__":
    main()
