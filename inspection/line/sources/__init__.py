"""Trigger sources built from a station config's ``triggers:`` entries (PLC over Modbus / OPC UA, MQTT, part
labels). ``http`` is built in (the service's ``POST /v1/triggers``) and never reaches this factory.

This module is the seam the channel implementations plug into: ``build_trigger_sources`` gets the validated
``TriggerSpec`` entries (``kind``, ``options``, ``where`` for error messages) and returns ready, not yet started
``TriggerSource`` objects. In this build no such channel exists yet, so every entry is refused with a clear
``ConfigError`` naming the file and line, never ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspection.errors import ConfigError
from inspection.line.config import TriggerSpec
from inspection.line.triggers import TriggerSource
from inspection.settings import Settings


def build_trigger_sources(specs: Sequence[TriggerSpec], *, settings: Settings, station: str) -> list[TriggerSource]:
    """The trigger sources ``specs`` configure (``http`` entries skipped: the service answers those)."""
    for spec in specs:
        if spec.kind != "http":
            raise ConfigError(f"{spec.where}: trigger kind {spec.kind!r} is not available in this build "
                              f"(station {station})")
    return []


__all__ = ["build_trigger_sources"]
