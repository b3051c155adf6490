"""The line station over HTTP: triggers (the ``http`` channel and the record of every channel's triggers)
and the cameras the station holds. Thin: ``api.services.line.LineService`` does the work."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.http.deps import context, principal_of, require
from api.http.routes.web import page_zone, templates
from api.http.schemas import ErrorOut
from api.http.security import csrf_token_for
from api.services.auth import AuthError, Principal, Role
from api.services.line import LineService, TriggerRequest, TriggerState
from inspection.line.cameras import CameraStats
from inspection.line.config import CameraSpec

router = APIRouter(prefix="/v1", tags=["line"])
page_router = APIRouter(include_in_schema=False)

TRIGGERS = require(Role.CAMERA, Role.ENGINEER)
WATCHERS = require(Role.CAMERA, Role.OPERATOR, Role.ENGINEER)
VIEWERS = require(Role.OPERATOR, Role.ENGINEER)
ENGINEERS = require(Role.ENGINEER)
ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorOut} for code in (401, 403, 404, 409, 422, 503)}


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unit_id: str = Field(min_length=1, max_length=128, description="The unit in front of the station now.")
    order_id: str | None = Field(default=None, min_length=1, max_length=128,
                                 description="Its order; unset: the unit's recorded order, else the station "
                                 "config's order_from_unit.")
    at: str | None = Field(default=None, max_length=64, description="When the unit was in place (ISO 8601 with a "
                           "zone); frames captured at/after it are its own. Default: when the call arrived.")
    trigger_id: str | None = Field(default=None, min_length=1, max_length=128, description="The caller's id: a "
                                   "retry with the same id is answered from the record, never judged twice.")


class TriggerOut(BaseModel):
    trigger_id: str
    status: str = Field(description="answered, or pending (202: read it back with GET /v1/triggers/{id}).")
    channel: str
    unit_id: str
    order_id: str | None = None
    at: str
    received_at: str
    answered_at: str | None = None
    outcome: str | None = Field(default=None, description="judged, missing_views, unknown_unit, rejected, "
                                "duplicate or failed.")
    verdict: str | None = Field(default=None, description="The unit's durable verdict (PASS, REVIEW, FAIL).")
    reasons: list[str] = Field(default_factory=list)
    missing_views: list[str] = Field(default_factory=list)
    error: str = ""
    latency_ms: float | None = None
    frames: dict[str, Any] = Field(default_factory=dict, description="Per view: the frame bound to the unit "
                                   "(camera, seq, captured_at) or why there is none (recorded triggers).")

    @classmethod
    def of(cls, state: TriggerState) -> TriggerOut:
        """The service's trigger with its times as ISO text and its latency to 0.1 ms (as the trigger log and
        the station's status file show it)."""
        return cls(trigger_id=state.trigger_id, status=state.status, channel=state.channel, unit_id=state.unit_id,
                   order_id=state.order_id, at=state.at.isoformat(), received_at=state.received_at.isoformat(),
                   answered_at=state.answered_at.isoformat() if state.answered_at is not None else None,
                   outcome=state.outcome, verdict=state.verdict, reasons=list(state.reasons),
                   missing_views=list(state.missing_views), error=state.error,
                   latency_ms=round(state.latency_ms, 1) if state.latency_ms is not None else None,
                   frames=dict(state.frames))


class CameraOut(BaseModel):
    name: str
    url: str = Field(description="The camera's URL, credentials hidden.")
    connected: bool
    fps: float
    last_frame_age_s: float | None
    frames_in: int
    frames_claimed: int
    frames_dropped: int
    reconnects: int
    last_error: str
    ring: int

    @classmethod
    def of(cls, stats: CameraStats) -> CameraOut:
        """The camera's figures with ``fps`` to 0.01 and ``last_frame_age_s`` to 1 ms (``CameraStats.as_json``
        rounds the same way)."""
        return cls(name=stats.name, url=stats.url, connected=stats.connected, fps=round(stats.fps, 2),
                   last_frame_age_s=None if stats.last_frame_age_s is None else round(stats.last_frame_age_s, 3),
                   frames_in=stats.frames_in, frames_claimed=stats.frames_claimed, frames_dropped=stats.frames_dropped,
                   reconnects=stats.reconnects, last_error=stats.last_error, ring=stats.ring)


