"""``qcline evidence check`` as an installer runs it: a real subprocess against the real S3 server, the
local default, and an object store that is not there (one line on stderr, exit 1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.s3_server import S3Server


def check(env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "evidence", "check", *extra], capture_output=True,
                          text=True, env=env, timeout=120)


def station_env(tmp_path: Path, **qc: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QC_", "AWS_"))}
    return base | {"QC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": os.getcwd()} | qc


def test_check_passes_on_the_s3_bucket_and_leaves_nothing(s3_server: S3Server, s3_bucket: str,
                                                          tmp_path: Path) -> None:
    env = station_env(tmp_path, QC_EVIDENCE_URL=f"s3://{s3_bucket}/line-07", QC_S3_ENDPOINT_URL=s3_server.endpoint,
                      QC_S3_ACCESS_KEY=s3_server.access_key, QC_S3_SECRET_KEY=s3_server.secret_key)
    done = check(env, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["backend"] == "s3" and report["store"].startswith(f"s3://{s3_bucket}/line-07")
    assert {"bucket_ms", "put_ms", "read_ms", "delete_ms"} <= set(report)
    assert s3_server.client().list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0  # the probe is gone
    assert s3_server.secret_key not in done.stdout + done.stderr


def test_check_on_the_local_default(tmp_path: Path) -> None:
    done = check(station_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"evidence store {tmp_path / 'data' / 'frames'}: ok")


def test_check_names_what_is_wrong(s3_server: S3Server, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    keys = {"QC_S3_ACCESS_KEY": s3_server.access_key, "QC_S3_SECRET_KEY": s3_server.secret_key}
    for qc, expected in [
        ({"QC_EVIDENCE_URL": "s3://qc-evidence/x", "QC_S3_ENDPOINT_URL": closed, **keys}, "unreachable"),
        ({"QC_EVIDENCE_URL": "s3://qc-no-such-bucket/x", "QC_S3_ENDPOINT_URL": s3_server.endpoint, **keys},
         "does not exist"),
        ({"QC_EVIDENCE_URL": "s3://Bad_Bucket/x"}, "not a valid S3 bucket name"),
    ]:
        done = check(station_env(tmp_path, QC_S3_TIMEOUT_S="0.5", QC_S3_MAX_ATTEMPTS="1", **qc))
        assert done.returncode == 1, (qc, done.stdout, done.stderr)
        said = " ".join(done.stderr.split())  # rich wraps long lines when stderr is not a terminal
        assert said.startswith("error:") and expected in said and "Traceback" not in said, said
