"""Liveness and readiness (no key: probes), Prometheus metrics (a key of role metrics, engineer or admin, unless
``QC_METRICS_PUBLIC``: the exposition names orders and cameras)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.http.deps import context, require
from api.http.schemas import HealthOut, ReadyOut, errors
from api.services.auth import Role

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Ready once the model is loaded and warmed up (503 before); status `degraded` while "
            "results wait in the station outbox", response_model=ReadyOut,
            responses={503: {"model": ReadyOut, "description": "Not ready yet: the same body, ``ready`` false"}})
async def readyz(request: Request) -> JSONResponse:
    ctx = context(request)
    state: dict[str, Any] = ctx.model_state()
    state["station"] = ctx.station_state()  # "degraded" (still 200) while results wait in the outbox
    if ctx.ready:
        state["status"] = state["station"]["status"]
    body = ReadyOut.model_validate(state).model_dump(mode="json", exclude_unset=True)  # as the schema says
    return JSONResponse(body, status_code=200 if ctx.ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response, responses={
    200: {"description": "The Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}},
    **{code: spec for code, spec in errors().items() if code in (401, 403, 503)}})
async def metrics(request: Request) -> Response:
    ctx = context(request)
    if not ctx.settings.metrics_public:
        SCRAPERS(request)
    return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


SCRAPERS = require(Role.METRICS, Role.ENGINEER)
