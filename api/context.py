"""Everything one running service holds, opened from settings and closed in order.

Built by ``ServiceContext.open`` (I/O) and handed to the app; tests build it with their own settings.
The model loads in a background thread so ``/healthz`` answers at once and ``/readyz`` turns ready only
when the model is loaded, verified and warmed up.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from api.auth import ApiKeyService
from api.batching import MicroBatcher, NotReadyError
from api.config import ServiceSettings
from api.idempotency import IdempotencyStore
from api.jobs import TrainingJobs
from api.metrics import ServiceMetrics
from api.station import StoreSink, station_model
from inspection.detector import OnnxDetector
from inspection.errors import QCError
from inspection.hotswap import ModelWatcher, champion_lookup
from inspection.pipeline import Inspector
from inspection.settings import DEFAULT_MODEL_DIR
from inspection.store.repository import ResultsStore
from inspection.store.reviews import ReviewService
from inspection.store.writer import BatchedResultWriter
from models.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    settings: ServiceSettings
    store: ResultsStore
    writer: BatchedResultWriter
    registry: ModelRegistry
    keys: ApiKeyService
    reviews: ReviewService
    idempotency: IdempotencyStore
    jobs: TrainingJobs
    metrics: ServiceMetrics
    batcher: MicroBatcher | None = None
    watcher: ModelWatcher | None = None
    model_path: Path | None = None
    load_error: str = ""
    _ready: threading.Event = field(default_factory=threading.Event)
    _loader: threading.Thread | None = None

    @classmethod
    def open(cls, settings: ServiceSettings) -> ServiceContext:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = ResultsStore.open(settings.resolved_database_url, settings.evidence_dir)
        engine = store.engine  # one pool for every repository of this process
        # A camera that got 200 must find its frame recorded: when the database stalls, the writer blocks
        # (up to 10 min) instead of dropping results, the batcher backs up, and new frames get 503 + Retry-After.
        writer = BatchedResultWriter(store, batch_size=settings.write_batch, keep_pass_frames=settings.keep_pass_frames,
                                     put_timeout_s=600.0)
        registry = ModelRegistry(engine, settings.data_dir / "models")
        return cls(settings=settings, store=store, writer=writer, registry=registry, keys=ApiKeyService(engine),
                   reviews=ReviewService(store), idempotency=IdempotencyStore(engine),
                   jobs=TrainingJobs(engine, settings), metrics=ServiceMetrics())

    # -- the model ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def require_batcher(self) -> MicroBatcher:
        if self.batcher is None or not self._ready.is_set():
            raise NotReadyError(self.load_error or "the model is still loading: retry in a moment")
        return self.batcher

    def start(self, *, background: bool = True) -> None:
        """Load the model (in a thread unless ``background=False``) and start the jobs runner."""
        self.jobs.recover()
        if self.settings.bundled_champion:  # the promotion gate always has a champion to beat
            self.registry.ensure_bundled_champion(DEFAULT_MODEL_DIR)
        try:
            purged = self.idempotency.purge(self.settings.idempotency_hours)
            if purged:
                log.info("forgot %d idempotency keys older than %.0f h", purged, self.settings.idempotency_hours)
        except QCError as e:  # housekeeping must not keep the line down
            log.warning("idempotency keys not purged: %s", e)
        if background:
            self._loader = threading.Thread(target=self._load, name="qcline-model-loader", daemon=True)
            self._loader.start()
        else:
            self._load()

    def _open_detector(self, path: Path) -> OnnxDetector:
        s = self.settings
        return OnnxDetector.from_package(path, threads=s.threads or None, max_batch=s.batch_size)

    def _load(self) -> None:
        s = self.settings
        try:
            path = station_model(s, store=self.store)
            detector = self._open_detector(path)
            detector.warmup()
        except Exception as e:  # reported by /readyz; the process stays up so the reason can be read
            self.load_error = f"model failed to load: {e}"
            log.exception("model failed to load")
            return
        self.model_path = path
        inspector = Inspector(detector, self.store, [StoreSink(self.writer)], batch_size=s.batch_size)
        batcher = MicroBatcher(inspector, max_batch=s.batch_size, max_wait_s=s.batch_wait_ms / 1000.0,
                               max_queue=s.max_queue, on_batch=self.metrics.observe_batch)
        batcher.start()
        self.batcher = batcher
        self.metrics.bind_queue_depth(lambda: batcher.depth)
        self.metrics.set_model(detector.model_sha256, detector.metadata.name)
        if s.follow_champion and s.model_path is None:
            self.watcher = ModelWatcher(champion_lookup(self.registry), self._swap, current_sha=detector.model_sha256,
                                        poll_interval_s=s.model_poll_s, loader=self._open_detector)
            self.watcher.start()
        self.metrics.ready.set(1)
        self._ready.set()
        log.info("serving model %s (%s) from %s", detector.metadata.name, detector.model_sha256[:12], path)

    def _swap(self, detector: OnnxDetector) -> None:
        assert self.batcher is not None
        self.batcher.inspector.swap_detector(detector)
        self.metrics.set_model(detector.model_sha256, detector.metadata.name)
        self.metrics.model_swaps.inc()

    def check_champion_now(self) -> None:
        """After a promotion or rollback through the API: swap without waiting for the next poll."""
        if self.watcher is not None:
            threading.Thread(target=self.watcher.check_once, name="qcline-swap-now", daemon=True).start()

    def model_state(self) -> dict[str, object]:
        if self.batcher is None:
            return {"ready": False, "error": self.load_error}
        detector = self.batcher.inspector.detector
        pending = self.watcher.stats().last_error if self.watcher else ""
        return {"ready": self.ready, "sha256": detector.model_sha256,
                "name": getattr(getattr(detector, "metadata", None), "name", ""),
                "swaps": self.watcher.swaps if self.watcher else 0, "watcher_error": pending}

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- shutdown -----------------------------------------------------------------------------------

    def close(self) -> None:
        if self._loader is not None:
            self._loader.join(timeout=60)
        if self.watcher is not None:
            self.watcher.stop()
        if self.batcher is not None:
            self.batcher.stop()
        self.jobs.close()
        self.writer.close()
        stats = self.writer.stats
        if stats.dropped_writes or stats.failed_writes or stats.lost_results:
            log.error("results writer: %d dropped, %d failed, %d lost", stats.dropped_writes, stats.failed_writes,
                      stats.lost_results)
        self.store.close()
