"""Engineers' operations shared by the CLI and the HTTP API, so both apply the same gate the same way."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import cast

from datasets.snapshot import Snapshot, Split
from inspection.errors import NotFoundError
from inspection.settings import Settings
from models.evaluation import evaluate_for_gate
from models.registry import (
    DetectionMetricsJSON,
    ModelRegistry,
    PromotionDecision,
    PromotionRefusedError,
    RegisteredModel,
)

log = logging.getLogger(__name__)

Evaluator = Callable[[RegisteredModel, Snapshot, str], DetectionMetricsJSON]


def _default_evaluate(model: RegisteredModel, snapshot: Snapshot, split: str) -> DetectionMetricsJSON:
    log.info("evaluating model %d (%s) on snapshot %s [%s]", model.id, model.sha256[:12], snapshot.id[:12], split)
    return evaluate_for_gate(model, snapshot, split=cast("Split", split))


def station_evaluator(settings: Settings) -> Evaluator:
    """The gate judges models on the engine and precision the stations run (``QC_ENGINE`` / ``QC_PRECISION``):
    bf16 or int8 boxes are what a station will produce, so they are what must beat the champion."""

    def evaluate(model: RegisteredModel, snapshot: Snapshot, split: str) -> DetectionMetricsJSON:
        log.info("evaluating model %d (%s) on snapshot %s [%s] with engine %s, precision %s", model.id,
                 model.sha256[:12], snapshot.id[:12], split, settings.engine, settings.precision)
        return evaluate_for_gate(model, snapshot, split=cast("Split", split), threads=settings.threads or None,
                                 engine=settings.engine, precision=settings.precision,
                                 cache_dir=settings.engine_cache_dir)

    return evaluate


def promote_on_holdout(registry: ModelRegistry, model: str | int, *, resolve: Callable[[str], Snapshot],
                       dataset: str | None = None, split: str = "val", tolerance: float = 0.01,
                       force: bool = False, reason: str = "", actor: str,
                       evaluate: Evaluator = _default_evaluate) -> PromotionDecision:
    """Evaluate the candidate and the champion on the holdout (or ``dataset``) through the runtime, then
    apply the registry's gate. Raises ``PromotionRefusedError`` listing every failing check."""
    candidate = registry.get(model)
    champion = registry.champion()
    held = registry.holdout()
    chosen = dataset or (str(held.manifest or held.snapshot_id) if held else None)
    metrics: dict[str, DetectionMetricsJSON] = {}
    if chosen is not None:
        snapshot = resolve(chosen)
        metrics["candidate"] = evaluate(candidate, snapshot, split)
        if champion is not None and champion.id != candidate.id:
            metrics["champion"] = evaluate(champion, snapshot, split)
    elif champion is not None and not force:
        raise PromotionRefusedError(
            "no holdout to judge the candidate on: mark one with `qcline models holdout SNAPSHOT` or name a "
            "dataset (or force with a reason)")
    return registry.promote(candidate.id, holdout_metrics=metrics or None, tolerance=tolerance, force=force,
                            reason=reason, actor=actor)


def resolve_for_api(settings: Settings, registry: ModelRegistry) -> Callable[[str], Snapshot]:
    """Snapshots by id or unique prefix only: the marked holdout's stored manifest, or the dataset library.
    Never a path, which over the network would read files of the caller's choosing."""
    from datasets.library import DatasetLibrary

    def resolve(value: str) -> Snapshot:
        held = registry.holdout()
        if held is not None and held.manifest is not None and held.manifest.is_file() and (
                value == str(held.manifest) or held.snapshot_id.startswith(value)):
            return Snapshot.load(held.manifest)
        if Path(value).is_absolute() or "/" in value:
            raise NotFoundError(f"dataset {value!r}: name a snapshot id, not a path")
        return DatasetLibrary(settings.data_dir / "datasets").get(value)

    return resolve
