"""A running service for API tests: in-process (TestClient, lifespan and all) or on a real port (uvicorn in a
thread, for the browser and HTTP clients). Built on the tiny ONNX model, so verdicts are predictable: a
bright frame shows a ``scratch`` (0.9) and a ``dent`` (0.6), a black one shows nothing."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.composition import ServiceContext
from api.config import ServiceSettings
from api.http.app import create_app
from api.services.auth import Role
from inspection.profiles import OrderBook
from tests.builders import Candidate, tiny_package

ORDER_BOOK: dict[str, Any] = {
    "profiles": {
        "high-gloss": {"name": "high-gloss", "description": "Lacquer door: no scratch tolerated.",
                       "default": {"confidence": 0.5, "review_from": 0.3},
                       "classes": {"scratch": {"confidence": 0.5, "critical": True},
                                   "dent": {"confidence": 0.7, "review_from": 0.4}},
                       "required_views": ["top"]},
        "rustic-oak": {"name": "rustic-oak", "description": "Knots and marks are the look.",
                       "default": {"ignore": True},
                       "classes": {"dent": {"confidence": 0.5, "max_count": 2}},
                       "required_views": ["top", "side"]},
    },
    "orders": [
        {"id": "ORD-1", "customer_ref": "Berg kitchen", "product": "Door 600", "due_date": "2026-12-01",
         "profile": "high-gloss", "attributes": {"finish": "gloss"}},
        {"id": "ORD-2", "customer_ref": "Novak", "product": "Shelf", "due_date": "2026-12-05",
         "profile": "rustic-oak"},
        {"id": "ORD-X", "customer_ref": "<script>alert('x')</script>", "product": "<b>bold</b> & \"quoted\"",
         "due_date": "2026-11-30", "profile": "high-gloss"},
    ],
}


def jpeg(value: int = 255, width: int = 64, height: int = 64, *, noise: int = 0) -> bytes:
    """A real JPEG; ``noise`` seeds a few changed pixels so otherwise equal frames get distinct bytes."""
    image = np.full((height, width, 3), value, np.uint8)
    if noise:
        rng = np.random.default_rng(noise)
        image[rng.integers(0, height, 8), rng.integers(0, width, 8)] = rng.integers(0, 255, (8, 3))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()


def png(value: int = 255, width: int = 64, height: int = 64) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((height, width, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return tiny_package(tmp_path / "tiny-model", [Candidate(32, 32, 16, 16, 0, 0.9), Candidate(12, 12, 8, 8, 1, 0.6)])


@dataclass
class Service:
    client: TestClient
    ctx: ServiceContext
    keys: dict[Role, str] = field(default_factory=dict)

    def auth(self, role: Role | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}

    def post_frame(self, data: bytes, unit_id: str = "U-1", order_id: str = "ORD-1", camera_id: str = "top",
                   *, role: Role | None = Role.CAMERA, key: str | None = None, **extra: str) -> Any:
        headers = self.auth(role) | ({"Idempotency-Key": key} if key else {})
        form = {"unit_id": unit_id, "order_id": order_id, "camera_id": camera_id, **extra}
        return self.client.post("/v1/frames", headers=headers, data=form,
                                files={"image": ("frame.jpg", data, "image/jpeg")})


def service_settings(data_dir: Path, model: Path, **overrides: Any) -> ServiceSettings:
    return ServiceSettings(data_dir=data_dir, model_path=model, batch_size=8, threads=1, **overrides)


def seed(ctx: ServiceContext) -> dict[Role, str]:
    """The demo order book and one key per role."""
    ctx.store.import_order_book(OrderBook.model_validate(ORDER_BOOK))
    return {role: ctx.keys.create(role, f"{role.value}-tester")[0] for role in Role}


@pytest.fixture
def service(tmp_path: Path, tiny_model: Path) -> Iterator[Service]:
    ctx = ServiceContext.open(service_settings(tmp_path / "data", tiny_model))
    keys = seed(ctx)
    with TestClient(create_app(context=ctx)) as client:
        assert ctx.wait_ready(30), ctx.load_error
        yield Service(client, ctx, keys)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveService:
    url: str
    ctx: ServiceContext
    keys: dict[Role, str]


@pytest.fixture
def live_service(tmp_path: Path, tiny_model: Path) -> Iterator[LiveService]:
    """The app on a real port with uvicorn, for a browser or an external HTTP client."""
    import uvicorn

    ctx = ServiceContext.open(service_settings(tmp_path / "data", tiny_model))
    keys = seed(ctx)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(context=ctx), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    assert ctx.wait_ready(30), ctx.load_error
    try:
        yield LiveService(f"http://127.0.0.1:{port}", ctx, keys)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def login(client: TestClient, key: str, url: str = "/review/login", **kwargs: Any) -> Any:
    """Sign in through the form as a browser does: fetch it first (its login token and pre-session cookie)."""
    page = client.get("/review/login")
    found = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert found, page.text
    return client.post(url, data={"key": key, "login_token": found.group(1)}, **kwargs)


def csrf_of(client: TestClient, path: str = "/review") -> str:
    """The signed-in page's CSRF token (its ``<meta name="csrf-token">``)."""
    found = re.search(r'name="csrf-token" content="([^"]*)"', client.get(path).text)
    assert found
    return found.group(1)
