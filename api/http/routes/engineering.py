"""Engineers: models and their metrics, promotion and rollback, dataset snapshots, training jobs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from api.http.deps import ENGINEER, READER, context
from api.http.schemas import (
    DatasetDetailOut,
    DatasetOut,
    ModelAuditOut,
    ModelDetailOut,
    ModelOut,
    PromoteIn,
    PromotionOut,
    RollbackIn,
    RowId,
    StationOut,
    TrainingJobDetailOut,
    TrainingJobIn,
    TrainingJobOut,
    errors,
)
from api.services.auth import Principal
from api.services.engineering import promote_on_holdout, resolve_for_api, station_evaluator
from api.services.jobs import TrainingJob
from api.services.redact import redact_paths
from inspection.errors import NotFoundError
from models.registry import ModelAuditEntry

router = APIRouter(prefix="/v1", tags=["engineers"])
ERRORS = errors(404)
CHANGE_ERRORS = errors(404, 409)


@router.get("/station", response_model=StationOut, response_model_exclude_unset=True,
            summary="The model this service is running", responses=ERRORS)
async def station(request: Request, _: Annotated[Principal, Depends(READER)]) -> dict[str, Any]:
    ctx = context(request)
    return {**ctx.model_state(), "queue_depth": ctx.batcher.depth if ctx.batcher else 0,
            "batches": ctx.batcher.stats.batches if ctx.batcher else 0}


@router.get("/models", response_model=list[ModelOut], summary="Registered models with their metrics", responses=ERRORS)
async def list_models(request: Request, _: Annotated[Principal, Depends(ENGINEER)]) -> list[dict[str, Any]]:
    models = await run_in_threadpool(context(request).registry.list)
    return [m.to_json() for m in models]


@router.get("/models/audit", response_model=list[ModelAuditOut],
            summary="Every stage change, newest last", responses=ERRORS)
async def model_audit(request: Request, _: Annotated[Principal, Depends(ENGINEER)]) -> list[ModelAuditEntry]:
    return await run_in_threadpool(context(request).registry.audit)


@router.get("/models/{model_id}", response_model=ModelDetailOut,
            summary="One model: metrics, lineage, audit trail", responses=ERRORS)
async def get_model(model_id: str, request: Request, _: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    registry = context(request).registry

    def work() -> dict[str, Any]:
        model = registry.get(model_id)
        return {**model.to_json(), "audit": [entry.to_json() for entry in registry.audit(model.id)]}

    return await run_in_threadpool(work)


@router.post("/models/{model_id}/promote", response_model=PromotionOut,
             summary="Promote through the holdout gate (as the CLI does)", responses=CHANGE_ERRORS)
async def promote(model_id: str, body: PromoteIn, request: Request,
                  principal: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    """Evaluates candidate and champion on the frozen holdout through the runtime; refused (409, listing every
    failing check) unless every check passes or ``force`` with a ``reason``. Running stations, this one
    included, swap to the new champion between batches without failing a request."""
    ctx = context(request)

    def work() -> dict[str, Any]:
        decision = promote_on_holdout(ctx.registry, model_id, resolve=resolve_for_api(ctx.settings, ctx.registry),
                                      dataset=body.dataset, split=body.split, tolerance=body.tolerance,
                                      force=body.force, reason=body.reason, actor=principal.name,
                                      evaluate=station_evaluator(ctx.settings))
        return decision.to_json()

    result = await run_in_threadpool(work)
    ctx.check_champion_now()
    return result


@router.post("/models/rollback", response_model=ModelOut, summary="Put the previous champion back",
             responses=CHANGE_ERRORS)
async def rollback(body: RollbackIn, request: Request,
                   principal: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    ctx = context(request)
    restored = await run_in_threadpool(ctx.registry.rollback, principal.name, body.reason)
    ctx.check_champion_now()
    return restored.to_json()


def _library(request: Request) -> Any:
    from datasets.library import DatasetLibrary

    return DatasetLibrary(context(request).settings.data_dir / "datasets")


@router.get("/datasets", response_model=list[DatasetOut], summary="Dataset snapshots", responses=ERRORS)
async def list_datasets(request: Request, _: Annotated[Principal, Depends(ENGINEER)]) -> list[dict[str, Any]]:
    return await run_in_threadpool(lambda: _library(request).list())


@router.get("/datasets/{snapshot_id}", response_model=DatasetDetailOut,
            summary="One snapshot: classes, splits, per-class counts", responses=ERRORS)
async def get_dataset(snapshot_id: str, request: Request,
                      _: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    from datasets.library import summary

    def work() -> dict[str, Any]:
        snapshot = _library(request).get(snapshot_id)
        counts: dict[str, dict[str, int]] = {}
        for split in snapshot.split_counts():
            per_class = dict.fromkeys(snapshot.classes, 0)
            for entry in snapshot.split(split):
                for box in entry.image.boxes:
                    per_class[box.class_name] = per_class.get(box.class_name, 0) + 1
            counts[split] = per_class
        return {**summary(snapshot), "boxes_per_class": counts}

    return await run_in_threadpool(work)


@router.post("/training-jobs", status_code=202, response_model=TrainingJobDetailOut,
             summary="Start a training run in the background", responses=CHANGE_ERRORS)
async def start_training(body: TrainingJobIn, request: Request,
                         principal: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    """Trains on a snapshot (from the yaml, or fine-tuning a registered model), evaluates through the runtime
    and registers a candidate, as ``qcline train`` does. Follow it with ``GET /v1/training-jobs/{id}``."""
    ctx = context(request)

    def work() -> TrainingJob:
        snapshot = _library(request).get(body.dataset)  # 404 now, not an hour into a job
        base = body.base
        if not base.endswith((".yaml", ".yml")):
            base = str(ctx.registry.get(base).id)
        elif "/" in base:
            raise NotFoundError(f"base {base!r}: name an architecture yaml such as yolov8n.yaml, not a path")
        params = {**body.model_dump(), "dataset": snapshot.id, "base": base}
        return ctx.jobs.start(params, principal.name)

    return _redacted(await run_in_threadpool(work))


@router.get("/training-jobs", response_model=list[TrainingJobOut],
            summary="Training jobs, newest first", responses=ERRORS)
async def list_training(request: Request, _: Annotated[Principal, Depends(ENGINEER)],
                        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    return [_redacted(job) for job in await run_in_threadpool(context(request).jobs.list, limit)]


@router.get("/training-jobs/{job_id}", response_model=TrainingJobDetailOut,
            summary="A training job's status, epoch progress and log tail",
            responses=ERRORS)
async def get_training(job_id: RowId, request: Request,
                       _: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    return _redacted(await run_in_threadpool(context(request).jobs.get, job_id))


def _redacted(value: Any) -> Any:
    """A job as the network sees it: its error, result and log tail without server paths (files keep them)."""
    if isinstance(value, TrainingJob):
        return _redacted(value.to_json())
    if isinstance(value, str):
        return redact_paths(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


@router.post("/training-jobs/{job_id}/cancel", response_model=TrainingJobDetailOut,
             summary="Stop a running training job", responses=CHANGE_ERRORS)
async def cancel_training(job_id: RowId, request: Request,
                          _: Annotated[Principal, Depends(ENGINEER)]) -> dict[str, Any]:
    return _redacted(await run_in_threadpool(context(request).jobs.cancel, job_id))
