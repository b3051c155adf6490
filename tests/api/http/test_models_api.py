"""Engineers over HTTP: models, the promotion gate, rollback, and the hot swap while cameras keep sending."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.composition import ServiceContext
from api.http.app import create_app
from api.services.auth import Role
from tests.api.conftest import Service, jpeg, seed, service_settings
from tests.builders import Candidate, tiny_package

ENG = Role.ENGINEER


@pytest.fixture
def following(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[Service, int, int]]:
    """A service started without a model path: it runs the registry's champion (A) and follows promotions.
    B is a registered candidate whose only box is a dent."""
    other = tiny_package(tmp_path / "model-b", [Candidate(20, 20, 10, 10, 1, 0.95)])
    ctx = ServiceContext.open(service_settings(tmp_path / "data", tiny_model, model_poll_s=0.2).model_copy(
        update={"model_path": None}))
    a = ctx.registry.register(tiny_model, stage="champion")
    b = ctx.registry.register(other)
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        assert ctx.wait_ready(30), ctx.load_error
        yield Service(client, ctx, keys), a.id, b.id


def test_models_list_read_and_station(following: tuple[Service, int, int]) -> None:
    service, a, b = following
    models = service.client.get("/v1/models", headers=service.auth(ENG)).json()
    assert {m["id"]: m["stage"] for m in models} == {a: "champion", b: "candidate"}
    one = service.client.get(f"/v1/models/{b}", headers=service.auth(ENG)).json()
    assert one["audit"] and one["sha256"]
    station = service.client.get("/v1/station", headers=service.auth(ENG)).json()
    assert station["sha256"] == models[0]["sha256"] and station["ready"] is True
    assert service.client.get("/v1/models/424242", headers=service.auth(ENG)).status_code == 404


def test_promotion_without_a_holdout_is_refused_and_nothing_changes(following: tuple[Service, int, int]) -> None:
    service, a, b = following
    r = service.client.post(f"/v1/models/{b}/promote", headers=service.auth(ENG), json={})
    assert r.status_code == 409 and "no holdout" in r.json()["detail"]
    r = service.client.post(f"/v1/models/{b}/promote", headers=service.auth(ENG), json={"force": True})
    assert r.status_code == 409 and "reason" in r.json()["detail"]
    r = service.client.post(f"/v1/models/{b}/promote", headers=service.auth(ENG), json={"dataset": "/etc/passwd"})
    assert r.status_code == 404 and "not a path" in r.json()["detail"]
    assert service.ctx.registry.champion().id == a  # type: ignore[union-attr]


def test_promotion_hot_swaps_without_failing_a_request(following: tuple[Service, int, int]) -> None:
    service, a, b = following
    sha = {m.id: m.sha256 for m in service.ctx.registry.list()}
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]

    def camera(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            r = service.post_frame(jpeg(255, noise=n * 100_000 + i), unit_id=f"U-hs-{n}-{i}")
            seen[n].append((r.status_code, r.json().get("model_sha256", r.text)))

    threads = [threading.Thread(target=camera, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    r = service.client.post(f"/v1/models/{b}/promote", headers=service.auth(ENG),
                            json={"force": True, "reason": "hot swap test"})
    assert r.status_code == 200, r.text
    assert r.json()["forced"] is True
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(s and s[-1][1] == sha[b] for s in seen):
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(10)
    answers = [x for s in seen for x in s]
    assert answers and {code for code, _ in answers} == {200}
    for per_camera in seen:  # each camera: model A, then B, never back
        models = [m for _, m in per_camera]
        assert models[0] == sha[a] and models[-1] == sha[b]
        switch = models.index(sha[b])
        assert set(models[switch:]) == {sha[b]}
    assert service.client.get("/v1/station", headers=service.auth(ENG)).json()["swaps"] == 1
    scraped = service.client.get("/metrics", headers=service.auth(Role.METRICS)).text
    info = [line for line in scraped.splitlines() if line.startswith("qcline_model_info{")]
    assert len(info) == 1 and 'name="model-b"' in info[0] and f'sha256="{sha[b]}"' in info[0]
    assert 'engine="' in info[0] and 'precision="' in info[0] and info[0].endswith(" 1.0")

    r = service.client.post("/v1/models/rollback", headers=service.auth(ENG), json={"reason": "test"})
    assert r.status_code == 200 and r.json()["id"] == a
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and service.ctx.model_state()["sha256"] != sha[a]:
        time.sleep(0.05)
    assert service.post_frame(jpeg(255, noise=7), unit_id="U-after").json()["model_sha256"] == sha[a]
    audit = service.client.get("/v1/models/audit", headers=service.auth(ENG)).json()
    assert any(row["actor"] == "engineer-tester" and row["forced"] for row in audit)


def test_rollback_without_a_previous_champion_is_409(following: tuple[Service, int, int]) -> None:
    service, _, _ = following
    r = service.client.post("/v1/models/rollback", headers=service.auth(ENG), json={})
    assert r.status_code == 409 and "no previous champion" in r.json()["detail"]


def test_datasets_and_training_jobs_answer_clearly(service: Service) -> None:
    assert service.client.get("/v1/datasets", headers=service.auth(ENG)).json() == []
    assert service.client.get("/v1/datasets/abc", headers=service.auth(ENG)).status_code == 404
    r = service.client.post("/v1/training-jobs", headers=service.auth(ENG), json={"dataset": "abc"})
    assert r.status_code == 404
    r = service.client.post("/v1/training-jobs", headers=service.auth(ENG), json={"dataset": "abc", "imgsz": 100})
    assert r.status_code == 422 and "imgsz" in r.json()["detail"]
    assert service.client.get("/v1/training-jobs", headers=service.auth(ENG)).json() == []
    assert service.client.get("/v1/training-jobs/5", headers=service.auth(ENG)).status_code == 404
