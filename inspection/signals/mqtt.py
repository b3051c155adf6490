"""MQTT for the MES: every unit verdict (and FAIL frame events) published at QoS 1, store-and-forward.

``submit`` / ``submit_unit_verdict`` only write the message into the durable spool (``spool.py``) and
return, so a slow or absent broker never holds up inspection. A publisher thread sends the oldest spooled
messages (at most ``max_inflight`` unacknowledged at once) and deletes each one when its PUBACK arrives; a
message whose PUBACK never came is sent again after a reconnect or a restart (at-least-once: consumers
de-duplicate on ``event_id``). The retained ``<prefix>/<station>/status`` topic says ``online`` (with the
model in use) on every connect, and the broker publishes the last will ``offline`` when the station dies.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from inspection.errors import ConfigError
from inspection.signals.payloads import (
    Topics,
    encode,
    frame_event_payload,
    status_payload,
    unit_verdict_payload,
)
from inspection.signals.spool import Spool, SpoolStats
from inspection.types import FrameResult, UnitVerdict, Verdict

log = logging.getLogger(__name__)

_MODEL_KEY = "model_sha256"


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int
    station_id: str
    topic_prefix: str = "qcline"
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: int = 30
    frame_events: str = "fail"
    max_inflight: int = 64

    @classmethod
    def from_url(cls, url: str, *, station_id: str, **options: object) -> MqttConfig:
        """``mqtt://[user:password@]host[:port]`` (1883) or ``mqtts://...`` (8883, TLS)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ConfigError(f"QC_MQTT_URL {url!r} must look like mqtt://host:1883 or mqtts://host:8883")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as e:
            raise ConfigError(f"QC_MQTT_URL {url!r} has a bad port") from e
        given = {k: v for k, v in options.items() if v is not None}
        username = given.pop("username", None) or (unquote(parts.username) if parts.username else None)
        password = given.pop("password", None) or (unquote(parts.password) if parts.password else None)
        return cls(host=parts.hostname, port=port, station_id=station_id, tls=tls,
                   username=username, password=password, **given)  # type: ignore[arg-type]


