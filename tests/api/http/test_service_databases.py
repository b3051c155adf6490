"""The service on both databases: SQLite (embedded default) and PostgreSQL (``QC_DATABASE_URL``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi.testclient import TestClient

from api.composition import ServiceContext
from api.http.app import create_app
from api.services.auth import Role
from tests.api.conftest import Service, jpeg, seed, service_settings


def test_cameras_keys_reviews_and_retries_on_each_database(db_url: str, tmp_path: Path, tiny_model: Path) -> None:
    settings = service_settings(tmp_path / "data", tiny_model).model_copy(update={"database_url": db_url})
    ctx = ServiceContext.open(settings)
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        assert ctx.wait_ready(30), ctx.load_error
        service = Service(client, ctx, keys)
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda i: service.post_frame(jpeg(255, noise=i % 6 + 1), unit_id=f"U-{i % 3}",
                                                                 camera_id="top", key=f"k-{i % 6}"), range(12)))
        assert {a.status_code for a in answers} == {200}
        assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 6
        queue = client.get("/v1/reviews/queue", headers=service.auth(Role.OPERATOR)).json()
        assert sorted(q["unit_id"] for q in queue) == ["U-0", "U-1", "U-2"]
        record = client.get("/v1/units/U-0", headers=service.auth(Role.OPERATOR)).json()
        assert len(record["frames"]) == 2  # keys k-0 and k-3: two distinct frames, each stored once
        inspection = record["frames"][0]["id"]
        r = client.post("/v1/reviews", headers=service.auth(Role.OPERATOR),
                        json={"inspection_id": inspection, "decision": "false_alarm"})
        assert r.status_code == 201
        r = client.post("/v1/units/U-0/disposition", headers=service.auth(Role.OPERATOR),
                        json={"disposition": "release"})
        assert r.status_code == 201
    assert ctx.idempotency.count() == 6
