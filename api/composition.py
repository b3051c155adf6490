"""The composition root: the one place where a station is wired, for every front door (CLI and service).

``open_core`` builds what every station shares: the results store, the local outbox (store-and-forward for a
station on a central database), the group-commit writer (the journal a result must reach before it is
acknowledged) and the sinks that hear of a result only once it is durable.
``StationCore.inspector`` / ``open_detector`` / ``watcher`` add the model side. ``open_station`` (the CLI)
and ``ServiceContext`` (the service, below) both use them, so each sink is wired once, here.

**Plugging in an after-commit sink** (metrics, MQTT, PLC, ...): anything with ``submit(FrameResult)`` and
``submit_unit_verdict(UnitVerdict)`` (``inspection.pipeline.Sink``; an optional ``close()`` is called at
shutdown after the last commit). Either pass it per call (``open_core(settings, sinks=[...])``, as the
service does with its metrics) or, for sinks every station gets from its settings, return it from
``line_signal_sinks`` below. Sinks run on the writer's thread right after each commit: they must not block
(queue and deliver on their own thread) and their errors are logged and counted, never undo a commit.

**The service** (``ServiceContext``, below): everything one running service holds, opened from settings
and closed in order. Built by ``ServiceContext.open`` (I/O) and handed to the app; tests build it
with their own settings.
The model loads in a background thread so ``/healthz`` answers at once and ``/readyz`` turns ready only
when the model is loaded, verified and warmed up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from api.config import ServiceSettings
from api.services.auth import ApiKeyService
from api.services.batching import MicroBatcher, NotReadyError
from api.services.idempotency import IdempotencyStore
from api.services.jobs import TrainingJobs
from api.services.metrics import ServiceMetrics
from inspection.conformance.colour import warm_up as colour_warm_up
from inspection.detector import OnnxDetector
from inspection.errors import NotFoundError, QCError
from inspection.hotswap import ModelWatcher, champion_lookup
from inspection.line.cameras import CameraHub
from inspection.line.config import StationConfig, load_station_config
from inspection.line.sources import build_trigger_sources
from inspection.line.station import STATUS_FILE, InspectorRunner, LineStation
from inspection.line.triggers import TriggerAnswer, TriggerSource
from inspection.pipeline import Inspector, OrderResolver, Sink
from inspection.settings import DEFAULT_MODEL_DIR, Settings
from inspection.signals import build_line_signals
from inspection.signals.factory import register_line_signal_metrics
from inspection.sources import FrameSource
from inspection.store.api_keys import ApiKeyRepository
from inspection.store.backends import open_evidence_store
from inspection.store.idempotency import IdempotencyRepository
from inspection.store.outbox import OUTBOX_FILE, Outbox, StationOrders
from inspection.store.repository import ResultsStore
from inspection.store.reviews import ReviewService
from inspection.store.training_jobs import TrainingJobRepository
from inspection.store.triggers import TRIGGER_SPOOL, TriggerLog
from inspection.store.writer import BatchedResultWriter
from inspection.types import UnitVerdict, Verdict
from models.registry import ModelRegistry

log = logging.getLogger(__name__)


def line_signal_sinks(settings: Settings) -> list[Sink]:
    """After-commit sinks every station builds from its settings (the line signals: MQTT to the MES, PLC
    outputs), configured by ``QC_MQTT_*``, ``QC_MODBUS_*``, ``QC_OPCUA_*``; none configured means none built.
    Each queues on its own durable spool or thread, so a commit never waits for the broker or the PLC."""
    return list(build_line_signals(settings))


@dataclass
class StationCore:
    """Store, journal (group-commit writer) and after-commit sinks of one station process."""

    settings: Settings
    store: ResultsStore
    writer: BatchedResultWriter
    sinks: list[Sink] = field(default_factory=list)
    outbox: Outbox | None = None
    signals: list[Sink] = field(default_factory=list)  # the line signals among ``sinks`` (MQTT, PLC)

    @property
    def orders(self) -> OrderResolver:
        """Orders and unit histories for the inspector: cached locally when the station has an outbox."""
        return StationOrders(self.store, self.outbox) if self.outbox is not None else self.store

    def open_detector(self, path: Path) -> OnnxDetector:
        s = self.settings
        return OnnxDetector.from_settings(path, s)  # engine and precision from QC_ENGINE / QC_PRECISION

    def inspector(self, detector: OnnxDetector, *, max_recent: int = 1000,
                  on_unit_verdict: Callable[..., None] | None = None) -> Inspector:
        """An inspector whose every result goes through the journal: done only once it is durable."""
        return Inspector(detector, self.orders, batch_size=self.settings.batch_size, journal=self.writer,
                         overlap=self.settings.pipeline_overlap,
                         max_recent=max_recent, on_unit_verdict=on_unit_verdict, calibrations=self.store)

    def watcher(self, swap: Callable[[OnnxDetector], None], current_sha: str,
                poll_interval_s: float = 2.0) -> ModelWatcher:
        """Follows promotions in the registry (on the store's own pool); not started."""
        from models.registry import ModelRegistry

        registry = ModelRegistry(self.store.engine, self.settings.data_dir / "models")
        return ModelWatcher(champion_lookup(registry), swap, current_sha=current_sha,
                            poll_interval_s=poll_interval_s, loader=self.open_detector)

    def close_unit(self, unit_id: str) -> UnitVerdict:
        """Close a unit as the service's inspector does (``Inspector.close_unit_durably``): through the journal,
        after every result queued before, rolled up in the store from every frame it holds (under the unit's
        lock), sealed in the audit chain, and heard by the after-commit sinks (the line signals).

        ``NotFoundError`` when the central database is away and the close waits in the station's outbox (it is
        applied there when the database is back; this process knows no frames of the unit to answer from).
        """
        verdict = self.writer.close_unit(unit_id).result()
        if verdict is None:
            raise NotFoundError(f"unit {unit_id!r} is closed once the central database is back (the close waits "
                                "in this station's outbox); its verdict is not known here")
        return verdict

    def close(self) -> None:
        """Commit what is queued, close the sinks, release the store."""
        self.writer.close()
        stats = self.writer.stats
        if stats.not_recorded or stats.failed_writes:
            log.error("results writer: %d commit attempts failed, %d results NOT recorded (their callers were "
                      "told)", stats.failed_writes, stats.not_recorded)
        for sink in self.sinks:
            closer = getattr(sink, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    log.exception("closing sink %s failed", type(sink).__name__)
        if self.outbox is not None:
            backlog = self.outbox.backlog()
            if backlog:
                log.warning("%d results wait in the outbox %s: replayed at the next start", backlog,
                            self.outbox.path)
            self.outbox.close()
        self.store.close()


def open_core(settings: Settings, *, sinks: Sequence[Sink] = (), give_up_after_s: float | None = None,
              store: ResultsStore | None = None) -> StationCore:
    """Open the store and the journal. ``sinks`` (plus ``line_signal_sinks(settings)``) hear of every result
    and unit verdict once committed. ``give_up_after_s``: how long a commit is retried before its callers are
    told it failed (``None``: retry until it works, the line pausing meanwhile; the CLI does that)."""
    store = store or open_store(settings)
    outbox = None
    try:
        if settings.outbox_enabled:
            outbox = Outbox(settings.data_dir / OUTBOX_FILE, max_bytes=int(settings.outbox_max_mb * 1024**2))
        signals = line_signal_sinks(settings)
        all_sinks = [*sinks, *signals]
        writer = BatchedResultWriter(store, batch_size=settings.write_batch,
                                     keep_pass_frames=settings.keep_pass_frames, give_up_after_s=give_up_after_s,
                                     after_commit=all_sinks, outbox=outbox)
    except Exception:
        if outbox is not None:
            outbox.close()
        store.close()
        raise
    return StationCore(settings, store, writer, all_sinks, outbox, signals)


@dataclass
class Station:
    """A CLI station: the core plus a loaded model."""

    core: StationCore
    detector: OnnxDetector

    @property
    def settings(self) -> Settings:
        return self.core.settings

    @property
    def store(self) -> ResultsStore:
        return self.core.store

    @property
    def writer(self) -> BatchedResultWriter:
        return self.core.writer

    def inspector(self, max_recent: int = 10_000) -> Inspector:
        return self.core.inspector(self.detector, max_recent=max_recent)

    @contextmanager
    def following_champion(self, inspector: Inspector, poll_interval_s: float = 2.0) -> Iterator[ModelWatcher]:
        """Swap in each newly promoted champion between batches (verified, warmed up) while running."""
        watcher = self.core.watcher(inspector.swap_detector, self.detector.model_sha256, poll_interval_s)
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
    return ResultsStore.open(settings.resolved_database_url, open_evidence_store(settings),
                             station_id=settings.station_id)


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
def open_station(settings: Settings, model: Path | None = None, *, sinks: Sequence[Sink] = ()) -> Iterator[Station]:
    """Open the core and the model, yield a station, and on exit commit every pending result."""
    core = open_core(settings, sinks=sinks)
    try:
        detector = core.open_detector(station_model(settings, model, store=core.store))
        detector.warmup()
        yield Station(core, detector)
    finally:
        core.close()


def open_line_station(settings: Settings, config: StationConfig, runner: InspectorRunner, core: StationCore, *,
                      on_answer: Sequence[Callable[[TriggerAnswer], None]] = (),
                      sources: Sequence[TriggerSource] = ()) -> LineStation:
    """The line station of ``config``: its cameras opened (connecting in the background), its trigger sources
    built (``inspection.line.sources``; ``http`` entries are the service's own route) plus ``sources`` given
    ready-made (a simulator, a test), the trigger log on the station's database and the status file in
    ``QC_DATA_DIR``. Not started; closing it closes the cameras and the sources."""
    hub = CameraHub.open(config.cameras)  # first: a label trigger reads its camera's frames
    # the config's own records (http ones build nothing), so the sources' messages name the file and line
    try:
        built = build_trigger_sources(list(config.triggers), station_id=config.station,
                                      settings=settings, line_signals=core.signals,
                                      latest_frame_for=hub.latest_frame_for, data_dir=settings.data_dir)
    except BaseException:
        hub.close()
        raise
    # the first colour-measuring unit must not pay colour-science's ~1-2 s import inside its answer to the line
    threading.Thread(target=colour_warm_up, name="qcline-warm-colour", daemon=True).start()
    return LineStation(config, hub, runner, core.orders, records=TriggerLog(
                           core.store.engine, config.station, spool=settings.data_dir / TRIGGER_SPOOL),
                       sources=[*built, *sources], status_path=settings.data_dir / STATUS_FILE, on_answer=on_answer)


VERDICT_STYLE = {Verdict.PASS: "green", Verdict.REVIEW: "yellow", Verdict.FAIL: "bold red"}


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
    line_config: StationConfig | None = None
    line: LineStation | None = None
    """The line station (``QC_STATION_CONFIG``): started once the model is loaded, through the batcher."""
    _ready: threading.Event = field(default_factory=threading.Event)
    _loader: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _syncer: threading.Thread | None = None

    @classmethod
    def open(cls, settings: ServiceSettings, *, metrics: ServiceMetrics | None = None,
             sinks: Sequence[Sink] = ()) -> ServiceContext:
        """Wire the service through the composition root (``api.composition.open_core``): a camera's 200 waits for
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
        try:  # a bad station file stops the service at start, with the file, key and line
            line_config = load_station_config(settings.station_config) if settings.station_config else None
        except BaseException:
            core.close()
            raise
        return cls(settings=settings, core=core, registry=registry,
                   keys=ApiKeyService(ApiKeyRepository(engine), local=core.outbox), reviews=ReviewService(core.store),
                   idempotency=IdempotencyStore(IdempotencyRepository(engine), local=core.outbox),
                   jobs=TrainingJobs(TrainingJobRepository(engine), settings), metrics=metrics,
                   line_config=line_config)

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

    def require_line(self) -> LineStation:
        """The running line station; ``NotFoundError`` when this service has none, ``NotReadyError`` while the
        model (and so the station) is still loading."""
        if self.line_config is None:
            raise NotFoundError("this service runs no line station (QC_STATION_CONFIG is unset)")
        if self.line is None:
            raise NotReadyError(self.load_error or "the line station starts once the model is loaded: retry")
        return self.line

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
        if self.line_config is not None:
            try:
                line = open_line_station(s, self.line_config, batcher, self.core,
                                         on_answer=[self.metrics.observe_trigger])
            except Exception as e:  # reported by /readyz like a model that does not load
                self.load_error = f"line station failed to start: {e}"
                log.exception("line station failed to start")
                return
            self.metrics.bind_line(line)
            line.start()
            self.line = line
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
        if self.line is not None:  # before the batcher: the triggers in progress are judged and answered
            self.line.close()
        if self.batcher is not None:
            self.batcher.stop()
        self.jobs.close()
        self.core.close()
