"""Modbus TCP output: the handshake signals (``handshake.py``) in holding registers of one PLC.

Each signal is one 16-bit holding register, except ``unit_id``: ``UNIT_ID_WORDS`` registers of ASCII, two
characters per register (high byte first), padded with 0 and truncated to 20 characters. Consecutive
registers are written in one request (function 16), and ``result_valid`` always in its own request after
the values it vouches for, so the PLC never sees it set over stale data.
"""

from __future__ import annotations

from collections.abc import Mapping

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from inspection.errors import ConfigError
from inspection.signals.handshake import REQUIRED, SIGNALS, PlcError

UNIT_ID_WORDS = 10

DEFAULT_REGISTERS: dict[str, int] = {
    "heartbeat": 0, "ready": 1, "result_code": 2, "sequence": 3, "result_valid": 4, "ack": 5, "fault": 6,
    "unit_id": 10,
}
"""Holding-register addresses (0-based, as on the wire; PLC docs often say 40001 for address 0)."""


def register_map(overrides: Mapping[str, int]) -> dict[str, int]:
    """The default map with ``overrides``; an address of -1 leaves an optional signal out."""
    unknown = set(overrides) - set(SIGNALS)
    if unknown:
        raise ConfigError(f"QC_MODBUS_REGISTERS names unknown signals {sorted(unknown)}; known: {list(SIGNALS)}")
    merged = {**DEFAULT_REGISTERS, **overrides}
    for name in REQUIRED:
        if merged[name] < 0:
            raise ConfigError(f"QC_MODBUS_REGISTERS: {name} is required by the handshake")
    regs = {k: v for k, v in merged.items() if v >= 0}
    used: dict[int, str] = {}
    for name, address in regs.items():
        width = UNIT_ID_WORDS if name == "unit_id" else 1
        if address + width > 65536:
            raise ConfigError(f"QC_MODBUS_REGISTERS: {name} at {address} is beyond the register space")
        for a in range(address, address + width):
            if a in used:
                raise ConfigError(f"QC_MODBUS_REGISTERS: {name} and {used[a]} overlap at register {a}")
            used[a] = name
    return regs


def _ascii_words(text: str) -> list[int]:
    data = text.encode("ascii", "replace")[: 2 * UNIT_ID_WORDS].ljust(2 * UNIT_ID_WORDS, b"\0")
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


class ModbusBackend:
    def __init__(self, host: str, port: int = 502, *, device_id: int = 1, registers: Mapping[str, int] | None = None,
                 timeout_s: float = 1.0) -> None:
        self.description = f"modbus://{host}:{port}"
        self.registers = register_map(registers or {})
        self._device_id = device_id
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)

    def connect(self) -> None:
        self._client.close()
        if not self._client.connect():
            raise PlcError(f"cannot connect to {self.description}")

    def _runs(self, values: Mapping[str, int | str]) -> list[tuple[int, list[int]]]:
        runs: list[tuple[int, list[int]]] = []
        for name, value in values.items():
            address = self.registers.get(name)
            if address is None:
                continue
            words = _ascii_words(value) if isinstance(value, str) else [int(value) & 0xFFFF]
            if runs and runs[-1][0] + len(runs[-1][1]) == address:
                runs[-1][1].extend(words)
            else:
                runs.append((address, words))
        return runs

    def write(self, values: Mapping[str, int | str]) -> None:
        for address, words in self._runs(values):
            try:
                response = self._client.write_registers(address, words, device_id=self._device_id)
            except ModbusException as e:
                raise PlcError(f"{self.description}: write at {address} failed: {e}") from e
            if response.isError():
                raise PlcError(f"{self.description}: write at {address} refused: {response}")

    def read(self, name: str) -> int:
        address = self.registers[name]
        try:
            response = self._client.read_holding_registers(address, count=1, device_id=self._device_id)
        except ModbusException as e:
            raise PlcError(f"{self.description}: read of {name} at {address} failed: {e}") from e
        if response.isError():
            raise PlcError(f"{self.description}: read of {name} at {address} refused: {response}")
        return int(response.registers[0])

    def close(self) -> None:
        self._client.close()
