"""Everything one running service holds, opened from settings and closed in order.

Built by ``ServiceContext.open`` (I/O) and handed to the app; tests build it with their own settings.
The model loads in a background thread so ``/healthz`` answers at once and ``/readyz`` turns ready only
when the model is loaded, verified and warmed up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from api.auth import ApiKeyService
from api.batching import MicroBatcher, NotReadyError
from api.config import ServiceSettings
from api.idempotency import IdempotencyStore
from api.jobs import TrainingJobs
from api.metrics import ServiceMetrics
from api.station import StationCore, open_core, station_model
from inspection.detector import OnnxDetector
from inspection.errors import QCError
from inspection.hotswap import ModelWatcher
from inspection.pipeline import Sink
from inspection.settings import DEFAULT_MODEL_DIR
from inspection.signals.factory import register_line_signal_metrics
from inspection.store.outbox import StationOrders
from inspection.store.repository import ResultsStore
from inspection.store.reviews import ReviewService
from inspection.store.writer import BatchedResultWriter
from models.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    settings: ServiceSettings
    core: StationCore
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
    _stop: threading.Event = field(default_factory=threading.Event)
    _syncer: threading.Thread | None = None

    @classmethod
    def open(cls, settings: ServiceSettings, *, metrics: ServiceMetrics | None = None,
             sinks: Sequence[Sink] = ()) -> ServiceContext:
        """Wire the service through the composition root (``api.station.open_core``): a camera's 200 waits for
        its group commit; a stalled database fills the writer's queue, the batcher backs up, new frames get 503 +
        Retry-After, and a commit that fails for ``commit_give_up_s`` is answered 503 too (never 200)."""
        metrics = metrics or ServiceMetrics()
        core = open_core(settings, sinks=[metrics.commit_sink(), *sinks], give_up_after_s=settings.commit_give_up_s)
        engine = core.store.engine  # one pool for every repository of this process
        metrics.bind_writer(lambda: core.writer.stats)
        if core.outbox is not None:
            metrics.bind_outbox(core.outbox.status)
        register_line_signal_metrics(metrics.registry, core.signals)
        registry = ModelRegistry(engine, settings.data_dir / "models")
        return cls(settings=settings, core=core, registry=registry, keys=ApiKeyService(engine, local=core.outbox),
                   reviews=ReviewService(core.store), idempotency=IdempotencyStore(engine, local=core.outbox),
                   jobs=TrainingJobs(engine, settings), metrics=metrics)

    @property
    def store(self) -> ResultsStore:
        return self.core.store

    @property
    def writer(self) -> BatchedResultWriter:
        return self.core.writer

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
        if self.core.outbox is not None:
            self._syncer = threading.Thread(target=self._sync_local, name="qcline-local-cache", daemon=True)
            self._syncer.start()
        if background:
            self._loader = threading.Thread(target=self._load, name="qcline-model-loader", daemon=True)
            self._loader.start()
        else:
            self._load()

    def _load(self) -> None:
        s = self.settings
        try:
            path = station_model(s, store=self.store)
            detector = self.core.open_detector(path)
            detector.warmup()
        except Exception as e:  # reported by /readyz; the process stays up so the reason can be read
            self.load_error = f"model failed to load: {e}"
            log.exception("model failed to load")
            return
        self.model_path = path
        inspector = self.core.inspector(detector, max_recent=100)
        batcher = MicroBatcher(inspector, max_batch=s.batch_size, max_wait_s=s.batch_wait_ms / 1000.0,
                               max_queue=s.max_queue, on_batch=self.metrics.observe_batch)
        batcher.start()
        self.batcher = batcher
        self.metrics.bind_queue_depth(lambda: batcher.depth)
        self.metrics.set_model(detector.model_sha256, detector.metadata.name, detector.engine_name,
                               detector.precision)
        if s.follow_champion and s.model_path is None:
            self.watcher = self.core.watcher(self._swap, detector.model_sha256, s.model_poll_s)
            self.watcher.start()
        self.metrics.ready.set(1)
        self._ready.set()
        log.info("serving model %s (%s) from %s on %s %s", detector.metadata.name, detector.model_sha256[:12], path,
                 detector.engine_name, detector.precision)

    def _sync_local(self, interval_s: float = 30.0) -> None:
        """Keep the station's local caches (API keys, orders with profiles) fresh while the database answers."""
        assert self.core.outbox is not None
        orders = StationOrders(self.store, self.core.outbox)
        while not self._stop.is_set():
            try:
                keys, cached = self.keys.sync_local(), orders.sync()
                log.debug("local cache: %d API keys, %d orders", keys, cached)
            except Exception as e:  # the database is away: keep what is cached
                log.info("local cache not refreshed: %s", e)
            self._stop.wait(interval_s)

    def station_state(self) -> dict[str, object]:
        """``ok``, or ``degraded`` while results wait in the outbox (the central database is away)."""
        stats = self.writer.stats
        state: dict[str, object] = {"status": "ok", "commit_queue": stats.pending,
                                    "commit_stalled_s": round(stats.stalled_s, 3)}
        if self.core.outbox is not None:
            outbox = self.core.outbox.status()
            state["outbox"] = outbox.as_json()
            if outbox.backlog or stats.offline:
                state["status"] = "degraded"
                state["reason"] = (f"central database unreachable: {outbox.backlog} results wait in the outbox"
                                   if stats.offline else f"replaying {outbox.backlog} results from the outbox")
            if outbox.alarm:
                state["alarm"] = outbox.alarm
        if stats.stalled_s > 0 and state["status"] == "ok":
            state["status"], state["reason"] = "degraded", "the results database is not answering commits"
        return state

    def _swap(self, detector: OnnxDetector) -> None:
        assert self.batcher is not None
        self.batcher.inspector.swap_detector(detector)
        self.metrics.set_model(detector.model_sha256, detector.metadata.name, detector.engine_name,
                               detector.precision)
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
                "engine": detector.engine_name, "precision": detector.precision,
                "swaps": self.watcher.swaps if self.watcher else 0, "watcher_error": pending}

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    # -- shutdown -----------------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        if self._loader is not None:
            self._loader.join(timeout=60)
        if self.watcher is not None:
            self.watcher.stop()
        if self.batcher is not None:
            self.batcher.stop()
        self.jobs.close()
        self.core.close()
