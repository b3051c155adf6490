"""``qcline serve`` and ``qcline keys``: the HTTP service and its API keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import DataDirOption, EngineOption, PrecisionOption
from api.services.auth import ApiKeyService

serve_app = typer.Typer()
keys_app = typer.Typer(help="API keys per role (camera, operator, engineer, admin, metrics).", no_args_is_help=True)



@serve_app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default $QC_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default $QC_PORT or 8000).")] = None,
    data_dir: DataDirOption = None,
    model: Annotated[Path | None, typer.Option("--model", help="Model package (default: the registry's champion, "
                                                               "else the bundled model).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    ssl_certfile: Annotated[Path | None, typer.Option(help="Serve HTTPS with this PEM certificate (chain).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="The certificate's PEM private key.")] = None,
    engine: EngineOption = None, precision: PrecisionOption = None,
) -> None:
    """Serve the API, the review page (/review) and the docs (/docs) with uvicorn."""
    import uvicorn

    from api.config import load_service_settings
    from api.http.app import create_app
    from api.http.server import header_timeout_protocol
    from inspection.errors import ConfigError

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            raise ConfigError(f"TLS file not found: {path}")
    settings = load_service_settings(host=host, port=port, data_dir=data_dir, model_path=model, engine=engine,
                                     precision=precision)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=30, timeout_keep_alive=int(max(1, settings.timeout_keep_alive_s)),
                http=header_timeout_protocol(settings.header_timeout_s), server_header=False,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)


def _keys(data_dir: Path | None, *, create: bool = False) -> ApiKeyService:
    from api.cli.common import require_database
    from inspection.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    if not create:  # listing or revoking keys of a database that is not there: say where we looked
        require_database(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ApiKeyService.open(settings.resolved_database_url)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="camera (send frames), operator (review), engineer (models, datasets, "
                                           "training), metrics (read /metrics: a scraper) or admin (keys, "
                                           "and everything else).")],
    name: Annotated[str, typer.Option(help="Who or what holds it; recorded as the actor of its decisions.")] = "",
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {\"key\", \"role\", \"id\", \"name\"}.")] = False,
) -> None:
    """Create a key. The secret is printed once; only its hash is stored."""
    from api.services.auth import Role

    with _keys(data_dir, create=True) as keys:
        secret, record = keys.create(Role.parse(role), name)
    if as_json:
        sys.stdout.write(json.dumps({"key": secret, "role": record.role, "id": record.id,
                                     "name": record.name}) + "\n")
        return
    typer.echo(f"key {record.id} ({record.name}, role {record.role}): {secret}")
    typer.echo("store it now: it cannot be shown again", err=True)


@keys_app.command("list")
def keys_list(data_dir: DataDirOption = None,
              as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Keys with their role, prefix and state (never the secrets)."""
    with _keys(data_dir) as keys:
        rows = keys.list()
    if as_json:
        sys.stdout.write(json.dumps([r.to_json() for r in rows]) + "\n")
        return
    for r in rows:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
        typer.echo(f"{r.id:>4}  {r.role:<9} {r.prefix}…  {r.name:<24} {state}")


@keys_app.command("revoke")
def keys_revoke(key_id: int, data_dir: DataDirOption = None) -> None:
    """Revoke a key; its review-page sessions end too."""
    with _keys(data_dir) as keys:
        record = keys.revoke(key_id)
    typer.echo(f"key {record.id} ({record.name}) revoked at {record.revoked_at}")
