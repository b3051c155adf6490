"""``qcline evidence check``: is this station's evidence store the one meant, and may the station use it?

A plant installer sets ``QC_EVIDENCE_URL`` and the S3 settings on 50 line PCs; this command answers, per
PC, where frames would go and whether a put, a read and a delete there work with these keys (a probe
object of its own, removed again), so a wrong bucket, key or certificate is found before the line runs.
"""

from __future__ import annotations

import secrets
import time

import typer

from api.cli.common import DataDirOption, JsonOption, print_json
from inspection.errors import StoreError
from inspection.settings import load_settings
from inspection.store.backends import open_evidence_store
from inspection.store.evidence_s3 import S3EvidenceStore

evidence_app = typer.Typer(help="The evidence store (local folder or S3 bucket).", no_args_is_help=True)


@evidence_app.command("check")
def check_cmd(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Put, read and delete a probe frame in the configured evidence store; exit 1 with the reason if not."""
    settings = load_settings(data_dir=data_dir)
    store = open_evidence_store(settings)
    probe = b"qcline evidence probe " + secrets.token_hex(16).encode()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> None:
        timings[f"{name}_ms"] = (time.perf_counter() - since) * 1e3

    if isinstance(store, S3EvidenceStore):
        t = time.perf_counter()
        store.check()
        lap("bucket", t)
    t = time.perf_counter()
    sha, ref = store.put_file(probe, ".bin")
    lap("put", t)
    t = time.perf_counter()
    if store.read(sha) != probe:
        raise StoreError(f"evidence store {store.describe()} returned other bytes than were put")
    lap("read", t)
    t = time.perf_counter()
    if not store.delete(sha):
        raise StoreError(f"evidence store {store.describe()}: the probe {ref} could not be deleted")
    lap("delete", t)
    report = {"store": store.describe(), "backend": "s3" if isinstance(store, S3EvidenceStore) else "local",
              "ok": True, **{k: round(v, 2) for k, v in timings.items()}}
    if as_json:
        print_json(report)
        return
    steps = ", ".join(f"{k[:-3]} {v:.1f} ms" for k, v in timings.items())
    typer.echo(f"evidence store {report['store']}: ok ({steps})")
