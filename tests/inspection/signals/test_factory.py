"""``build_line_signals``: the sinks the settings ask for, their metrics, and closing them."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from drills.peers import free_port, wait_until
from drills.plc import ModbusServer
from inspection.errors import ConfigError
from inspection.settings import load_settings
from inspection.signals import build_line_signals, close_line_signals
from inspection.signals.factory import register_line_signal_metrics
from inspection.signals.handshake import PlcOutput
from inspection.signals.modbus import ModbusBackend
from inspection.signals.mqtt import MqttSink
from tests.inspection.signals.records import unit_verdict


def test_nothing_configured_means_no_sinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QC_MQTT_URL", "QC_MODBUS_HOST", "QC_OPCUA_URL"):
        monkeypatch.delenv(name, raising=False)
    assert build_line_signals(load_settings(data_dir=tmp_path)) == []


def test_settings_from_the_environment_build_each_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QC_MQTT_URL", f"mqtt://127.0.0.1:{free_port()}")
    monkeypatch.setenv("QC_STATION_ID", "line-4")
    monkeypatch.setenv("QC_MQTT_TOPIC_PREFIX", "plant/qcline")
    monkeypatch.setenv("QC_MODBUS_HOST", "127.0.0.1")
    monkeypatch.setenv("QC_MODBUS_PORT", str(free_port()))
    monkeypatch.setenv("QC_MODBUS_REGISTERS", '{"ack": 50, "unit_id": -1}')
    signals = build_line_signals(load_settings(data_dir=tmp_path))
    try:
        assert [type(s) for s in signals] == [MqttSink, PlcOutput]
        mqtt, plc = signals
        assert isinstance(mqtt, MqttSink) and mqtt.topics.status == "plant/qcline/line-4/status"
        assert isinstance(plc, PlcOutput) and isinstance(plc.backend, ModbusBackend)
        assert plc.backend.registers["ack"] == 50 and "unit_id" not in plc.backend.registers
        assert (tmp_path / "signals" / "mqtt-spool.db").exists()
    finally:
        close_line_signals(signals)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"mqtt_url": "http://x"}, "QC_MQTT_URL"),
    ({"mqtt_url": "mqtt://127.0.0.1", "mqtt_topic_prefix": "a/#"}, "QC_MQTT_TOPIC_PREFIX"),
    ({"modbus_host": "127.0.0.1", "modbus_registers": {"ack": 1}}, "overlap"),
    ({"opcua_url": "tcp://plc"}, "opc.tcp://"),
])
def test_a_wrong_setting_stops_the_station_with_a_clear_error(tmp_path: Path, overrides: dict[str, object],
                                                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_line_signals(load_settings(data_dir=tmp_path, **overrides))


def test_metrics_show_spool_and_plc_state(tmp_path: Path) -> None:
    with ModbusServer() as server:
        signals = build_line_signals(load_settings(
            data_dir=tmp_path, mqtt_url=f"mqtt://127.0.0.1:{free_port()}", modbus_host="127.0.0.1",
            modbus_port=server.port, plc_ack_timeout_s=30))
        try:
            for s in signals:
                s.submit_unit_verdict(unit_verdict("U-1"))
                s.submit_unit_verdict(unit_verdict("U-2"))
            plc = signals[1]
            assert isinstance(plc, PlcOutput) and wait_until(lambda: plc.stats().connected)
            registry = CollectorRegistry()
            register_line_signal_metrics(registry, signals)
            text = generate_latest(registry).decode()
        finally:
            close_line_signals(signals)
    assert "qcline_mqtt_spool_messages 2.0" in text
    assert 'qcline_signal_connected{channel="mqtt"} 0.0' in text
    assert f'qcline_plc_pending{{channel="modbus://127.0.0.1:{server.port}"}} 2.0' in text
    assert f'qcline_signal_connected{{channel="modbus://127.0.0.1:{server.port}"}} 1.0' in text
