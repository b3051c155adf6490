"""OPC UA output: the handshake signals (``handshake.py``) written to variable nodes of the PLC's server.

Needs the ``[opcua]`` extra (asyncua, LGPL-3.0, so it stays optional). Node ids are
``QC_OPCUA_NODE_PREFIX + name`` (default ``ns=2;s=qcline.heartbeat`` ...) unless ``QC_OPCUA_NODES`` names
another id for a signal; ``unit_id`` is a String node, the others integer nodes of whatever integer type
the server declares (read once on connect, so an Int16 or UInt32 node gets a matching variant).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from inspection.errors import ConfigError
from inspection.signals.handshake import SIGNALS, PlcError

try:
    from asyncua import ua
    from asyncua.sync import Client

    HAVE_ASYNCUA = True
except ImportError:  # the [opcua] extra is not installed; configuring OPC UA then says so
    HAVE_ASYNCUA = False

OPTIONAL = ("unit_id", "fault", "error")


def node_ids(prefix: str, overrides: Mapping[str, str]) -> dict[str, str]:
    unknown = set(overrides) - set(SIGNALS)
    if unknown:
        raise ConfigError(f"QC_OPCUA_NODES names unknown signals {sorted(unknown)}; known: {list(SIGNALS)}")
    return {name: overrides.get(name, prefix + name) for name in SIGNALS}


def require_asyncua(what: str) -> None:
    if not HAVE_ASYNCUA:
        raise ConfigError(f"{what} is set but asyncua is not installed: pip install 'qcline[opcua]'")


def open_client(url: str, *, username: str | None = None, password: str | None = None, security: str | None = None,
                timeout_s: float = 2.0) -> Any:
    """A connected ``asyncua.sync.Client``; every way connecting fails is a ``PlcError``. Shared by the result
    handshake and the OPC UA trigger reader (``inspection.line.sources.opcua``)."""
    client = Client(url, timeout=timeout_s)
    try:
        if username:
            client.set_user(username)
            client.set_password(password or "")
        if security:
            client.set_security_string(security)
        client.connect()
    except Exception as e:  # asyncua raises OSError, TimeoutError, ua.UaError ...
        with contextlib.suppress(Exception):
            client.disconnect()
        raise PlcError(f"cannot connect to {url}: {e}") from e
    return client


def variant(value: int | str, variant_type: Any) -> Any:
    return ua.DataValue(ua.Variant(value, variant_type))


class OpcUaBackend:
    def __init__(self, url: str, *, node_prefix: str = "ns=2;s=qcline.", nodes: Mapping[str, str] | None = None,
                 username: str | None = None, password: str | None = None, security: str | None = None,
                 timeout_s: float = 2.0) -> None:
        require_asyncua("QC_OPCUA_URL")
        if not url.startswith("opc.tcp://"):
            raise ConfigError(f"QC_OPCUA_URL {url!r} must start with opc.tcp://")
        self.description = url
        self.node_ids = node_ids(node_prefix, nodes or {})
        self._url = url
        self._username, self._password, self._security = username, password, security
        self._timeout_s = timeout_s
        self._client: Any = None
        self._nodes: dict[str, tuple[Any, Any]] = {}

    def connect(self) -> None:
        self.close()
        client = open_client(self._url, username=self._username, password=self._password, security=self._security,
                             timeout_s=self._timeout_s)
        self._client = client
        nodes: dict[str, tuple[Any, Any]] = {}
        for name, node_id in self.node_ids.items():
            node = client.get_node(node_id)
            try:
                variant_type = node.read_data_type_as_variant_type()
            except Exception as e:
                if name in OPTIONAL:
                    continue  # the PLC does not offer it: left out, as a Modbus map may leave it out
                self.close()
                raise PlcError(f"{self._url}: node {node_id} for {name} cannot be used: {e}") from e
            nodes[name] = (node, variant_type)
        self._nodes = nodes

    def write(self, values: Mapping[str, int | str]) -> None:
        if self._client is None:
            raise PlcError(f"{self._url}: not connected")
        targets, data = [], []
        for name, value in values.items():
            if name not in self._nodes:
                continue
            node, variant_type = self._nodes[name]
            targets.append(node)
            data.append(variant(value, variant_type))
        if not targets:
            return
        try:
            self._client.write_values(targets, data)
        except Exception as e:
            raise PlcError(f"{self._url}: write of {list(values)} failed: {e}") from e

    def read(self, name: str) -> int:
        if self._client is None:
            raise PlcError(f"{self._url}: not connected")
        try:
            return int(self._nodes[name][0].read_value())
        except Exception as e:
            raise PlcError(f"{self._url}: read of {name} failed: {e}") from e

    def close(self) -> None:
        client, self._client = self._client, None
        self._nodes = {}
        if client is not None:
            with contextlib.suppress(Exception):  # the link is already gone: nothing left to close
                client.disconnect()
