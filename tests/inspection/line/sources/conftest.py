"""The Mosquitto broker and unique topic prefixes of the line-signal tests, for the MQTT trigger source."""

from tests.inspection.signals.conftest import broker, prefix, subscriber

__all__ = ["broker", "prefix", "subscriber"]
