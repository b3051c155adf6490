"""The MQTT sink against the real Mosquitto on 127.0.0.1:1883, watched by a real subscriber."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from drills.tcp_proxy import TcpProxy
from inspection.errors import ConfigError
from inspection.settings import REPO_ROOT
from inspection.signals.mqtt import MqttConfig, MqttSink
from inspection.signals.payloads import topic_level
from inspection.signals.spool import Spool
from inspection.types import Verdict
from tests.inspection.signals.conftest import Subscriber
from tests.inspection.signals.peers import Mosquitto, free_port, mosquitto_binary, self_signed_tls, wait_until
from tests.inspection.signals.records import MODEL, PROFILE, frame_result, unit_verdict
from tests.inspection.signals.schemas import validate


def make_sink(tmp_path: Path, prefix: str, port: int, *, host: str = "127.0.0.1", **options: object) -> MqttSink:
    config = MqttConfig(host=host, port=port, station_id="st/1", topic_prefix=prefix, client_id="",
                        keepalive_s=5, **options)  # type: ignore[arg-type]
    return MqttSink(config, Spool(tmp_path / "spool.db", max_messages=1000), drain_timeout_s=5)


def test_unit_verdicts_and_fail_frames_reach_the_subscriber_as_valid_json(
        tmp_path: Path, broker: tuple[str, int], prefix: str, subscriber: Subscriber) -> None:
    sink = make_sink(tmp_path, prefix, broker[1])
    try:
        sink.submit(frame_result("W/7+#", Verdict.PASS))  # a PASS frame is no event by default
        sink.submit(frame_result("W/7+#", Verdict.FAIL, camera_id="side"))
        sink.submit_unit_verdict(unit_verdict("W/7+#", Verdict.FAIL, order_id="O-42"))
        got = dict(subscriber.take(2))
        assert sink.wait_delivered(10)
    finally:
        sink.close()
    station = f"{prefix}/st%2F1"
    unit_topic = f"{station}/units/{topic_level('W/7+#')}/verdict"
    assert set(got) == {unit_topic, f"{station}/units/W%2F7%2B%23/frames/side"}
    unit = got[unit_topic]
    validate("unit-verdict", unit)
    assert (unit["unit_id"], unit["order_id"], unit["verdict"]) == ("W/7+#", "O-42", "FAIL")
    assert unit["model_sha256"] == MODEL and unit["profile_hash"] == PROFILE and unit["reasons"]
    assert unit["station_id"] == "st/1" and unit["frame_count"] == 2
    frame = got[f"{station}/units/W%2F7%2B%23/frames/side"]
    validate("frame-event", frame)
    assert frame["verdict"] == "FAIL" and frame["camera_id"] == "side"
    assert subscriber.messages.empty() or all(t.endswith("/status") for t, *_ in list(subscriber.messages.queue))


def test_messages_are_qos1_and_the_status_is_retained_online_with_the_model(
        tmp_path: Path, broker: tuple[str, int], prefix: str) -> None:
    sink = make_sink(tmp_path, prefix, broker[1])
    try:
        sink.submit_unit_verdict(unit_verdict("U-1"))
        assert sink.wait_delivered(10)
        late = Subscriber(*broker, f"{prefix}/#")  # subscribes after the fact: only retained messages come
        try:
            topic, payload, retained, _ = late.messages.get(timeout=5)
        finally:
            late.close()
        live = Subscriber(*broker, f"{prefix}/#")
        try:
            live.messages.get(timeout=5)  # the retained status again
            sink.submit_unit_verdict(unit_verdict("U-2"))
            _, _, _, unit_qos = live.messages.get(timeout=10)
        finally:
            live.close()
    finally:
        sink.close()
    assert topic == f"{prefix}/st%2F1/status" and retained
    validate("station-status", payload)
    assert payload["state"] == "online" and payload["model_sha256"] == MODEL
    assert unit_qos == 1
    after = Subscriber(*broker, f"{prefix}/#")
    try:
        _, payload, retained, _ = after.messages.get(timeout=5)
    finally:
        after.close()
    assert retained and payload["state"] == "offline"  # a clean stop says so


def test_the_broker_announces_offline_when_the_station_process_dies(
        tmp_path: Path, broker: tuple[str, int], prefix: str, subscriber: Subscriber) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from inspection.signals.mqtt import MqttConfig, MqttSink
        from inspection.signals.spool import Spool
        from tests.inspection.signals.records import unit_verdict
        sink = MqttSink(MqttConfig(host="127.0.0.1", port={broker[1]}, station_id="st/1", topic_prefix="{prefix}",
                                   keepalive_s=5), Spool(Path(r"{tmp_path}") / "spool.db", max_messages=100))
        sink.submit_unit_verdict(unit_verdict("U-1"))
        assert sink.wait_delivered(20)
        print("delivered", flush=True)
        time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "delivered"
        states = []
        while "online" not in states:
            topic, payload, _, _ = subscriber.messages.get(timeout=10)
            if topic.endswith("/status"):
                states.append(payload["state"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        while True:  # an "online" naming the model may still be on its way ahead of the will
            topic, payload, _, _ = subscriber.messages.get(timeout=20)
            if topic.endswith("/status") and payload["state"] == "offline":
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    validate("station-status", payload)
    assert payload["state"] == "offline" and payload["station_id"] == "st/1"


def test_messages_spooled_while_the_broker_is_away_arrive_after_a_restart(
        tmp_path: Path, broker: tuple[str, int], prefix: str, subscriber: Subscriber) -> None:
    dead = make_sink(tmp_path, prefix, free_port())  # nothing listens there
    for i in range(5):
        dead.submit_unit_verdict(unit_verdict(f"U-{i}", Verdict.REVIEW, missing=("back",)))
    assert dead.stats().spool.depth == 5  # type: ignore[union-attr]
    assert not dead.stats().connected
    dead.close()  # the station stops with the messages undelivered
    with pytest.raises(queue.Empty):
        subscriber.messages.get(timeout=0.5)
    restarted = make_sink(tmp_path, prefix, broker[1])
    try:
        got = subscriber.take(5)
        assert restarted.wait_delivered(10)
        assert restarted.stats().published == 5
    finally:
        restarted.close()
    assert [p["unit_id"] for _, p in got] == [f"U-{i}" for i in range(5)]  # in order
    for _, payload in got:
        validate("unit-verdict", payload)
        assert payload["missing_views"] == ["back"]


def test_a_cut_connection_loses_nothing(tmp_path: Path, broker: tuple[str, int], prefix: str,
                                        subscriber: Subscriber) -> None:
    proxy = TcpProxy(*broker)
    sink = make_sink(tmp_path, prefix, proxy.port)
    try:
        sink.submit_unit_verdict(unit_verdict("before"))
        assert subscriber.take(1)[0][1]["unit_id"] == "before"
        assert sink.wait_delivered(10)  # its PUBACK is in: otherwise the cut would (rightly) send it again
        proxy.cut()
        assert wait_until(lambda: not sink.stats().connected, 10)
        for i in range(20):
            sink.submit_unit_verdict(unit_verdict(f"during-{i}"))
        assert sink.stats().spool.depth >= 20  # type: ignore[union-attr]
        proxy.restore()  # paho reconnects by itself (1 s back-off first)
        got = subscriber.take(20, timeout_s=30)
        assert sink.wait_delivered(10)
    finally:
        sink.close()
        proxy.close()
    units = [p["unit_id"] for _, p in got]
    assert set(units) == {f"during-{i}" for i in range(20)}
    event_ids = {p["event_id"] for _, p in got}
    assert len(event_ids) == len(set(units))  # a re-send after a cut keeps its event id


def test_messages_in_flight_when_the_link_dies_are_sent_again(tmp_path: Path, broker: tuple[str, int],
                                                               prefix: str, subscriber: Subscriber) -> None:
    """Published, never acknowledged (the link swallowed them), then the link drops: they must not be lost."""
    proxy = TcpProxy(*broker)
    sink = make_sink(tmp_path, prefix, proxy.port)
    try:
        assert wait_until(lambda: sink.stats().connected, 10)
        proxy.stall()
        for i in range(5):
            sink.submit_unit_verdict(unit_verdict(f"inflight-{i}"))
        assert wait_until(lambda: len(sink._inflight) == 5, 5)  # sent, awaiting PUBACK
        assert sink.stats().spool.depth == 5  # type: ignore[union-attr]  # still spooled until acknowledged
        proxy.cut()
        proxy.restore()
        got = subscriber.take(5, timeout_s=30)
        assert sink.wait_delivered(10)
    finally:
        sink.close()
        proxy.close()
    assert sorted(p["unit_id"] for _, p in got) == [f"inflight-{i}" for i in range(5)]


@pytest.mark.parametrize(("url", "host", "port", "tls", "user"), [
    ("mqtt://broker", "broker", 1883, False, None),
    ("mqtt://10.0.0.5:1884", "10.0.0.5", 1884, False, None),
    ("mqtts://line:s%40cret@broker.plant", "broker.plant", 8883, True, "line"),
])
def test_mqtt_urls(url: str, host: str, port: int, tls: bool, user: str | None) -> None:
    config = MqttConfig.from_url(url, station_id="st")
    assert (config.host, config.port, config.tls, config.username) == (host, port, tls, user)
    if user:
        assert config.password == "s@cret"


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "broker:1883", "mqtt://broker:99999"])
def test_bad_mqtt_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="QC_MQTT_URL"):
        MqttConfig.from_url(url, station_id="st")


def test_mqtts_with_a_password_publishes_through_tls(tmp_path: Path, prefix: str) -> None:
    if mosquitto_binary() is None:
        pytest.skip("no mosquitto binary to run a TLS broker: apt install mosquitto")
    ca, cert, key = self_signed_tls(tmp_path / "tls")
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "line4", "s3cret"], check=True, timeout=30)
    broker = Mosquitto(tmp_path / "broker", tls=(ca, cert, key), password_file=passwords)
    try:
        watcher = paho_client(broker.port, ca, "line4", "s3cret")
        got: queue.Queue[bytes] = queue.Queue()
        watcher.on_message = lambda c, u, m: got.put(m.payload)
        watcher.loop_start()
        watcher.subscribe(f"{prefix}/#", qos=1)
        time.sleep(0.3)
        sink = MqttSink(MqttConfig.from_url(f"mqtts://line4:s3cret@127.0.0.1:{broker.port}", station_id="st/1",
                                            topic_prefix=prefix, ca_file=ca),
                        Spool(tmp_path / "spool.db", max_messages=100))
        try:
            sink.submit_unit_verdict(unit_verdict("TLS-1", Verdict.FAIL))
            assert sink.wait_delivered(15), sink.stats().last_error
        finally:
            sink.close()
        payloads = [json.loads(got.get(timeout=10)) for _ in range(2)]
        assert any(p.get("unit_id") == "TLS-1" for p in payloads)
        wrong = MqttSink(MqttConfig.from_url(f"mqtts://line4:wrong@127.0.0.1:{broker.port}", station_id="st/2",
                                             topic_prefix=prefix, ca_file=ca),
                         Spool(tmp_path / "spool2.db", max_messages=100))
        try:
            wrong.submit_unit_verdict(unit_verdict("TLS-2"))
            assert wait_until(lambda: "refused" in wrong.stats().last_error, 10), wrong.stats().last_error
            assert wrong.stats().spool.depth == 1  # type: ignore[union-attr]  # kept, not lost
        finally:
            wrong.close()
        watcher.loop_stop()
        watcher.disconnect()
    finally:
        broker.close()


def paho_client(port: int, ca: Path, user: str, password: str) -> Any:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qctest-tls-{os.getpid()}")
    client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca))
    client.connect("127.0.0.1", port)
    return client
