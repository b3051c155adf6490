"""What every drill shares: a real ``qcline serve`` process, its keys and orders, a fleet of cameras, row counts.

The drills judge the service from the outside, as a plant would: HTTP requests, process signals, the rows
in the database. Nothing here imports the service's internals except the project's URL normaliser (so a
plain ``postgresql://`` URL reaches the installed driver the same way the service does), which keeps the
drills valid while the service's insides change.

Pieces:

* ``Station``: a data dir (own ``QC_DATA_DIR``), an optional database URL, orders imported and a camera
  key created through the CLI; ``start()`` / ``kill9()`` / ``stop()`` a ``qcline serve`` subprocess on a
  fixed loopback port, so a restart comes back where the cameras expect it.
* ``CameraFleet``: N camera threads posting real JPEGs as multipart ``POST /v1/frames``, each request with
  its own unit id and ``Idempotency-Key``; a request that was not answered 200 (the service died, refused,
  answered 5xx or 409) is retried with the same key until it is, so every frame ends acknowledged or is
  reported as given up. Every attempt is recorded.
* ``count_rows`` / ``audit``: which acknowledged frames are missing from the database, and which are stored
  more than once.
* ``throwaway_postgres``: a fresh PostgreSQL database for one drill, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python drills/x.py`` from a checkout
    sys.path.insert(0, str(ROOT))

from drills.load import BOUNDARY, ORDER_ID  # noqa: E402 (after sys.path)
from drills.load import images as _images  # noqa: E402
from drills.load import multipart as _multipart  # noqa: E402
from drills.load import percentile as _percentile  # noqa: E402

DEMO_ORDERS = ROOT / "api" / "demo" / "orders.yaml"
NEU_DET = ROOT.parent / "shared" / "datasets" / "neu-det"
DEMO_FRAMES = ROOT / "api" / "demo" / "frames"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
STATUS_DOWN = 0  # a transport error: no HTTP answer at all

log = logging.getLogger("drills")

__all__ = [
    "BOUNDARY", "ORDER_ID", "CameraFleet", "DrillError", "Station", "audit", "count_rows", "emit", "final_audit",
    "free_port", "image_files", "linear_slope", "main_guard", "percentile", "setup_logging", "throwaway_postgres",
]

percentile = _percentile


class DrillError(RuntimeError):
    """The drill could not run (a peer is missing, the service did not start): no figures, exit code 2."""


def main_guard(run: Callable[[], dict[str, Any]]) -> int:
    """Run a drill: its JSON line and exit 0 (promise kept) / 1 (broken), or a one-line reason and exit 2."""
    try:
        result = run()
    except DrillError as e:
        sys.stderr.write(f"drill could not run: {e}\n")
        return 2
    emit(result)
    return 0 if result.get("ok") else 1


def setup_logging(verbose: bool = False) -> None:
    """Progress to stderr; stdout carries only the drill's one JSON line."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="[drills %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("drills").setLevel(logging.DEBUG if verbose else logging.INFO)


