"""Cameras: push a frame, close a unit."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from api.http.deps import CAMERA, LINE, context
from api.http.schemas import FrameVerdictOut, UnitVerdictOut, errors
from api.services.auth import Principal
from api.services.frames import FrameRequest, FrameService, unit_verdict_json
from inspection.errors import BadRequestError, UnsupportedMediaError
from inspection.ids import check_identifier

router = APIRouter(prefix="/v1", tags=["cameras"])

_ID = {"type": "string", "minLength": 1, "maxLength": 128}
FRAME_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["image", "camera_id"],
        "description": "Without unit_id the part's label on the frame names the unit (and its order): the camera "
                       "needs label settings (qcline calibrate label).",
        "properties": {"image": {"type": "string", "format": "binary", "description": "JPEG or PNG"},
                       "unit_id": _ID, "order_id": _ID, "camera_id": _ID,
                       "captured_at": {"type": "string", "format": "date-time"}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
}}}
ERRORS = errors(400, 404, 409, 415)


async def _read_frame(request: Request, query: dict[str, str | None]) -> FrameRequest:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        image = form.get("image")
        if image is None:
            raise BadRequestError("multipart field 'image' (the JPEG / PNG file) is missing")
        if not isinstance(image, UploadFile):
            raise BadRequestError("multipart field 'image' must be a file, not a text field")
        data = await image.read()
        fields = {k: form.get(k) for k in ("unit_id", "order_id", "camera_id", "captured_at")}
        text = {k: v if isinstance(v, str) else None for k, v in fields.items()}
        if any(isinstance(v, UploadFile) for v in fields.values()):
            raise BadRequestError("unit_id, order_id, camera_id and captured_at must be text fields")
        return FrameRequest.build(data, **{k: text[k] or query.get(k) for k in text})
    if media_type in ("image/jpeg", "image/png"):
        data = await request.body()
        return FrameRequest.build(data, **query)
    raise UnsupportedMediaError(f"content type {media_type or '(none)'!r} is not accepted: send multipart/form-data "
                                "with the file field 'image', or the raw image/jpeg or image/png body")


@router.post("/frames", response_model=FrameVerdictOut, responses=ERRORS, openapi_extra=FRAME_BODY,
             summary="Judge one camera frame against its order's profile")
async def post_frame(
    request: Request,
    principal: Annotated[Principal, Depends(CAMERA)],
    unit_id: Annotated[str | None, Query(max_length=128, description="With a raw image body.")] = None,
    order_id: Annotated[str | None, Query(max_length=128, description="With a raw image body.")] = None,
    camera_id: Annotated[str | None, Query(max_length=128, description="With a raw image body.")] = None,
    captured_at: Annotated[str | None, Query(max_length=64, description="ISO 8601 with a zone; default now.")] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)] = None,
) -> JSONResponse:
    """An image (multipart field ``image``, or a raw ``image/jpeg`` / ``image/png`` body with the ids as query
    parameters) of one view of one unit. Requests from all cameras are batched into shared forward passes.

    Retrying with the same ``Idempotency-Key`` returns the first answer (header ``Idempotent-Replayed: true``)
    and stores nothing twice.
    """
    frame = await _read_frame(request, {"unit_id": unit_id, "order_id": order_id, "camera_id": camera_id,
                                        "captured_at": captured_at})
    service = FrameService(request.app.state.context)
    answer, replayed = await service.submit(frame, principal, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return JSONResponse(answer.body, status_code=answer.status_code, headers=headers)


@router.post("/units/{unit_id:path}/close", response_model=UnitVerdictOut, responses=ERRORS,
             summary="Close a unit now and get its verdict")
async def close_unit(unit_id: str, request: Request, _: Annotated[Principal, Depends(LINE)]) -> dict[str, Any]:
    """Rolls the unit up from every frame the store has of it (from any process), after the frames already queued,
    and answers once that is committed; required views that never
    arrived are named and decide the verdict per the order's profile."""
    ctx = context(request)
    unit_id = check_identifier("unit_id", unit_id)
    batcher = ctx.require_batcher()
    durable = await asyncio.wrap_future(batcher.call(lambda inspector: inspector.close_unit_durably(unit_id)))
    return unit_verdict_json(await asyncio.wrap_future(durable))  # committed, rolled up from the store
