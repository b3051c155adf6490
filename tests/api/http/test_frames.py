"""Cameras over HTTP: verdicts, retries, batching, and every kind of bad frame a camera can send."""

from __future__ import annotations

import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from api.services.auth import Role
from tests.api.conftest import Service, jpeg, png


def _png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares ~900 megapixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + \
        chunk(b"IEND", b"")


GOOD = jpeg(255)


def _noise_png(size: int = 128) -> bytes:
    import cv2
    import numpy as np

    image = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()  # ~50 kB: incompressible noise

BAD_FRAMES = [
    pytest.param(b"", "image/jpeg", 422, "empty", id="empty"),
    pytest.param(GOOD[: len(GOOD) // 2], "image/jpeg", 422, "truncated", id="truncated-jpeg"),
    pytest.param(b"\xff\xd8\xff" + b"\x00" * 200 + b"\xff\xd9", "image/jpeg", 422, "decode", id="corrupt-jpeg"),
    pytest.param(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, "image/png", 422, "decode", id="corrupt-png"),
    pytest.param(_png_bomb(), "image/png", 422, "over the limit", id="decompression-bomb"),
    pytest.param(b"GIF89a" + b"\x00" * 64, "image/gif", 415, "JPEG or PNG", id="gif"),
    pytest.param(b"%PDF-1.4 hello", "application/pdf", 415, "JPEG or PNG", id="pdf-as-image"),
    pytest.param(b"just text", "text/plain", 415, "JPEG or PNG", id="text-file"),
    pytest.param(jpeg(255, 4, 4), "image/jpeg", 422, "too small", id="tiny-4x4"),
]


@pytest.mark.parametrize(("data", "media", "status", "reason"), BAD_FRAMES)
def test_bad_frames_get_a_4xx_with_a_reason_and_store_nothing(service: Service, data: bytes, media: str,
                                                              status: int, reason: str) -> None:
    r = service.client.post("/v1/frames", headers=service.auth(Role.CAMERA),
                            data={"unit_id": "U-bad", "order_id": "ORD-1", "camera_id": "top"},
                            files={"image": ("f", data, media)})
    assert r.status_code == status, r.text
    assert reason.lower() in r.json()["detail"].lower()
    assert service.client.get("/v1/units/U-bad", headers=service.auth(Role.OPERATOR)).status_code == 404


BAD_REQUESTS = [
    pytest.param({"content": b"{}", "headers": {"Content-Type": "application/json"}}, 415, id="json-body"),
    pytest.param({"content": b"\x00\x01", "headers": {"Content-Type": "application/octet-stream"}}, 415,
                 id="octet-stream"),
    pytest.param({"content": b"--x\r\nbroken", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
                 422, id="broken-multipart"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-1", "camera_id": "top"}}, 415, id="urlencoded-form"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-1", "camera_id": "top"},
                  "files": {"picture": ("f", GOOD, "image/jpeg")}}, 422, id="no-image-field"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-1", "camera_id": "top"},
                  "files": {"image": (None, b"text")}}, 422, id="image-as-text"),
    pytest.param({"data": {"order_id": "ORD-1", "camera_id": "top"}, "files": {"image": ("f", GOOD, "image/jpeg")}},
                 422, id="no-unit-id"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-1", "camera_id": "x" * 129},
                  "files": {"image": ("f", GOOD, "image/jpeg")}}, 422, id="camera-id-too-long"),
    pytest.param({"data": {"unit_id": "U\x00", "order_id": "ORD-1", "camera_id": "top"},
                  "files": {"image": ("f", GOOD, "image/jpeg")}}, 422, id="control-char-in-id"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-1", "camera_id": "top", "captured_at": "yesterday"},
                  "files": {"image": ("f", GOOD, "image/jpeg")}}, 422, id="captured-at-not-iso"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-1", "camera_id": "top",
                           "captured_at": "2026-11-26T08:00:00"},
                  "files": {"image": ("f", GOOD, "image/jpeg")}}, 422, id="captured-at-naive"),
    pytest.param({"data": {"unit_id": "U", "order_id": "ORD-nope", "camera_id": "top"},
                  "files": {"image": ("f", GOOD, "image/jpeg")}}, 404, id="unknown-order"),
    pytest.param({"content": GOOD, "headers": {"Content-Type": "image/jpeg"}}, 422, id="raw-body-without-ids"),
]


