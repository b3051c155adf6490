"""PLC triggers in OPC UA variable nodes the PLC writes; the station polls them as an OPC UA client.

Nodes (ids configured per entry): ``trigger`` (an integer node: a counter or a bit, as in ``plc.py``; a bit
may also be a Boolean node),
``unit`` (a String node, or an integer one: 0 means not written) and, optionally, ``order`` (String or
integer). One ``Read`` service call per poll reads all three, so unit and trigger come from the same
moment. Polling rather than a subscription: a subscription's sampling and queue size are the server's to
choose, and a queue of 1 drops a counter step silently; a poll compares counters and never misses that it
missed. OPC UA has one slot (no arrays of units): a counter that moves by two within one poll counts the
older trigger ``missed``.

Needs the ``[opcua]`` extra (asyncua); without it, configuring an ``opcua`` trigger says how to install it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from inspection.errors import ConfigError
from inspection.line.sources.plc import PlcTriggerSnapshot, Slot, check_unit_text
from inspection.signals.handshake import PlcError
from inspection.signals.opcua import open_client, require_asyncua, variant

with contextlib.suppress(ImportError):  # without the [opcua] extra the reader refuses to be built
    from asyncua import ua

NODES = ("trigger", "unit", "order")


def _id_of(value: object, what: str) -> str:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} is {value!r}, not a string or a number")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{what} is {value} (not written by the PLC?)")
        return str(value)
    if isinstance(value, str):
        return check_unit_text(value, what)
    raise ValueError(f"{what} is a {type(value).__name__}, not a string or a number")


class OpcUaTriggerReader:
    slots = 1

    def __init__(self, url: str, nodes: Mapping[str, str], *, username: str | None = None,
                 password: str | None = None, security: str | None = None, timeout_s: float = 2.0) -> None:
        require_asyncua("an opcua trigger")
        if not url.startswith("opc.tcp://"):
            raise ConfigError(f"OPC UA url {url!r} must start with opc.tcp://")
        unknown = set(nodes) - set(NODES)
        if unknown or "trigger" not in nodes or "unit" not in nodes:
            raise ConfigError(f"OPC UA trigger nodes must name trigger and unit (and optionally order), got "
                              f"{sorted(nodes)}")
        self.description = url
        self.url = url
        self.node_ids = dict(nodes)
        self._options: dict[str, Any] = {"username": username, "password": password, "security": security,
                                         "timeout_s": timeout_s}
        self._client: Any = None
        self._nodes: list[Any] = []
        self._trigger_type: Any = None

    def connect(self) -> None:
        self.close()
        client = open_client(self.url, **self._options)
        try:
            nodes = [client.get_node(self.node_ids[name]) for name in NODES if name in self.node_ids]
            trigger_type = nodes[0].read_data_type_as_variant_type()
        except Exception as e:
            with contextlib.suppress(Exception):
                client.disconnect()
            raise PlcError(f"{self.url}: trigger node {self.node_ids['trigger']} cannot be used: {e}") from e
        self._client, self._nodes, self._trigger_type = client, nodes, trigger_type

    def read(self) -> PlcTriggerSnapshot:
        if self._client is None:
            raise PlcError(f"{self.url}: not connected")
        try:
            values = self._client.read_values(self._nodes)
        except Exception as e:
            raise PlcError(f"{self.url}: read of the trigger nodes failed: {e}") from e
        try:
            trigger = int(values[0])
        except (TypeError, ValueError) as e:
            raise PlcError(f"{self.url}: trigger node holds {values[0]!r}, not an integer") from e
        try:
            unit = _id_of(values[1], "unit")
        except ValueError as e:
            return PlcTriggerSnapshot(trigger, (Slot("", None, str(e)),))
        order = None
        if len(values) > 2 and values[2] not in (None, "", 0):  # an order not written: looked up from the unit
            try:
                order = _id_of(values[2], "order")
            except ValueError as e:
                return PlcTriggerSnapshot(trigger, (Slot(unit, None, str(e)),))
        return PlcTriggerSnapshot(trigger, (Slot(unit, order),))

    def clear_trigger(self) -> None:
        if self._client is None:
            raise PlcError(f"{self.url}: not connected")
        try:
            zero: bool | int = False if self._trigger_type == ua.VariantType.Boolean else 0  # a Boolean bit node
            self._client.write_values([self._nodes[0]], [variant(zero, self._trigger_type)])
        except Exception as e:
            raise PlcError(f"{self.url}: clearing the trigger failed: {e}") from e

    def close(self) -> None:
        client, self._client = self._client, None
        self._nodes = []
        if client is not None:
            with contextlib.suppress(Exception):  # the link is already gone: nothing left to close
                client.disconnect()
