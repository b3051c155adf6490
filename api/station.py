"""Wiring of a station from settings: store, writer sink, detector, inspector.

The CLI (and later the HTTP service) call these services instead of composing parts themselves, so
both front doors run the same line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from inspection.detector import OnnxDetector
from inspection.hotswap import ModelWatcher, champion_lookup
from inspection.pipeline import Inspector
from inspection.settings import DEFAULT_MODEL_DIR, Settings
from inspection.sources import FrameSource
from inspection.store.repository import ResultsStore
from inspection.store.writer import BatchedResultWriter
from inspection.types import FrameResult, UnitVerdict, Verdict

log = logging.getLogger(__name__)


class StoreSink:
    """Frame results go through the batched writer (off the inference path); unit verdicts follow them
    through the same queue, so a unit's verdict is never written before its frames."""

    def __init__(self, writer: BatchedResultWriter) -> None:
        self._writer = writer

    def submit(self, result: FrameResult) -> None:
        self._writer.submit(result)

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        self._writer.submit_unit_verdict(verdict)


@dataclass
class Station:
    settings: Settings
    store: ResultsStore
    writer: BatchedResultWriter
    detector: OnnxDetector

    def inspector(self, on_unit_verdict: Callable[[UnitVerdict], None] | None = None) -> Inspector:
        return Inspector(self.detector, self.store, [StoreSink(self.writer)], batch_size=self.settings.batch_size,
                         on_unit_verdict=on_unit_verdict)

    @contextmanager
    def following_champion(self, inspector: Inspector, poll_interval_s: float = 2.0) -> Iterator[ModelWatcher]:
        """Swap in each newly promoted champion between batches (verified, warmed up) while running."""
        from models.registry import ModelRegistry

        registry = ModelRegistry(self.store.engine, self.settings.data_dir / "models")  # the store's pool
        watcher = ModelWatcher(champion_lookup(registry), inspector.swap_detector,
                               current_sha=self.detector.model_sha256, poll_interval_s=poll_interval_s,
                               loader=lambda path: OnnxDetector.from_settings(path, self.settings))
        watcher.start()
        try:
            yield watcher
        finally:
            watcher.stop()

    def record_source(self, source: FrameSource, label: str, camera_id: str) -> None:
        stats = source.stats
        self.store.record_source_stats(label, camera_id, frames_read=stats.frames_read,
                                       frames_failed=stats.frames_failed, frames_dropped=stats.frames_dropped,
                                       reconnects=stats.reconnects, last_error=stats.last_error)
        if stats.frames_dropped:
            log.warning("%s dropped %d frames (latest-frame policy)", label, stats.frames_dropped)


def open_store(settings: Settings) -> ResultsStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ResultsStore.open(settings.resolved_database_url, settings.evidence_dir)


def station_model(settings: Settings, model: Path | None = None, *, store: ResultsStore | None = None) -> Path:
    """The package a station runs: ``--model``, else ``QC_MODEL_PATH``, else the registry's champion,
    else the bundled default model. An open ``store`` lends its connection pool to the registry lookup."""
    if model is not None:
        return model
    if settings.model_path is not None:
        return settings.model_path
    from models.registry import ModelRegistry

    if store is not None:
        champion = ModelRegistry(store.engine, settings.data_dir / "models").champion()
    elif settings.database_url or (settings.data_dir / "qcline.db").exists():  # never create a database here
        with ModelRegistry.open(settings.resolved_database_url, settings.data_dir / "models") as registry:
            champion = registry.champion()
    else:
        champion = None
    return Path(champion.path) if champion is not None else DEFAULT_MODEL_DIR


@contextmanager
def open_station(settings: Settings, model: Path | None = None) -> Iterator[Station]:
    """Open the store and the model, yield a station, and on exit flush every pending write."""
    store = open_store(settings)
    detector = OnnxDetector.from_settings(station_model(settings, model, store=store), settings)
    detector.warmup()
    writer = BatchedResultWriter(store, batch_size=settings.write_batch,
                                 keep_pass_frames=settings.keep_pass_frames)
    try:
        yield Station(settings, store, writer, detector)
    finally:
        writer.close()
        stats = writer.stats
        if stats.dropped_writes or stats.failed_writes or stats.lost_results:
            log.error("results writer: %d dropped, %d failed, %d lost", stats.dropped_writes,
                      stats.failed_writes, stats.lost_results)
        store.close()


VERDICT_STYLE = {Verdict.PASS: "green", Verdict.REVIEW: "yellow", Verdict.FAIL: "bold red"}
