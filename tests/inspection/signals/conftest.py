"""Fixtures of the line-signal tests: the Mosquitto broker (skips when absent), a subscriber, unique topics."""

from __future__ import annotations

import json
import queue
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.inspection.signals.peers import BROKER_HOST, BROKER_PORT, Mosquitto, broker_reachable, mosquitto_binary


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """The Mosquitto on 127.0.0.1:1883 when it runs, else one of our own on a free port, else skip."""
    if broker_reachable():
        yield BROKER_HOST, BROKER_PORT
        return
    if mosquitto_binary() is None:
        pytest.skip(f"no MQTT broker on {BROKER_HOST}:{BROKER_PORT} and no mosquitto binary: install Mosquitto "
                    "(scripts/install-system-deps.sh as root, or apt install mosquitto) to run the MQTT tests")
    own = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield "127.0.0.1", own.port
    finally:
        own.close()


@pytest.fixture
def prefix() -> str:
    """A topic prefix no other test run shares (engineers and CI use the same broker at once)."""
    return f"qctest/{secrets.token_hex(6)}"


class Subscriber:
    """A real MQTT client subscribed to ``<prefix>/#``; every message lands in ``messages``."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: queue.Queue[tuple[str, dict[str, Any], bool, int]] = queue.Queue()
        self._subscribed = queue.Queue[int]()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"qctest-sub-{secrets.token_hex(4)}")
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, json.loads(m.payload), bool(m.retain), m.qos))
        self.client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.put(mid)
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        self._subscribed.get(timeout=5)

    def take(self, n: int, timeout_s: float = 10.0, *, skip_status: bool = True) -> list[tuple[str, dict[str, Any]]]:
        got: list[tuple[str, dict[str, Any]]] = []
        while len(got) < n:
            topic, payload, _, _ = self.messages.get(timeout=timeout_s)
            if skip_status and topic.endswith("/status"):
                continue
            got.append((topic, payload))
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(broker: tuple[str, int], prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(*broker, f"{prefix}/#")
    yield sub
    sub.close()