@pytest.mark.parametrize(("kwargs", "status"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_with_a_reason(service: Service, kwargs: dict[str, object], status: int) -> None:
    kwargs = dict(kwargs)
    headers = {**service.auth(Role.CAMERA), **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    r = service.client.post("/v1/frames", headers=headers, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_oversized_body_is_413(tmp_path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.composition import ServiceContext
    from api.http.app import create_app
    from tests.api.conftest import seed, service_settings

    ctx = ServiceContext.open(service_settings(tmp_path / "d", tiny_model, max_upload_mb=0.01))
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        r = client.post("/v1/frames", headers={"Authorization": f"Bearer {keys[Role.CAMERA]}"},
                        data={"unit_id": "U", "order_id": "ORD-1", "camera_id": "top"},
                        files={"image": ("f", _noise_png(), "image/png")})
        assert r.status_code == 413, r.text
        assert "larger than" in r.json()["detail"]
        assert ctx.wait_ready(30), ctx.load_error  # the model loads in the background (OpenVINO compiles it)
        ok = client.post("/v1/frames", headers={"Authorization": f"Bearer {keys[Role.CAMERA]}"},
                         data={"unit_id": "U", "order_id": "ORD-1", "camera_id": "top"},
                         files={"image": ("f", jpeg(255), "image/jpeg")})
        assert ok.status_code == 200, ok.text


def test_a_unit_scanned_against_another_order_is_409_and_the_first_stays(service: Service) -> None:
    assert service.post_frame(jpeg(0), unit_id="U-7", order_id="ORD-1").status_code == 200
    r = service.post_frame(jpeg(255), unit_id="U-7", order_id="ORD-2")
    assert r.status_code == 409 and "belongs to order ORD-1" in r.json()["detail"]
    record = service.client.get("/v1/units/U-7", headers=service.auth(Role.OPERATOR)).json()
    assert [f["verdict"] for f in record["frames"]] == ["PASS"]


def test_raw_body_with_ids_in_the_query(service: Service) -> None:
    r = service.client.post("/v1/frames?unit_id=U-raw&order_id=ORD-1&camera_id=top",
                            headers={**service.auth(Role.CAMERA), "Content-Type": "image/png"}, content=png(255))
    assert r.status_code == 200, r.text
    assert r.json()["verdict"] == "FAIL"


def test_the_order_profile_decides_the_verdict(service: Service) -> None:
    gloss = service.post_frame(jpeg(255), unit_id="U-g", order_id="ORD-1").json()
    oak = service.post_frame(jpeg(255), unit_id="U-o", order_id="ORD-2").json()
    assert gloss["verdict"] == "FAIL"  # a scratch on high gloss is critical
    assert oak["verdict"] == "PASS"  # rustic oak ignores scratches, tolerates a dent
    assert gloss["detections"] == oak["detections"]  # same model output, different orders
    assert oak["unit_verdict"] is None  # rustic oak needs a side view too
    side = service.post_frame(jpeg(0), unit_id="U-o", order_id="ORD-2", camera_id="side").json()
    assert side["unit_verdict"]["verdict"] == "PASS" and side["unit_verdict"]["complete"]


def test_retry_with_the_same_idempotency_key_returns_the_first_answer(service: Service) -> None:
    first = service.post_frame(jpeg(255), unit_id="U-i", key="cam1-0001")
    again = service.post_frame(jpeg(255), unit_id="U-i", key="cam1-0001")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    service.ctx.writer.flush(5)
    record = service.client.get("/v1/units/U-i", headers=service.auth(Role.OPERATOR)).json()
    assert len(record["frames"]) == 1


def test_an_idempotency_key_reused_for_another_frame_is_409(service: Service) -> None:
    assert service.post_frame(jpeg(255), unit_id="U-j", key="k-1").status_code == 200
    r = service.post_frame(jpeg(0), unit_id="U-j", key="k-1")
    assert r.status_code == 409 and "different request" in r.json()["detail"]


def test_idempotency_keys_are_scoped_per_api_key(service: Service) -> None:
    other, _ = service.ctx.keys.create(Role.CAMERA, "camera-2")
    assert service.post_frame(jpeg(255), unit_id="U-s1", key="same").status_code == 200
    r = service.client.post("/v1/frames", headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "same"},
                            data={"unit_id": "U-s2", "order_id": "ORD-1", "camera_id": "top"},
                            files={"image": ("f", jpeg(0), "image/jpeg")})
    assert r.status_code == 200 and r.json()["unit_id"] == "U-s2"


def test_concurrent_retries_of_one_request_store_it_once(service: Service) -> None:
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: service.post_frame(jpeg(255, noise=5), unit_id="U-c", key="burst"),
                                range(8)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    service.ctx.writer.flush(5)
    assert len(service.client.get("/v1/units/U-c", headers=service.auth(Role.OPERATOR)).json()["frames"]) == 1


def test_the_same_frame_sent_again_without_a_key_is_not_judged_twice(service: Service) -> None:
    first = service.post_frame(jpeg(255, noise=9), unit_id="U-d").json()
    again = service.post_frame(jpeg(255, noise=9), unit_id="U-d").json()
    assert again["duplicate"] is True and first["duplicate"] is False
    assert again["verdict"] == first["verdict"] and again["frame_sha256"] == first["frame_sha256"]
    assert len(service.client.get("/v1/units/U-d", headers=service.auth(Role.OPERATOR)).json()["frames"]) == 1


def test_concurrent_cameras_share_forward_passes(service: Service) -> None:
    """Many cameras at once: every frame answered and recorded, in fewer forward passes than frames."""
    start = threading.Barrier(16)

    def camera(n: int) -> int:
        start.wait()
        codes = []
        for i in range(4):
            r = service.post_frame(jpeg(255 if i % 2 else 0, noise=n * 10 + i + 1), unit_id=f"U-cc-{n}-{i}")
            codes.append(r.status_code)
        return max(codes)

    batches_before = service.ctx.batcher.stats.batches if service.ctx.batcher else 0
    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(camera, range(16))) == {200}
    assert service.ctx.batcher is not None
    batches = service.ctx.batcher.stats.batches - batches_before
    assert service.ctx.batcher.stats.frames >= 64
    assert batches < 64, f"{batches} forward passes for 64 concurrent frames: no batching happened"
    metrics = service.client.get("/metrics", headers=service.auth(Role.METRICS)).text
    assert 'qcline_frames_total{camera="top",verdict="FAIL"} 32.0' in metrics
    assert "qcline_batch_size_count" in metrics


def test_close_unit_names_missing_views(service: Service) -> None:
    assert service.post_frame(jpeg(0), unit_id="U-m", order_id="ORD-2").status_code == 200
    r = service.client.post("/v1/units/U-m/close", headers=service.auth(Role.CAMERA))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["missing_views"] == ["side"] and body["verdict"] == "REVIEW" and not body["complete"]
    assert service.client.post("/v1/units/U-none/close", headers=service.auth(Role.CAMERA)).status_code == 404


def test_frames_wait_for_the_model_then_503_is_clear(tmp_path, tiny_model) -> None:  # type: ignore[no-untyped-def]
    """Before the model is ready a frame is refused with 503 + Retry-After, and /readyz says not ready."""
    from fastapi.testclient import TestClient

    from api.composition import ServiceContext
    from api.http.app import create_app
    from tests.api.conftest import seed, service_settings

    ctx = ServiceContext.open(service_settings(tmp_path / "d", tmp_path / "no-such-model"))
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        ctx._loader.join(30)  # type: ignore[union-attr]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "failed to load" in ready.json()["error"]
        assert client.get("/healthz").status_code == 200
        r = client.post("/v1/frames", headers={"Authorization": f"Bearer {keys[Role.CAMERA]}"},
                        data={"unit_id": "U", "order_id": "ORD-1", "camera_id": "top"},
                        files={"image": ("f", jpeg(255), "image/jpeg")})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"


def test_unit_ids_with_a_slash_work_everywhere(service: Service) -> None:
    assert service.post_frame(jpeg(255), unit_id="LOT-7/UNIT-3").status_code == 200
    service.ctx.writer.flush(5)
    r = service.client.get("/v1/units/LOT-7/UNIT-3", headers=service.auth(Role.OPERATOR))
    assert r.status_code == 200 and r.json()["unit_id"] == "LOT-7/UNIT-3"
    r = service.client.post("/v1/units/LOT-7/UNIT-3/close", headers=service.auth(Role.CAMERA))
    assert r.status_code == 200 and r.json()["unit_id"] == "LOT-7/UNIT-3"
    r = service.client.post("/v1/units/LOT-7/UNIT-3/disposition", headers=service.auth(Role.OPERATOR),
                            json={"disposition": "scrap"})
    assert r.status_code == 201 and r.json()["unit_id"] == "LOT-7/UNIT-3"


def test_old_idempotency_keys_are_forgotten(service: Service) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from inspection.store.tables.base import utcnow
    from inspection.store.tables.service import IdempotencyRow

    assert service.post_frame(jpeg(255), unit_id="U-old", key="old-key").status_code == 200
    with service.ctx.store.engine.begin() as conn:
        conn.execute(update(IdempotencyRow).values(created_at=utcnow() - timedelta(hours=100)))
    assert service.ctx.idempotency.purge(48) == 1
    assert service.ctx.idempotency.count() == 0


def test_a_200_means_the_frame_is_already_committed(service: Service) -> None:
    """No flush: the answer itself waited for the group commit holding the frame."""
    for n in range(5):
        answer = service.post_frame(jpeg(255, noise=100 + n), unit_id=f"U-dur{n}", key=f"dur-{n}")
        assert answer.status_code == 200
        body = answer.json()
        assert service.ctx.store.find_inspection(body["unit_id"], "top", body["frame_sha256"]) is not None
        assert service.ctx.store.unit_record(f"U-dur{n}").verdict == body["unit_verdict"]["verdict"]


def test_a_failed_commit_is_503_and_its_retry_is_stored_exactly_once(service: Service,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from inspection.errors import StoreError

    store, writer = service.ctx.store, service.ctx.writer
    real = store.commit_group
    down = threading.Event()
    down.set()

    def commit_group(*args: Any, **kwargs: Any) -> Any:
        if down.is_set():
            raise StoreError("connection refused")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "commit_group", commit_group)
    monkeypatch.setattr(writer, "give_up_after_s", 0.05)
    monkeypatch.setattr(writer, "retry_delay_s", 0.01)
    refused = service.post_frame(jpeg(255, noise=77), unit_id="U-fail", key="cam-9-1")
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "not recorded" in refused.json()["detail"]
    assert service.ctx.store.unit_histories(["U-fail"]) in ({}, {"U-fail": ("ORD-1", [])})
    down.clear()  # the database is back: the camera retries with the same key
    retried = service.post_frame(jpeg(255, noise=77), unit_id="U-fail", key="cam-9-1")
    assert retried.status_code == 200, retried.text
    assert retried.json()["duplicate"] is False and "idempotent-replayed" not in retried.headers
    again = service.post_frame(jpeg(255, noise=77), unit_id="U-fail", key="cam-9-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    record = service.client.get("/v1/units/U-fail", headers=service.auth(Role.OPERATOR)).json()
    assert len(record["frames"]) == 1 and record["verdict"] == retried.json()["unit_verdict"]["verdict"]
