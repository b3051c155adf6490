"""The service through a cut of its central PostgreSQL (a TCP proxy the test cuts; the real server keeps running):
cameras keep getting 200 (from the outbox), keys and orders come from the local cache, ``/readyz`` says
``degraded`` with the backlog, and when the database is back everything is replayed exactly once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from api.cli.station import station_status
from api.composition import ServiceContext
from api.http.app import create_app
from api.services.auth import Role, hash_secret
from drills.tcp_proxy import TcpProxy
from tests.api.conftest import Service, jpeg, seed, service_settings
from tests.api.processes import fresh_postgres_database


@pytest.fixture
def cut_service(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[Service, TcpProxy, str]]:
    with fresh_postgres_database("qcline_outbox") as url:
        parsed = make_url(url)
        with TcpProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            through = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
            ctx = ServiceContext.open(service_settings(tmp_path / "data", tiny_model, database_url=through,
                                                       follow_champion=False))
            assert ctx.core.outbox is not None  # on by default for PostgreSQL
            ctx.writer.offline_retry_s = 0.3
            keys = seed(ctx)
            with TestClient(create_app(context=ctx)) as client:
                assert ctx.wait_ready(30), ctx.load_error
                yield Service(client, ctx, keys), proxy, through


def wait_for(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.mark.postgres
def test_cameras_keep_working_through_a_database_cut(cut_service: tuple[Service, TcpProxy, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    service, proxy, through = cut_service
    outbox = service.ctx.core.outbox
    assert outbox is not None
    camera_key = hash_secret(service.keys[Role.CAMERA])
    assert wait_for(lambda: outbox.cached_order("ORD-2") is not None and outbox.cached_key(camera_key) is not None)
    first = service.post_frame(jpeg(255, noise=1), unit_id="U-before", key="k-0")
    assert first.status_code == 200 and not first.json().get("queued")
    time.sleep(5.5)  # past the in-memory key cache: the key must come from the station's local cache
    proxy.cut()
    try:
        during = {
            "k-1": service.post_frame(jpeg(255, noise=2), unit_id="U-cut-1", key="k-1"),
            "k-2": service.post_frame(jpeg(0, noise=3), unit_id="U-cut-2", order_id="ORD-2", key="k-2"),
            "k-3": service.post_frame(jpeg(0, noise=4), unit_id="U-cut-2", order_id="ORD-2", camera_id="side",
                                      key="k-3"),
        }
        for key, answer in during.items():
            assert answer.status_code == 200, (key, answer.text)
            assert answer.json()["queued"] is True
        assert during["k-3"].json()["unit_verdict"]["complete"]  # the station's own roll-up, for now
        assert during["k-3"].json()["unit_verdict"]["verdict"] == "PASS"
        assert during["k-2"].json()["unit_verdict"] is None  # "side" was still missing
        retry = service.post_frame(jpeg(255, noise=2), unit_id="U-cut-1", key="k-1")
        assert retry.status_code == 200 and retry.headers["idempotent-replayed"] == "true"
        ready = service.client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["station"]["outbox"]["backlog"] == 3
        metrics = service.client.get("/metrics", headers=service.auth(Role.METRICS)).text
        assert "qcline_outbox_backlog 3.0" in metrics
        monkeypatch.setenv("QC_DATABASE_URL", through)
        status = station_status(service.ctx.settings.data_dir)
        assert status["status"] == "degraded" and status["database"].startswith("unreachable")
        assert status["outbox"]["backlog"] == 3
    finally:
        proxy.restore()
    assert wait_for(lambda: outbox.backlog() == 0 and not service.ctx.writer.stats.offline), "never replayed"
    assert service.client.get("/readyz").json()["status"] == "ok"
    store = service.ctx.store
    assert len(store.unit_record("U-cut-1").frames) == 1
    cut2 = store.unit_record("U-cut-2").to_json()
    assert len(cut2["frames"]) == 2 and cut2["complete"] and cut2["verdict"] == "PASS"  # re-checked centrally
    again = service.post_frame(jpeg(255, noise=2), unit_id="U-cut-1", key="k-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert len(store.unit_record("U-cut-1").frames) == 1
    assert service.client.get("/v1/units/U-cut-1", headers=service.auth(Role.OPERATOR)).status_code == 200
