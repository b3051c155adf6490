"""A training run started over HTTP: a real ``qcline train`` child process, followed epoch by epoch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import pytest

from api.services.auth import Role
from datasets.library import DatasetLibrary
from tests.api.conftest import Service
from tests.datasets.test_voc_and_snapshot import make_voc

pytest.importorskip("ultralytics", reason="training needs the [train] extra")
ENG = Role.ENGINEER


def _snapshot(service: Service, tmp_path: Path) -> str:
    items = {f"img{i}": [("blob", 10 + i, 10, 40 + i, 35)] for i in range(8)}
    root = make_voc(tmp_path / "voc", items)
    for i in range(8):
        path = root / "images" / f"img{i}.jpg"
        image = cv2.imread(str(path))
        cv2.rectangle(image, (10 + i, 10), (40 + i, 35), (0, 0, 0), -1)
        cv2.imwrite(str(path), image)
    outcome = DatasetLibrary(service.ctx.settings.data_dir / "datasets").import_path(root, "voc")
    return str(outcome.snapshot.id)


def _wait(service: Service, job_id: int, done: tuple[str, ...], timeout: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = service.client.get(f"/v1/training-jobs/{job_id}", headers=service.auth(ENG)).json()
        if job["status"] in done:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish: {job}")


@pytest.mark.slow
def test_a_training_job_runs_reports_progress_and_registers_a_candidate(service: Service, tmp_path: Path) -> None:
    snapshot = _snapshot(service, tmp_path)
    listed = service.client.get("/v1/datasets", headers=service.auth(ENG)).json()
    assert [d["id"] for d in listed] == [snapshot]
    detail = service.client.get(f"/v1/datasets/{snapshot[:10]}", headers=service.auth(ENG)).json()
    assert detail["classes"] == ["blob"] and sum(detail["boxes_per_class"]["train"].values()) > 0

    body = {"dataset": snapshot[:12], "epochs": 2, "imgsz": 64, "batch": 4}
    r = service.client.post("/v1/training-jobs", headers=service.auth(ENG), json=body)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "running" and job["params"]["dataset"] == snapshot
    busy = service.client.post("/v1/training-jobs", headers=service.auth(ENG), json=body)
    assert busy.status_code == 409 and "one job at a time" in busy.json()["detail"]

    finished = _wait(service, job["id"], ("succeeded", "failed"))
    assert finished["status"] == "succeeded", finished
    assert finished["progress"]["epoch"] == 2 and finished["progress"]["epochs"] == 2
    assert finished["progress"]["metrics"]
    [candidate] = finished["result"]["candidates"]
    models = service.client.get("/v1/models", headers=service.auth(ENG)).json()
    stages = {m["sha256"]: m["stage"] for m in models}  # a fresh service starts with the bundled champion
    assert stages[candidate["sha256"]] == "candidate" and sorted(stages.values()) == ["candidate", "champion"]
    assert finished["actor"] == "engineer-tester"

    long_run = service.client.post("/v1/training-jobs", headers=service.auth(ENG),
                                   json={**body, "epochs": 200}).json()
    cancelled = service.client.post(f"/v1/training-jobs/{long_run['id']}/cancel", headers=service.auth(ENG))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = service.client.post(f"/v1/training-jobs/{long_run['id']}/cancel", headers=service.auth(ENG))
    assert again.status_code == 409
    assert service.ctx.jobs._process is not None
    service.ctx.jobs._process.wait(30)
    assert _wait(service, long_run["id"], ("cancelled",))["status"] == "cancelled"
