"""Build the line-signal sinks that the settings configure (none when nothing is configured)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from inspection.settings import Settings
from inspection.signals.handshake import PlcOutput, ResultCodes
from inspection.signals.modbus import ModbusBackend
from inspection.signals.mqtt import MqttConfig, MqttSink
from inspection.signals.spool import Spool
from inspection.types import FrameResult, UnitVerdict

log = logging.getLogger(__name__)


class LineSignal(Protocol):
    """A pipeline sink that owns a connection and a thread: closed when the station stops."""

    def submit(self, result: FrameResult) -> None: ...

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None: ...

    def close(self) -> None: ...


def _plc(settings: Settings, backend: ModbusBackend | object) -> PlcOutput:
    return PlcOutput(backend,  # type: ignore[arg-type]
                     codes=ResultCodes(settings.plc_code_ok, settings.plc_code_ng, settings.plc_code_review,
                                       settings.plc_code_error),
                     ack_timeout_s=settings.plc_ack_timeout_s, heartbeat_s=settings.plc_heartbeat_s,
                     max_pending=settings.plc_max_pending, mode=settings.plc_handshake,
                     poll_s=settings.plc_poll_ms / 1000.0)


def build_line_signals(settings: Settings) -> list[LineSignal]:
    """MQTT when ``QC_MQTT_URL`` is set, Modbus TCP when ``QC_MODBUS_HOST`` is, OPC UA when ``QC_OPCUA_URL`` is.

    Connecting happens in each sink's background thread, so an absent broker or PLC never stops a station
    from starting; a wrong setting (bad URL, overlapping registers, asyncua missing) does, with a clear error.
    """
    signals: list[LineSignal] = []
    try:
        if settings.mqtt_url:
            config = MqttConfig.from_url(
                settings.mqtt_url, station_id=settings.station_id, topic_prefix=settings.mqtt_topic_prefix,
                client_id=settings.mqtt_client_id, username=settings.mqtt_username,
                password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
                ca_file=settings.mqtt_ca_file, cert_file=settings.mqtt_cert_file, key_file=settings.mqtt_key_file,
                keepalive_s=settings.mqtt_keepalive_s, frame_events=settings.mqtt_frame_events,
                max_inflight=settings.mqtt_max_inflight)
            spool = Spool(settings.data_dir / "signals" / "mqtt-spool.db",
                          max_messages=settings.mqtt_spool_max_messages)
            try:
                signals.append(MqttSink(config, spool))
            except BaseException:
                spool.close()
                raise
        if settings.modbus_host:
            signals.append(_plc(settings, ModbusBackend(settings.modbus_host, settings.modbus_port,
                                                        device_id=settings.modbus_device_id,
                                                        registers=settings.modbus_registers)))
        if settings.opcua_url:
            from inspection.signals.opcua import OpcUaBackend  # the optional extra's module, only when asked for

            signals.append(_plc(settings, OpcUaBackend(
                settings.opcua_url, node_prefix=settings.opcua_node_prefix, nodes=settings.opcua_nodes,
                username=settings.opcua_username,
                password=settings.opcua_password.get_secret_value() if settings.opcua_password else None,
                security=settings.opcua_security)))
    except BaseException:
        close_line_signals(signals)
        raise
    for signal in signals:
        where = signal.backend.description if isinstance(signal, PlcOutput) else "mqtt"
        log.info("line signal: %s", where)
    return signals


def close_line_signals(signals: Iterable[object]) -> None:
    """Close each sink that can be closed; one failing close does not keep the others open."""
    for signal in signals:
        close = getattr(signal, "close", None)
        if close is None:
            continue
        try:
            close()
        except Exception:
            log.exception("closing line signal %s failed", type(signal).__name__)


class LineSignalCollector(Collector):
    """Prometheus gauges of the line signals: spool depth / age / alarm, PLC queue, timeouts, connection."""

    def __init__(self, signals: Iterable[object]) -> None:
        self._signals = list(signals)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connected = GaugeMetricFamily("qcline_signal_connected", "1 while the broker / PLC is connected.",
                                      labels=["channel"])
        spool = GaugeMetricFamily("qcline_mqtt_spool_messages", "MQTT messages waiting in the spool.")
        spool_age = GaugeMetricFamily("qcline_mqtt_spool_oldest_seconds", "Age of the oldest undelivered message.")
        spool_alarm = GaugeMetricFamily("qcline_mqtt_spool_alarm", "1 when the spool is near full.")
        refused = GaugeMetricFamily("qcline_mqtt_spool_refused", "Messages refused by a full spool (total).")
        pending = GaugeMetricFamily("qcline_plc_pending", "Results waiting for the PLC's acknowledgement.",
                                    labels=["channel"])
        timeouts = GaugeMetricFamily("qcline_plc_ack_timeouts", "Results the PLC never acknowledged (total).",
                                     labels=["channel"])
        for signal in self._signals:
            if isinstance(signal, MqttSink):
                s = signal.stats()
                connected.add_metric(["mqtt"], float(s.connected))
                if s.spool is not None:
                    spool.add_metric([], s.spool.depth)
                    spool_age.add_metric([], s.spool.oldest_age_s)
                    spool_alarm.add_metric([], float(s.spool.alarm))
                    refused.add_metric([], s.spool.refused)
            elif isinstance(signal, PlcOutput):
                p = signal.stats()
                channel = signal.backend.description
                connected.add_metric([channel], float(p.connected))
                pending.add_metric([channel], p.pending)
                timeouts.add_metric([channel], p.ack_timeouts)
        yield from (connected, spool, spool_age, spool_alarm, refused, pending, timeouts)


def register_line_signal_metrics(registry: CollectorRegistry, signals: Iterable[object]) -> None:
    registry.register(LineSignalCollector(signals))