@router.post("/triggers", response_model=TriggerOut, responses={**ERRORS, 202: {"model": TriggerOut}},
             summary="A unit is at the station now: bind the cameras' frames to it, judge it, answer")
async def post_trigger(body: TriggerIn, request: Request, _: Annotated[Principal, Depends(TRIGGERS)]) -> JSONResponse:
    """Waits up to the station's ``answer_within_ms`` for the verdict (200); later, 202 with the trigger id."""
    status, answer = await LineService(context(request)).trigger(TriggerRequest(**body.model_dump()))
    return JSONResponse(TriggerOut.of(answer).model_dump(mode="json"), status_code=status)


def _recent(request: Request, limit: int) -> list[TriggerOut]:
    return [TriggerOut.of(t) for t in LineService(context(request)).recent(limit)]


@router.get("/triggers", response_model=list[TriggerOut], responses=ERRORS, summary="The latest triggers")
async def list_triggers(request: Request, _: Annotated[Principal, Depends(WATCHERS)],
                        limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[TriggerOut]:
    return await run_in_threadpool(_recent, request, limit)


@router.get("/triggers/{trigger_id}", response_model=TriggerOut, responses=ERRORS, summary="One trigger")
async def get_trigger(trigger_id: str, request: Request,
                      _: Annotated[Principal, Depends(WATCHERS)]) -> TriggerOut:
    return TriggerOut.of(await run_in_threadpool(LineService(context(request)).get, trigger_id))


def _cameras(request: Request) -> list[CameraOut]:
    return [CameraOut.of(c) for c in LineService(context(request)).cameras()]


@router.get("/cameras", response_model=list[CameraOut], responses=ERRORS, summary="The station's cameras")
async def list_cameras(request: Request, _: Annotated[Principal, Depends(VIEWERS)]) -> list[CameraOut]:
    return _cameras(request)


@router.post("/cameras", response_model=CameraOut, status_code=201, responses=ERRORS,
             summary="Open one more camera now (until removed or the service stops)")
async def add_camera(spec: CameraSpec, request: Request, _: Annotated[Principal, Depends(ENGINEERS)]) -> CameraOut:
    return CameraOut.of(await run_in_threadpool(LineService(context(request)).add_camera, spec))


@router.delete("/cameras/{name}", status_code=204, response_class=Response, responses=ERRORS,
               summary="Close a camera and stop holding it")
async def remove_camera(name: str, request: Request, _: Annotated[Principal, Depends(ENGINEERS)]) -> Response:
    await run_in_threadpool(LineService(context(request)).remove_camera, name)
    return Response(status_code=204)


@page_router.get("/station")
async def station_page(request: Request) -> Response:
    """The station page: its cameras with their figures and the latest triggers (operators sign in on the review
    page; it reloads itself every 5 s, no script)."""
    try:
        principal = principal_of(request)
    except AuthError:
        return RedirectResponse("/review/login", status_code=303)
    if not principal.allowed(frozenset({Role.OPERATOR, Role.ENGINEER})):
        return RedirectResponse("/review/login", status_code=303)
    ctx = context(request)
    line, error = ctx.line, ""
    cameras: list[CameraOut] = []
    triggers: list[TriggerOut] = []
    if ctx.line_config is None:
        error = "This service runs no line station (QC_STATION_CONFIG is unset)."
    elif line is None:
        error = ctx.load_error or "The line station starts once the model is loaded."
    else:  # the answers' models: the page shows the figures rounded as the API gives them
        cameras = _cameras(request)
        triggers = await run_in_threadpool(_recent, request, 30)
    session = request.scope.get("state", {}).get("session_token")
    response = templates.TemplateResponse(request, "station.html", {
        "principal": principal, "csrf_token": csrf_token_for(session) if session else "", "zone": page_zone(request),
        "station": line.status() if line is not None else None, "cameras": cameras, "triggers": triggers,
        "error": error})
    response.headers["Cache-Control"] = "no-store"
    return response