def emit(figures: dict[str, Any]) -> None:
    """The drill's result: one JSON line on stdout."""
    sys.stdout.write(json.dumps(figures, sort_keys=False) + "\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_files(limit: int = 64, data: Path | None = None, seed: int = 0) -> list[Path]:
    """Real NEU-DET images (a seeded sample of ``limit``) when the shared dataset is here, else the demo frames."""
    folder = data or (NEU_DET if (NEU_DET / "images").is_dir() else DEMO_FRAMES)
    files = _images(folder, 0)
    if limit and len(files) > limit:
        files = sorted(random.Random(seed).sample(files, limit))
    return files


def linear_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys over xs (None with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


# -- the service process ------------------------------------------------------------------------------------

@dataclass
class Station:
    """One station's data dir and service process. ``prepare()`` once, then ``start()`` / ``kill9()`` at will."""

    workdir: Path
    database_url: str | None = None
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_level: str = "warning"
    camera_key: str = ""
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    service_root: Path = field(default_factory=lambda: Path(os.environ.get("DRILLS_SERVICE_ROOT") or ROOT))
    """The checkout whose ``qcline`` is drilled: this one, or ``$DRILLS_SERVICE_ROOT`` (another branch's worktree,
    to see a fix before it is merged; nothing is written into it)."""

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "service.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}  # nothing stray from the shell
        env["QC_DATA_DIR"] = str(self.data_dir)
        env["QC_METRICS_PUBLIC"] = "1"  # the drill reads /metrics of its own throw-away service on loopback
        if self.database_url:
            env["QC_DATABASE_URL"] = self.database_url
        root = self.service_root.resolve()
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
        if root != ROOT:
            env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave the other checkout as it is
        env.update(self.extra_env)
        return env

    @property
    def store_url(self) -> str:
        """The database the service writes to (what ``count_rows`` reads)."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'qcline.db').resolve()}"

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300.0) -> str:
        """Run ``qcline ARGS`` (this checkout's code) on this station's data; stdout, or an error with stderr."""
        done = subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=self.service_root, env=env or self.env,
                              capture_output=True, text=True, check=False, timeout=timeout)
        if done.returncode != 0:
            raise DrillError(f"qcline {' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def cli_json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.cli(*args, "--json", env=env).strip().splitlines()[-1])

    def prepare(self, orders: Path = DEMO_ORDERS, *, env: dict[str, str] | None = None) -> None:
        """Orders imported and a camera key created through the CLI (as an installer would)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cli("orders", "import", str(orders), env=env)
        self.camera_key = self.cli_json("keys", "create", "--role", "camera", "--name", "drill-cameras",
                                        env=env)["key"]

    def start(self, wait: bool = True, timeout: float = 180.0) -> float:
        """Start ``qcline serve`` on this station's port; returns seconds until ``/readyz`` said 200."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the service is already running")
        started = time.monotonic()
        with self.log_path.open("ab") as out:
            out.write(f"\n===== start {self.starts + 1} =====\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--log-level", self.log_level], cwd=self.service_root, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.starts += 1
        if wait:
            self.wait_ready(timeout)
        return time.monotonic() - started

    def wait_ready(self, timeout: float = 180.0) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    code = None if self.process is None else self.process.returncode
                    raise DrillError(f"service exited ({code}) before it was ready:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError, ValueError):
                    response = client.get("/readyz")
                    if response.status_code == 200:
                        state: dict[str, Any] = response.json()
                        return state
                time.sleep(0.1)
        raise DrillError(f"service not ready after {timeout:.0f} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook, no flush, as a power cut of the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 60.0) -> int | None:
        """A graceful stop (SIGINT, as Ctrl-C or systemd), SIGKILL if it hangs."""
        p = self.process
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("service did not stop on SIGINT within %.0f s; killing it", timeout)
                p.kill()
                p.wait(30)
        return p.returncode

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, path: str, timeout: float = 5.0) -> Any:
        """GET a path of the running service: (status, parsed JSON or text), or (0, error text)."""
        import httpx

        try:
            r = httpx.get(self.url + path, timeout=timeout)
        except httpx.HTTPError as e:
            return STATUS_DOWN, f"{type(e).__name__}: {e}"
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return fn
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # looked up here, not in the forked child (other threads may hold the import lock)


def _die_with_parent() -> None:
    """In the child before exec (Linux): SIGKILL it when the drill dies, so an interrupted drill leaves no
    service running. Best effort; elsewhere a no-op."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            log.info("kept %s", path)
        else:
            shutil.rmtree(path, ignore_errors=True)


# -- cameras ----------------------------------------------------------------------------------------------

@dataclass
class Attempt:
    at: float          # monotonic time the attempt was sent
    seconds: float     # until its answer (or its transport error)
    status: int        # HTTP status, 0 for no answer
    detail: str = ""   # error text for a non-200


@dataclass
class FrameRecord:
    camera: int
    seq: int
    key: str
    unit_id: str
    camera_id: str
    attempts: list[Attempt] = field(default_factory=list)
    acked: bool = False
    acked_at: float | None = None
    replayed: bool = False
    model_sha256: str = ""
    frame_sha256: str = ""
    gave_up: bool = False

    @property
    def statuses(self) -> list[int]:
        return [a.status for a in self.attempts]


class CameraFleet:
    """``cameras`` threads, each a closed loop: send a frame, wait for its answer, retry it until it is acked.

    Each frame is a new unit of order ``ORD-24-1003`` (one required view, ``top``), so one frame completes a
    unit and nothing is deduplicated unless it is the same request again. ``retry_s`` is the pause before a
    retry (a camera does not hammer a service that is down); ``give_up_s`` bounds how long one frame is retried
    (from its first attempt), ``drain_s`` how long the frame in flight at ``stop()`` is still retried.
    ``pace_s`` puts a pause between frames (0: as fast as answers come).
    """

    def __init__(self, url: str, key: str, cameras: int, images: Sequence[Path], *, run_id: str | None = None,
                 retry_s: float = 0.2, give_up_s: float = 300.0, drain_s: float = 120.0, timeout_s: float = 30.0,
                 pace_s: float = 0.0, max_frames: int = 0, seed: int = 0) -> None:
        if cameras < 1:
            raise ValueError("cameras must be >= 1")
        self.url, self.key, self.cameras = url, key, cameras
        self.run_id = run_id or secrets.token_hex(4)
        self.retry_s, self.give_up_s, self.drain_s, self.timeout_s = retry_s, give_up_s, drain_s, timeout_s
        self.pace_s, self.max_frames = pace_s, max_frames
        blobs = [p.read_bytes() for p in images]
        if not blobs:
            raise ValueError("no images to send")
        rng = random.Random(seed)
        self._bodies = [[_multipart(blobs[rng.randrange(len(blobs))]) for _ in range(min(32, len(blobs)))]
                        for _ in range(cameras)]
        self.records: list[list[FrameRecord]] = [[] for _ in range(cameras)]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_at: float | None = None
        self._threads: list[threading.Thread] = []
        self.on_answer: Callable[[FrameRecord, Attempt], None] | None = None

    def start(self) -> CameraFleet:
        for i in range(self.cameras):
            t = threading.Thread(target=self._camera, args=(i,), name=f"camera-{i}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self, join: bool = True) -> None:
        """No new frames; the frame each camera has in flight is still retried for up to ``drain_s``."""
        self._stop_at = time.monotonic()
        self._stop.set()
        if join:
            for t in self._threads:
                t.join(self.drain_s + self.timeout_s + 10)

    def all_records(self) -> list[FrameRecord]:
        with self._lock:
            return [r for per in self.records for r in per]

    def acked(self) -> list[FrameRecord]:
        return [r for r in self.all_records() if r.acked]

    def attempts_between(self, start: float, end: float) -> list[Attempt]:
        """Attempts whose answer came back in [start, end) (monotonic)."""
        with self._lock:
            return [a for per in self.records for r in per for a in r.attempts if start <= a.at + a.seconds < end]

    def _camera(self, index: int) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.key}",
                   "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        bodies = self._bodies[index]
        camera_id = "top"
        seq = 0
        with httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout_s,
                          limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)) as client:
            while not self._stop.is_set() and (not self.max_frames or seq < self.max_frames):
                unit = f"DR-{self.run_id}-c{index}-{seq}"
                record = FrameRecord(index, seq, f"{self.run_id}-c{index}-{seq}", unit, camera_id)
                with self._lock:
                    self.records[index].append(record)
                head, tail = bodies[seq % len(bodies)]
                self._send_until_acked(client, record, head + unit.encode() + tail)
                seq += 1
                if self.pace_s:
                    self._stop.wait(self.pace_s)

    def _send_until_acked(self, client: Any, record: FrameRecord, body: bytes) -> None:
        import httpx

        first = time.monotonic()
        while True:
            sent = time.monotonic()
            status, detail, payload, replayed = STATUS_DOWN, "", None, False
            pause = self.retry_s
            try:
                r = client.post("/v1/frames", content=body, headers={"Idempotency-Key": record.key})
                status = r.status_code
                if status == 200:
                    payload = r.json()
                    replayed = r.headers.get("Idempotent-Replayed") == "true"
                else:
                    detail = r.text[:200]
                    with contextlib.suppress(ValueError):  # back-pressure: honour Retry-After, within reason
                        pause = min(max(float(r.headers.get("Retry-After", "")), self.retry_s), 2.0)
            except (httpx.HTTPError, ValueError) as e:
                detail = f"{type(e).__name__}: {e}"[:200]
            attempt = Attempt(sent, time.monotonic() - sent, status, detail)
            with self._lock:
                record.attempts.append(attempt)
                if payload is not None:
                    record.acked, record.acked_at = True, sent + attempt.seconds
                    record.replayed = replayed
                    record.model_sha256 = str(payload.get("model_sha256", ""))
                    record.frame_sha256 = str(payload.get("frame_sha256", ""))
            if self.on_answer is not None:
                self.on_answer(record, attempt)
            if record.acked:
                return
            if 400 <= status < 500 and status not in (408, 409, 429):
                record.gave_up = True  # a client error: retrying the same request cannot help
                return
            now = time.monotonic()
            if now - first > self.give_up_s or (self._stop_at is not None and now - self._stop_at > self.drain_s):
                record.gave_up = True
                return
            time.sleep(pause)


def summarize(records: Sequence[FrameRecord]) -> dict[str, Any]:
    """What the cameras saw: frames, acks, attempts by status, frames that needed retries or were given up."""
    by_status: dict[str, int] = {}
    for r in records:
        for a in r.attempts:
            name = "no_answer" if a.status == STATUS_DOWN else str(a.status)
            by_status[name] = by_status.get(name, 0) + 1
    return {
        "frames": len(records),
        "acknowledged": sum(r.acked for r in records),
        "attempts": sum(len(r.attempts) for r in records),
        "attempts_by_status": dict(sorted(by_status.items())),
        "retried_frames": sum(len(r.attempts) > 1 for r in records),
        "replayed_acks": sum(r.acked and r.replayed for r in records),
        "gave_up": sum(r.gave_up for r in records),
        "conflict_409_frames": sum(409 in r.statuses for r in records),
    }


def error_samples(records: Sequence[FrameRecord], limit: int = 3) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for a in r.attempts:
            if a.status not in (200, STATUS_DOWN) and a.detail:
                seen.setdefault(f"{a.status}: {a.detail[:160]}", None)
    return list(seen)[:limit]


# -- the database ------------------------------------------------------------------------------------------

def count_rows(store_url: str, unit_prefix: str) -> dict[tuple[str, str], int]:
    """Inspection rows per (unit_id, camera_id) for units starting with ``unit_prefix``: the stored truth."""
    from sqlalchemy import create_engine, text

    from inspection.store.db import normalise_url

    engine = create_engine(normalise_url(store_url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT unit_id, camera_id, count(*) FROM inspections WHERE unit_id LIKE :p "
                "GROUP BY unit_id, camera_id"), {"p": unit_prefix + "%"}).all()
    finally:
        engine.dispose()
    return {(str(u), str(c)): int(n) for u, c, n in rows}


def store_facts(store_url: str, unit_prefix: str, acked_units: set[str]) -> dict[str, int]:
    """Beyond the frame rows: units of acknowledged frames without a verdict (each drill frame completes its
    unit), unit verdicts without a frame row, and evidence files that a row names but that are not on disk
    (local paths only; an object-store key is not checked here)."""
    from sqlalchemy import create_engine, text

    from inspection.store.db import normalise_url

    engine = create_engine(normalise_url(store_url))
    try:
        with engine.connect() as conn:
            units = {str(u): v for u, v in conn.execute(text(
                "SELECT id, verdict FROM units WHERE id LIKE :p"), {"p": unit_prefix + "%"}).all()}
            framed = {str(u) for (u,) in conn.execute(text(
                "SELECT DISTINCT unit_id FROM inspections WHERE unit_id LIKE :p"), {"p": unit_prefix + "%"}).all()}
            paths = [str(p) for (p,) in conn.execute(text(
                "SELECT evidence_path FROM inspections WHERE unit_id LIKE :p AND evidence_path IS NOT NULL"),
                {"p": unit_prefix + "%"}).all()]
    finally:
        engine.dispose()
    return {
        "acked_units_without_verdict": sum(1 for u in acked_units if units.get(u) is None),
        "unit_verdicts_without_frames": sum(1 for u, v in units.items() if v is not None and u not in framed),
        "evidence_files_missing": sum(1 for p in paths if os.path.isabs(p) and not os.path.exists(p)),
        "evidence_files": len(paths),
    }


def audit(records: Sequence[FrameRecord], rows: dict[tuple[str, str], int]) -> dict[str, Any]:
    """Acknowledged frames missing from the database, and frames stored more than once (both must be 0)."""
    acked = [r for r in records if r.acked]
    missing = [r for r in acked if rows.get((r.unit_id, r.camera_id), 0) == 0]
    duplicated = sum(n - 1 for n in rows.values() if n > 1)
    unacked_stored = sum(1 for r in records if not r.acked and rows.get((r.unit_id, r.camera_id), 0))
    return {
        "acknowledged": len(acked),
        "missing": len(missing),
        "duplicated": duplicated,
        "stored_rows": sum(rows.values()),
        "stored_but_not_acknowledged": unacked_stored,
        "missing_samples": [r.key for r in missing[:5]],
    }


STORE_FACTS = ("acked_units_without_verdict", "unit_verdicts_without_frames", "evidence_files_missing")


def final_audit(store_url: str, fleet: CameraFleet) -> dict[str, Any]:
    """``audit`` of everything the fleet sent against the database, plus ``store_facts``."""
    records = fleet.all_records()
    prefix = f"DR-{fleet.run_id}-"
    figures = audit(records, count_rows(store_url, prefix))
    figures.update(store_facts(store_url, prefix, {r.unit_id for r in records if r.acked}))
    return figures


# -- PostgreSQL -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def throwaway_postgres(server_url: str | None = None) -> Iterator[str]:
    """Create ``qcline_drill_<hex>`` on the server (``QC_TEST_POSTGRES_URL`` or 127.0.0.1:5432), yield its URL,
    drop it afterwards. Never touches another database."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(server_url or os.environ.get("QC_TEST_POSTGRES_URL", DEFAULT_POSTGRES)).set(
        drivername="postgresql")
    admin = base.render_as_string(hide_password=False)
    name = f"qcline_drill_{secrets.token_hex(5)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as e:
        raise DrillError(f"PostgreSQL at {base.render_as_string(hide_password=True)} is not usable for a "
                         f"throw-away database (start it, or pass --database-url / QC_TEST_POSTGRES_URL): {e}") from e
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_host_port(url: str, host: str, port: int) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


def host_port(url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.host or "127.0.0.1", u.port or 5432


# -- the service's own figures -------------------------------------------------------------------------------

_BACKLOG_KEY = re.compile(r"backlog|outbox|pending", re.IGNORECASE)
_GAUGE = re.compile(r"^(qcline_\w+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.MULTILINE)
_OUTBOX_COUNT = re.compile(r"outbox_\w*(size|pending|depth|frames|results|rows|items|length)$")
_NOT_A_COUNT = ("age", "bytes", "seconds", "_created", "_total", "_ratio", "_limit", "_capacity", "_free")


def backlog_from_readyz(state: Any) -> int | None:
    """The outbox backlog in ``/readyz``'s answer, wherever the service puts it (None: it says nothing)."""
    if isinstance(state, dict):
        for k, v in state.items():
            if _BACKLOG_KEY.search(str(k)):
                if isinstance(v, bool):
                    continue
                if isinstance(v, int | float):
                    return int(v)
                if isinstance(v, dict):
                    for name in ("size", "count", "frames", "results", "rows", "items", "pending", "backlog"):
                        if isinstance(v.get(name), int | float) and not isinstance(v.get(name), bool):
                            return int(v[name])
            found = backlog_from_readyz(v) if isinstance(v, dict) else None
            if found is not None:
                return found
    return None


def backlog_from_metrics(text: str) -> int | None:
    """The backlog gauge(s) in ``/metrics``: ``qcline_*backlog*`` (else ``qcline_outbox_*size`` / ``*pending`` ...),
    summed over labels; ages, sizes in bytes, counters and limits left out. None when there is none."""
    gauges = [(m.group(1), float(m.group(2))) for m in _GAUGE.finditer(text)
              if not any(part in m.group(1) for part in _NOT_A_COUNT)]
    names = [n for n, _ in gauges if "backlog" in n] or [n for n, _ in gauges if _OUTBOX_COUNT.search(n)]
    if not names:
        return None
    return int(sum(v for n, v in gauges if n == names[0]))  # one gauge (over its labels): no double count


def rss_mb(pid: int) -> float | None:
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 1e6
    except Exception:  # the process is gone or psutil is missing: no sample
        return None