def paho_client(c: MqttConfig, client_id: str) -> paho.Client:
    """A paho client (MQTT 3.1.1, clean session) with the config's credentials, TLS, in-flight window and
    reconnect back-off (1 to 30 s); callbacks, will and queue bound are the caller's. Also the client of the
    MQTT trigger source (``inspection.line.sources.mqtt``)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
                         clean_session=True)
    if c.username:
        client.username_pw_set(c.username, c.password)
    if c.tls:
        try:
            client.tls_set(ca_certs=str(c.ca_file) if c.ca_file else None,
                           certfile=str(c.cert_file) if c.cert_file else None,
                           keyfile=str(c.key_file) if c.key_file else None, cert_reqs=ssl.CERT_REQUIRED)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise ConfigError(f"MQTT TLS files cannot be used: {e}") from e
    client.max_inflight_messages_set(c.max_inflight)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


@dataclass
class MqttStats:
    connected: bool = False
    published: int = 0
    connects: int = 0
    last_error: str = ""
    spool: SpoolStats | None = field(default=None)


class MqttSink:
    """A pipeline sink (``inspection.pipeline.Sink``) that publishes to an MQTT broker through a spool."""

    def __init__(self, config: MqttConfig, spool: Spool, *, drain_timeout_s: float = 5.0) -> None:
        if config.frame_events not in ("none", "fail", "all"):
            raise ConfigError(f"QC_MQTT_FRAME_EVENTS must be none, fail or all, not {config.frame_events!r}")
        self.config = config
        self.topics = Topics(config.topic_prefix, config.station_id)
        self._spool = spool
        self._drain_timeout_s = drain_timeout_s
        self._model = spool.get_meta(_MODEL_KEY)
        self._status_due = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acked: queue.SimpleQueue[int] = queue.SimpleQueue()  # mids from paho's thread, no lock shared
        self._inflight: dict[int, int] = {}  # mid -> spool id; owned by the publisher thread
        self._last_sent = 0
        self._connected = threading.Event()
        self._stats = MqttStats()
        self._client = self._make_client()
        self._client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name="qcline-mqtt-publisher", daemon=True)
        self._thread.start()

    # -- the paho client --------------------------------------------------------------------------
    def _make_client(self) -> paho.Client:
        c = self.config
        client = paho_client(c, c.client_id or f"qcline-{c.station_id}")
        client.max_queued_messages_set(0)
        client.will_set(self.topics.status, encode(status_payload(c.station_id, "offline", self._model)),
                        qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                    properties: object) -> None:
        if getattr(reason, "is_failure", False):  # bad credentials, client id refused ...: retried, said once
            error = f"broker refused the connection: {reason}"
            if self._stats.last_error != error:
                log.error("MQTT %s:%d refused the connection: %s", self.config.host, self.config.port, reason)
            self._stats.last_error = error
            return
        self._stats.connects += 1
        self._stats.last_error = ""
        self._connected.set()
        self._status_due.set()
        self._wake.set()
        log.info("MQTT connected to %s:%d (station status on %s)", self.config.host, self.config.port,
                 self.topics.status)

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        error = f"cannot reach the broker at {self.config.host}:{self.config.port}"
        if self._stats.last_error != error:  # once per outage, not once per retry
            log.warning("MQTT %s; messages wait in the spool %s", error, self._spool.path)
        self._stats.last_error = error

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: object, reason: object,
                       properties: object) -> None:
        if self._connected.is_set() and not self._stop.is_set():
            log.warning("MQTT connection to %s:%d lost (%s); messages wait in the spool", self.config.host,
                        self.config.port, reason)
        if not self._stats.last_error.startswith("broker refused"):  # keep the reason, not its aftermath
            self._stats.last_error = f"disconnected: {reason}"
        self._connected.clear()

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason: object,
                    properties: object) -> None:
        self._acked.put(mid)
        self._wake.set()

    # -- the sink ---------------------------------------------------------------------------------
    def _note_model(self, sha: str) -> None:
        if sha and sha != self._model:
            self._model = sha
            self._spool.set_meta(_MODEL_KEY, sha)
            self._status_due.set()
            self._wake.set()

    def submit(self, result: FrameResult) -> None:
        verdict = result.verdict
        self._note_model(verdict.model_sha256)
        mode = self.config.frame_events
        if mode == "all" or (mode == "fail" and verdict.verdict is Verdict.FAIL):
            payload = frame_event_payload(result, self.config.station_id)
            if self._spool.put(self.topics.frame_event(verdict.unit_id, verdict.camera_id), encode(payload)):
                self._wake.set()

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        if verdict.frames:
            self._note_model(verdict.frames[-1].model_sha256)
        payload = unit_verdict_payload(verdict, self.config.station_id)
        if self._spool.put(self.topics.unit_verdict(verdict.unit_id), encode(payload)):
            self._wake.set()

    # -- the publisher ----------------------------------------------------------------------------
    def _settle_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                mid = self._acked.get_nowait()
            except queue.Empty:
                break
            spool_id = self._inflight.pop(mid, None)
            if spool_id is not None:
                done.append(spool_id)
        if done:
            self._spool.delete(done)
            self._stats.published += len(done)

    def _publish_status(self) -> None:
        self._status_due.clear()
        info = self._client.publish(self.topics.status,
                                    encode(status_payload(self.config.station_id, "online", self._model)),
                                    qos=1, retain=True)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self._status_due.set()

    def _send_more(self) -> None:
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for message in self._spool.after(self._last_sent, room):
            info = self._client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            # NO_CONN: the link dropped just now; paho keeps the message and sends it on reconnect.
            if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                log.debug("MQTT publish of spooled message %d deferred: rc %s", message.id, info.rc)
                return
            self._inflight[info.mid] = message.id
            self._last_sent = message.id

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._settle_acks()
                if not self._connected.is_set():
                    continue
                if self._status_due.is_set():
                    self._publish_status()
                self._send_more()
            except Exception as e:  # the publisher must outlive any single bad message or spool hiccup
                self._stats.last_error = str(e)
                log.exception("MQTT publisher error")
                time.sleep(0.5)

    # -- lifecycle --------------------------------------------------------------------------------
    def stats(self) -> MqttStats:
        self._stats.connected = self._connected.is_set()
        self._stats.spool = self._spool.stats()
        return self._stats

    def wait_delivered(self, timeout_s: float) -> bool:
        """Until the spool is empty (every message acknowledged) or ``timeout_s``; for shutdown and tests."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._spool.depth == 0:
                return True
            time.sleep(0.02)
        return self._spool.depth == 0

    def close(self) -> None:
        """Send what is pending (up to ``drain_timeout_s``), say ``offline``, disconnect; the rest stays spooled."""
        if self._connected.is_set():
            self.wait_delivered(self._drain_timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._settle_acks()
        if self._connected.is_set():
            info = self._client.publish(self.topics.status,
                                        encode(status_payload(self.config.station_id, "offline", self._model)),
                                        qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()
        self._settle_acks()
        left = self._spool.depth
        if left:
            log.warning("MQTT: %d messages not yet delivered stay in %s for the next start", left, self._spool.path)
        self._spool.close()
