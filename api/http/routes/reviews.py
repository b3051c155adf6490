"""Operators: the review queue, decisions on frames, and units' dispositions (the same ``ReviewService``
the CLI uses, so a decision means the same thing whichever door it came through)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.composition import ServiceContext
from api.http.deps import OPERATOR, READER, context
from api.http.schemas import (
    DispositionIn,
    DispositionRecordedOut,
    ErrorOut,
    QueueItemOut,
    ReviewIn,
    ReviewOut,
    RowId,
    errors,
)
from api.services.auth import Principal
from inspection.reviews import Decision, ReviewDecision, ReviewedBox
from inspection.store.reviews import DispositionRecorded, QueueItem, ReviewRecord

router = APIRouter(prefix="/v1", tags=["operators"])
ERRORS = errors(404)


@router.get("/reviews/queue", response_model=list[QueueItemOut],
            summary="Units waiting for a person, most urgent first", responses=ERRORS)
async def review_queue(request: Request, _: Annotated[Principal, Depends(OPERATOR)],
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[QueueItem]:
    """FAIL before REVIEW, then the order's due date, then arrival."""
    return await run_in_threadpool(fresh_queue, context(request), limit)


def fresh_queue(ctx: ServiceContext, limit: int) -> list[QueueItem]:
    """The review queue including frames judged a moment ago (still in the writer's queue)."""
    ctx.writer.flush(timeout=5)
    return ctx.reviews.queue(limit)


@router.post("/reviews", status_code=201, response_model=ReviewOut,
             summary="Record a decision on one frame", responses=ERRORS)
async def post_review(body: ReviewIn, request: Request,
                      principal: Annotated[Principal, Depends(OPERATOR)]) -> ReviewRecord:
    """``confirm`` keeps the model's boxes as labels, ``false_alarm`` makes the frame a negative example,
    ``correct`` replaces the boxes. Sending the same decision twice (a double click) stores it once."""
    decision = ReviewDecision(body.inspection_id, Decision.parse(body.decision),
                              tuple(ReviewedBox.of(*box) for box in body.boxes), actor=principal.name, note=body.note)
    return await run_in_threadpool(context(request).reviews.record, decision)


@router.get("/inspections/{inspection_id}/reviews", response_model=list[ReviewOut],
            summary="Every review of one frame", responses=ERRORS)
async def review_history(inspection_id: RowId, request: Request,
                         _: Annotated[Principal, Depends(READER)]) -> list[ReviewRecord]:
    return await run_in_threadpool(context(request).reviews.history, inspection_id)


@router.get("/inspections/{inspection_id}/image", summary="The frame an inspection judged",
            response_class=StreamingResponse, responses=ERRORS | {
                200: {"description": "The evidence frame as stored (its sha256 is the ETag)",
                      "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                                  "image/png": {"schema": {"type": "string", "format": "binary"}}}},
                503: {"model": ErrorOut, "description": "The evidence store cannot be reached"}})
async def inspection_image(inspection_id: RowId, request: Request,
                           _: Annotated[Principal, Depends(READER)]) -> StreamingResponse:
    """Streamed from the configured evidence store (local folder or object store), in chunks, size-capped."""
    reader = await run_in_threadpool(context(request).reviews.evidence_of, inspection_id)
    headers = {"Cache-Control": "private, max-age=3600", "Content-Length": str(reader.info.size)}
    if reader.info.sha256:  # content-addressed: the name is the strongest validator there is
        headers["ETag"] = f'"{reader.info.sha256}"'
    return StreamingResponse(reader.chunks(), media_type=reader.info.media_type, headers=headers,
                             background=BackgroundTask(reader.close))


@router.post("/units/{unit_id:path}/disposition", status_code=201, response_model=DispositionRecordedOut,
             summary="Release, rework or scrap a unit",
             responses=ERRORS)
async def set_disposition(unit_id: str, body: DispositionIn, request: Request,
                          principal: Annotated[Principal, Depends(OPERATOR)]) -> DispositionRecorded:
    return await run_in_threadpool(context(request).reviews.set_disposition, unit_id, body.disposition,
                                   principal.name, body.note)
