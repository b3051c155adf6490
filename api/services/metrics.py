"""Prometheus metrics of one service instance, on its own registry (two apps in one process, as in tests,
never share counters).

Label sets are bounded: defect classes come from the model; camera ids are capped at ``max_cameras`` (more
count as ``other``); a build-to-order line sees a new order every few units, so per-order series are kept
for the most recent ``max_orders`` orders only; older ones are removed from the exposition (their totals
stay in the results database, which is the record).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inspection.line.station import LineStation
from inspection.line.triggers import TriggerAnswer
from inspection.pipeline import FrameOutcome, FrameStatus
from inspection.store.outbox import OutboxStatus
from inspection.store.writer import WriterStats
from inspection.types import FrameResult, UnitVerdict

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)


class ServiceMetrics:
    def __init__(self, *, max_orders: int = 500, max_cameras: int = 64) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("qcline_frames", "Frames judged, by camera and frame verdict.",
                              ["camera", "verdict"], registry=r)
        self.order_verdicts = Counter("qcline_order_frame_verdicts", "Frame verdicts by order (recent orders).",
                                      ["order", "verdict"], registry=r)
        self.unit_verdicts = Counter("qcline_unit_verdicts", "Unit verdicts committed (rolled up in the store), by "
                                     "verdict.", ["verdict"], registry=r)
        self.committed = Counter("qcline_frames_committed", "Frame results made durable (group commit).", registry=r)
        self.writer_pending = Gauge("qcline_commit_queue_depth", "Results waiting for their group commit.",
                                    registry=r)
        self.commit_stalled = Gauge("qcline_commit_stalled_seconds", "How long the current group commit has been "
                                    "retrying a failing database (0 when it answers).", registry=r)
        self.outbox_backlog = Gauge("qcline_outbox_backlog", "Results waiting in the station outbox for the central "
                                    "database.", registry=r)
        self.outbox_age = Gauge("qcline_outbox_oldest_age_seconds", "Age of the oldest result in the outbox (0 when "
                                "empty).", registry=r)
        self.outbox_bytes = Gauge("qcline_outbox_bytes", "Size of the outbox file on disk.", registry=r)
        self.outbox_alarm = Gauge("qcline_outbox_alarm", "1 when the outbox nears its size bound or its disk is "
                                  "nearly full.", registry=r)
        self.not_recorded = Gauge("qcline_results_not_recorded", "Results whose commit was given up (answered "
                                  "503, never 200) since start.", registry=r)
        self.findings = Counter("qcline_findings", "Detections judged, by defect class and what the order's "
                                "rule made of them.", ["defect_class", "outcome"], registry=r)
        self.rejected = Counter("qcline_frames_rejected", "Frames refused, by reason.", ["reason"], registry=r)
        self.dropped = Counter("qcline_frames_dropped", "Frames shed because the inference queue was full.",
                               registry=r)
        self.duplicates = Counter("qcline_frames_duplicate", "Frames already judged for their unit.", registry=r)
        self.request_latency = Histogram("qcline_request_duration_seconds", "HTTP request latency by route.",
                                         ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_latency = Histogram("qcline_inference_batch_seconds", "Forward pass and judging of one batch.",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("qcline_queue_wait_seconds", "Time the oldest frame of a batch waited.",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("qcline_batch_size", "Frames per forward pass.",
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64), registry=r)
        self.queue_depth = Gauge("qcline_queue_depth", "Frames waiting for inference.", registry=r)
        self.model_info = Gauge("qcline_model_info", "The model in use (value 1).",
                                ["sha256", "name", "engine", "precision"], registry=r)
        self.model_swaps = Counter("qcline_model_swaps", "Hot swaps to a newly promoted model.", registry=r)
        self.ready = Gauge("qcline_ready", "1 once the model is loaded and warmed up.", registry=r)
        self.triggers = Counter("qcline_line_triggers", "Line triggers answered, by channel and outcome.",
                                ["channel", "outcome"], registry=r)
        self.trigger_latency = Histogram("qcline_line_trigger_seconds", "Trigger received -> answered, by channel.",
                                         ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self._orders: OrderedDict[str, set[str]] = OrderedDict()
        self._max_orders = max_orders
        self._cameras: set[str] = set()
        self._max_cameras = max_cameras
        self._lock = threading.Lock()
        self._model: tuple[str, str, str, str] | None = None

    def bind_queue_depth(self, depth: Callable[[], float]) -> None:
        self.queue_depth.set_function(depth)

    def bind_writer(self, stats: Callable[[], WriterStats]) -> None:
        """Read the group-commit writer's state at each scrape."""
        self.writer_pending.set_function(lambda: stats().pending)
        self.commit_stalled.set_function(lambda: stats().stalled_s)
        self.not_recorded.set_function(lambda: stats().not_recorded)

    def bind_outbox(self, status: Callable[[], OutboxStatus]) -> None:
        self.outbox_backlog.set_function(lambda: status().backlog)
        self.outbox_age.set_function(lambda: status().oldest_age_s or 0.0)
        self.outbox_bytes.set_function(lambda: status().size_bytes)
        self.outbox_alarm.set_function(lambda: 1.0 if status().alarm else 0.0)

    def commit_sink(self) -> CommitMetrics:
        """The after-commit sink counting durable results and unit verdicts (plugged in by the station root)."""
        return CommitMetrics(self)

    def set_model(self, sha256: str, name: str, engine: str = "", precision: str = "") -> None:
        """The model in use, with the engine and precision running it (one series at a time)."""
        with self._lock:
            if self._model is not None:
                self.model_info.remove(*self._model)
            self._model = (sha256, name, engine, precision)
            self.model_info.labels(sha256, name, engine, precision).set(1)

    def _order_series(self, order_id: str, verdict: str) -> None:
        with self._lock:
            verdicts = self._orders.get(order_id)
            if verdicts is None:
                verdicts = self._orders[order_id] = set()
                while len(self._orders) > self._max_orders:
                    old, old_verdicts = self._orders.popitem(last=False)
                    for v in old_verdicts:
                        self.order_verdicts.remove(old, v)
            else:
                self._orders.move_to_end(order_id)
            verdicts.add(verdict)
            self.order_verdicts.labels(order_id, verdict).inc()

    def _camera(self, camera_id: str) -> str:
        """Camera ids come from clients: past ``max_cameras`` distinct ones, the rest count as ``other``, so a
        misconfigured (or hostile) camera cannot grow the exposition without bound."""
        if camera_id in self._cameras:
            return camera_id
        if len(self._cameras) < self._max_cameras:
            self._cameras.add(camera_id)
            return camera_id
        return "other"

    def observe_batch(self, outcomes: Sequence[FrameOutcome], seconds: float, waited: float) -> None:
        judged = 0
        for outcome in outcomes:
            if outcome.status is FrameStatus.DUPLICATE:
                self.duplicates.inc()
            elif outcome.status is FrameStatus.REJECTED:
                self.rejected.labels(type(outcome.error).__name__).inc()
            elif outcome.result is not None:
                judged += 1
                verdict = outcome.result.verdict
                self.frames.labels(self._camera(verdict.camera_id), verdict.verdict.value).inc()
                self._order_series(verdict.order_id, verdict.verdict.value)
                for finding in verdict.findings:
                    self.findings.labels(finding.class_name, finding.outcome.value).inc()
        if judged:
            self.batch_latency.observe(seconds)
            self.batch_size.observe(judged)
            self.queue_wait.observe(max(0.0, waited))

    def observe_trigger(self, answer: TriggerAnswer) -> None:
        """An answered line trigger (the station's ``on_answer`` observer): channels and outcomes are enums."""
        channel = answer.trigger.channel.value
        self.triggers.labels(channel, answer.outcome.value).inc()
        self.trigger_latency.labels(channel).observe(max(0.0, answer.latency_ms / 1000.0))

    def bind_line(self, station: LineStation) -> None:
        """Per-camera figures and the trigger queue of the line station, read at each scrape."""
        self.registry.register(LineCollector(station))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class CommitMetrics:
    """Counts what is durable: runs on the writer's thread after each commit (an ``inspection.pipeline.Sink``)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def submit(self, result: FrameResult) -> None:
        self._metrics.committed.inc()

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        self._metrics.unit_verdicts.labels(verdict.verdict.value).inc()


class LineCollector(Collector):
    """Gauges of the line station's cameras (bounded: a station holds at most ``MAX_CAMERAS``) and its queue."""

    def __init__(self, station: LineStation) -> None:
        self._station = station

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fps = GaugeMetricFamily("qcline_camera_fps", "Frames in per second (last 2 s).", labels=["camera"])
        age = GaugeMetricFamily("qcline_camera_frame_age_seconds", "Age of the camera's last frame (-1: none yet).",
                                labels=["camera"])
        connected = GaugeMetricFamily("qcline_camera_connected", "1 while the camera's stream is open.",
                                      labels=["camera"])
        frames = GaugeMetricFamily("qcline_camera_frames_in", "Frames read from the camera (total).",
                                   labels=["camera"])
        claimed = GaugeMetricFamily("qcline_camera_frames_claimed", "Frames bound to a unit by a trigger (total).",
                                    labels=["camera"])
        dropped = GaugeMetricFamily("qcline_camera_frames_dropped", "Frames read but not kept: over max_fps or "
                                    "unusable (total).", labels=["camera"])
        reconnects = GaugeMetricFamily("qcline_camera_reconnects", "Reconnect attempts (total).", labels=["camera"])
        for c in self._station.hub.stats():
            fps.add_metric([c.name], c.fps)
            age.add_metric([c.name], -1.0 if c.last_frame_age_s is None else c.last_frame_age_s)
            connected.add_metric([c.name], float(c.connected))
            frames.add_metric([c.name], c.frames_in)
            claimed.add_metric([c.name], c.frames_claimed)
            dropped.add_metric([c.name], c.frames_dropped)
            reconnects.add_metric([c.name], c.reconnects)
        depth = GaugeMetricFamily("qcline_line_trigger_queue_depth", "Triggers waiting to be handled.")
        depth.add_metric([], self._station.depth)
        late = GaugeMetricFamily("qcline_line_triggers_late", "Triggers answered after answer_within_ms (total).")
        late.add_metric([], self._station.stats.late)
        yield from (fps, age, connected, frames, claimed, dropped, reconnects, depth, late)
