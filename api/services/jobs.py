"""Training runs started over HTTP, run as background jobs.

Each job is a ``qcline train`` child process: torch and ultralytics never load into the serving process
(a station install has neither), a crash or an out-of-memory kill in training cannot take the line down,
and the job runs exactly what an engineer would type. The child appends one JSON line per epoch to a
progress file; a monitor thread copies the latest into the job's row, so ``GET /v1/training-jobs/{id}``
follows it. One job runs at a time: a second request is refused (409) rather than queued behind hours
of training.
"""

from __future__ import annotations

import builtins
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from inspection.errors import ConflictError, NotFoundError, QCError
from inspection.settings import Settings
from inspection.store.training_jobs import TrainingJobRecord, TrainingJobRepository

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")


class TrainingUnavailableError(QCError):
    """This install has no training stack (the ``[train]`` extra); HTTP 503."""


def training_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "ultralytics"))


@dataclass(frozen=True)
class TrainingJob:
    """A training job as recorded; ``log_tail`` (the trainer's last log lines) only when read one by one."""

    id: int
    status: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any]
    error: str
    actor: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    log_tail: tuple[str, ...] | None = None

    @classmethod
    def of(cls, stored: TrainingJobRecord) -> TrainingJob:
        return cls(stored.id, stored.status, stored.params, stored.progress, stored.result, stored.error,
                   stored.actor, stored.created_at.isoformat(),
                   stored.started_at.isoformat() if stored.started_at else None,
                   stored.finished_at.isoformat() if stored.finished_at else None)

    def to_json(self) -> dict[str, Any]:
        body = {"id": self.id, "status": self.status, "params": self.params, "progress": self.progress,
                "result": self.result, "error": self.error, "actor": self.actor, "created_at": self.created_at,
                "started_at": self.started_at, "finished_at": self.finished_at}
        return body if self.log_tail is None else {**body, "log_tail": list(self.log_tail)}


class TrainingJobs:
    """The job state machine (queued / running -> succeeded | failed | cancelled, one active job at a time) and
    the trainer process; the rows are ``inspection.store.training_jobs.TrainingJobRepository``'s."""

    def __init__(self, repository: TrainingJobRepository, settings: Settings, *, poll_s: float = 1.0) -> None:
        self.repository = repository
        self.settings = settings
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._monitor: threading.Thread | None = None
        self._closing = threading.Event()

    def folder(self, job_id: int) -> Path:
        return self.settings.data_dir / "jobs" / str(job_id)

    # -- reading ------------------------------------------------------------------------------------

    def get(self, job_id: int) -> TrainingJob:
        stored = self.repository.get(job_id)
        if stored is None:
            raise NotFoundError(f"training job {job_id} does not exist")
        return replace(TrainingJob.of(stored), log_tail=tuple(_tail(self.folder(job_id) / "train.log", 40)))

    def list(self, limit: int = 50) -> builtins.list[TrainingJob]:
        return [TrainingJob.of(r) for r in self.repository.latest(limit)]

    # -- lifecycle ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """Jobs left running by a previous process are marked failed; starting the same job again resumes
        its run from the last checkpoint (the run folder is named by the run's inputs)."""
        self.repository.finish_all(ACTIVE, "failed",
                                   error="interrupted: the service stopped while it ran; start it again to resume")

    def start(self, params: dict[str, Any], actor: str) -> TrainingJob:
        """Validate nothing here but the one-job rule; the caller checked the dataset and base exist."""
        if not training_available():
            raise TrainingUnavailableError("this install has no training stack: pip install 'qcline[train]'")
        with self._lock:
            job, started = self.repository.add_unless(ACTIVE, status="running", params=params, actor=actor)
            if not started:
                raise ConflictError(f"training job {job.id} is still {job.status}: one job at a time "
                                    "(cancel it or wait for it)")
            job_id = job.id
            try:
                self._spawn(job_id, params)
            except OSError as e:
                self._finish(job_id, "failed", error=f"could not start the trainer: {e}")
                raise QCError(f"could not start the trainer: {e}") from e
        return self.get(job_id)

    def _command(self, params: dict[str, Any], progress: Path) -> builtins.list[str]:
        cmd = [sys.executable, "-m", "api.cli", "train", "--dataset", str(params["dataset"]),
               "--base", str(params["base"]), "--epochs", str(params["epochs"]), "--imgsz", str(params["imgsz"]),
               "--batch", str(params["batch"]), "--device", str(params["device"]),
               "--data-dir", str(self.settings.data_dir.resolve()), "--json", "--progress-file", str(progress)]
        if params.get("int8"):
            cmd.append("--int8")
        return cmd

    def _spawn(self, job_id: int, params: dict[str, Any]) -> None:
        folder = self.folder(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        progress = folder / "progress.jsonl"
        env = dict(os.environ)
        env["QC_DATABASE_URL"] = self.settings.resolved_database_url
        env.setdefault("YOLO_OFFLINE", "1")
        with (folder / "result.json").open("wb") as out, (folder / "train.log").open("wb") as err:
            process = subprocess.Popen(self._command(params, progress), stdout=out, stderr=err, env=env,
                                       cwd=Path(__file__).resolve().parents[2], start_new_session=True)
        self._process = process
        self._monitor = threading.Thread(target=self._watch, args=(job_id, process, folder),
                                         name=f"qcline-training-job-{job_id}", daemon=True)
        self._monitor.start()
        log.info("training job %d started (pid %d): %s", job_id, process.pid, params)

    def _watch(self, job_id: int, process: subprocess.Popen[bytes], folder: Path) -> None:
        last = ""
        while True:
            try:
                code = process.wait(timeout=self.poll_s)
            except subprocess.TimeoutExpired:
                code = None
            line = _last_line(folder / "progress.jsonl")
            if line and line != last:
                last = line
                try:
                    self._update_progress(job_id, json.loads(line))
                except (ValueError, QCError) as e:
                    log.warning("training job %d: progress not recorded: %s", job_id, e)
            if code is not None:
                break
        if self._current_status(job_id) == "cancelled":
            return
        if code == 0:
            try:
                result = json.loads((folder / "result.json").read_text() or "{}")
            except ValueError:
                result = {}
            self._finish(job_id, "succeeded", result=result)
        else:
            self._finish(job_id, "failed", error=f"trainer exited with code {code}: "
                                                 + " | ".join(_tail(folder / "train.log", 5)))

    def _current_status(self, job_id: int) -> str:
        stored = self.repository.get(job_id)
        return stored.status if stored else ""

    def _update_progress(self, job_id: int, progress: dict[str, Any]) -> None:
        self.repository.set_progress(job_id, progress)

    def _finish(self, job_id: int, status: str, *, result: dict[str, Any] | None = None, error: str = "") -> None:
        self.repository.finish(job_id, status, result=result or {}, error=error)
        log.info("training job %d %s%s", job_id, status, f": {error}" if error else "")

    def cancel(self, job_id: int) -> TrainingJob:
        job = self.get(job_id)
        if job.status not in ACTIVE:
            raise ConflictError(f"training job {job_id} is already {job.status}")
        self._finish(job_id, "cancelled", error="cancelled")
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        return self.get(job_id)

    def close(self) -> None:
        """The service stops: a running trainer is stopped too (its run resumes when started again)."""
        process = self._process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if self._monitor is not None:
            self._monitor.join(timeout=5)


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text().strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _tail(path: Path, n: int) -> list[str]:
    try:
        return path.read_text(errors="replace").strip().splitlines()[-n:]
    except OSError:
        return []
