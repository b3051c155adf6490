"""Modbus TCP output: the handshake signals (``handshake.py``) in holding registers of one PLC.

Each signal is one 16-bit holding register, except ``unit_id``: ``UNIT_ID_WORDS`` registers of ASCII, two
characters per register (high byte first), padded with 0 and truncated to 20 characters. Consecutive
registers are written in one request (function 16), and ``result_valid`` always in its own request after
the values it vouches for, so the PLC never sees it set over stale data. ``error`` (register 7) says why a
result is not a plain verdict (``handshake.ResultError``); a map may leave it out with -1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from inspection.errors import ConfigError
from inspection.signals.handshake import REQUIRED, SIGNALS, PlcError

UNIT_ID_WORDS = 10

DEFAULT_REGISTERS: dict[str, int] = {
    "heartbeat": 0, "ready": 1, "result_code": 2, "sequence": 3, "result_valid": 4, "ack": 5, "fault": 6,
    "error": 7, "unit_id": 10,
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


MAX_READ = 125
"""Registers one read request may ask for (Modbus application protocol, function 3)."""


def ascii_words(text: str, words: int = UNIT_ID_WORDS) -> list[int]:
    """``text`` as ``words`` registers of ASCII, two characters each, high byte first, 0-padded, truncated."""
    data = text.encode("ascii", "replace")[: 2 * words].ljust(2 * words, b"\0")
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


def words_ascii(words: Sequence[int]) -> str:
    """The text of ASCII registers (the inverse of ``ascii_words``); padding (NUL, space) is stripped and a
    byte outside printable ASCII makes it unreadable (``ValueError``), so garbage never becomes a unit id."""
    data = b"".join((w & 0xFFFF).to_bytes(2, "big") for w in words).rstrip(b"\0 ").lstrip(b" ")
    text = data.decode("ascii")  # UnicodeDecodeError is a ValueError
    if any(not (0x20 <= ord(ch) < 0x7F) for ch in text):
        raise ValueError(f"not printable ASCII: {data!r}")
    return text


class ModbusLink:
    """One Modbus TCP connection to one device: raw register reads and writes, every failure a ``PlcError``.
    The result handshake (``ModbusBackend``) and the trigger reader (``inspection.line.sources``) each hold
    one, so a slow poll never delays a handshake step."""

    def __init__(self, host: str, port: int = 502, *, device_id: int = 1, timeout_s: float = 1.0) -> None:
        self.host, self.port, self.device_id = host, port, device_id
        self.description = f"modbus://{host}:{port}"
        self._client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0)

    def connect(self) -> None:
        self._client.close()
        if not self._client.connect():
            raise PlcError(f"cannot connect to {self.description}")

    def read_registers(self, address: int, count: int) -> list[int]:
        """``count`` holding registers from ``address``, in requests of at most ``MAX_READ``."""
        out: list[int] = []
        while count > 0:
            n = min(count, MAX_READ)
            try:
                response = self._client.read_holding_registers(address, count=n, device_id=self.device_id)
            except ModbusException as e:
                raise PlcError(f"{self.description}: read at {address} failed: {e}") from e
            if response.isError():
                raise PlcError(f"{self.description}: read at {address} refused: {response}")
            out.extend(int(w) for w in response.registers[:n])
            address, count = address + n, count - n
        return out

    def write_registers(self, address: int, words: Sequence[int]) -> None:
        try:
            response = self._client.write_registers(address, list(words), device_id=self.device_id)
        except ModbusException as e:
            raise PlcError(f"{self.description}: write at {address} failed: {e}") from e
        if response.isError():
            raise PlcError(f"{self.description}: write at {address} refused: {response}")

    def close(self) -> None:
        self._client.close()


class ModbusBackend:
    def __init__(self, host: str, port: int = 502, *, device_id: int = 1, registers: Mapping[str, int] | None = None,
                 timeout_s: float = 1.0) -> None:
        self.registers = register_map(registers or {})
        self.link = ModbusLink(host, port, device_id=device_id, timeout_s=timeout_s)
        self.description = self.link.description

    def connect(self) -> None:
        self.link.connect()

    def _runs(self, values: Mapping[str, int | str]) -> list[tuple[int, list[int]]]:
        runs: list[tuple[int, list[int]]] = []
        for name, value in values.items():
            address = self.registers.get(name)
            if address is None:
                continue
            words = ascii_words(value) if isinstance(value, str) else [int(value) & 0xFFFF]
            if runs and runs[-1][0] + len(runs[-1][1]) == address:
                runs[-1][1].extend(words)
            else:
                runs.append((address, words))
        return runs

    def write(self, values: Mapping[str, int | str]) -> None:
        for address, words in self._runs(values):
            self.link.write_registers(address, words)

    def read(self, name: str) -> int:
        address = self.registers[name]
        try:
            return self.link.read_registers(address, 1)[0]
        except PlcError as e:
            raise PlcError(f"{e} (signal {name})") from e

    def close(self) -> None:
        self.link.close()
