"""Pure ASGI middleware (no per-request task hop, unlike ``BaseHTTPMiddleware``): body size limit and
request latency metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.errors import error_body
from api.services.metrics import ServiceMetrics


class BodyLimitAndMetrics:
    """Refuse bodies over ``max_bytes`` with 413 (by Content-Length up front, or while streaming a
    chunked body) and time every request by its route template."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await self._refuse(send, length)
            self._observe(scope, 413, started)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # an HTTPException passes FastAPI's body parsing unchanged
                    raise HTTPException(413, f"request body is larger than the {self.max_bytes} bytes this "
                                             "service accepts")
            return message

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["sent"] = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)
        self._observe(scope, int(status["code"]), started)

    async def _refuse(self, send: Send, size: int) -> None:
        body = json.dumps(error_body(f"request body of {size} bytes or more is larger than the "
                                     f"{self.max_bytes} bytes this service accepts", "PayloadTooLargeError")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route: Any = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        self.metrics.request_latency.labels(scope.get("method", ""), path, str(status)).observe(
            time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
