"""Real ``qcline serve`` processes for the durability tests: start, wait until ready, kill, stream frames."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own (not migrated), dropped afterwards; skips the test without a server."""
    import psycopg
    import pytest
    from sqlalchemy.engine import make_url

    from tests.conftest import QC_TEST_POSTGRES_URL_DEFAULT

    base = make_url(os.environ.get("QC_TEST_POSTGRES_URL", QC_TEST_POSTGRES_URL_DEFAULT))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=5)
    except psycopg.Error as e:
        pytest.skip(f"PostgreSQL not reachable at {base.render_as_string(hide_password=True)}: {e}")
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        conn.execute(f'CREATE DATABASE "{name}"')
        yield base.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def station_env(data_dir: Path, model: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
    env |= {"QC_DATA_DIR": str(data_dir), "QC_MODEL_PATH": str(model), "QC_THREADS": "1",
            "PYTHONPATH": str(REPO), "QC_MODEL_POLL_S": "0.5"}
    if database_url:
        env["QC_DATABASE_URL"] = database_url
    return env


def start_serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def wait_ready(base: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"qcline serve exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"qcline serve never became ready:\n{log.read_text()[-3000:]}")


@dataclass
class Sent:
    """One frame a camera means to have recorded: its request and, once answered 200, the answer."""

    key: str
    unit_id: str
    camera_id: str
    data: bytes
    order_id: str = "ORD-1"
    answer: dict[str, object] | None = None


@dataclass
class Camera:
    """Posts frames with Idempotency-Keys; keeps which were answered 200 and which were not (to retry)."""

    base: str
    api_key: str
    answered: list[Sent] = field(default_factory=list)
    unanswered: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, sent: Sent, base: str | None = None, timeout: float = 30) -> httpx.Response | None:
        try:
            return httpx.post(f"{base or self.base}/v1/frames",
                              headers={"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": sent.key},
                              data={"unit_id": sent.unit_id, "order_id": sent.order_id, "camera_id": sent.camera_id},
                              files={"image": ("f.jpg", sent.data, "image/jpeg")}, timeout=timeout)
        except httpx.TransportError:
            return None

    def send(self, sent: Sent, base: str | None = None) -> bool:
        r = self.post(sent, base)
        with self.lock:
            if r is not None and r.status_code == 200:
                sent.answer = r.json()
                self.answered.append(sent)
                return True
            if r is not None and r.status_code not in (503,):
                raise AssertionError(f"unexpected answer {r.status_code}: {r.text}")
            self.unanswered.append(sent)
            return False
