"""The simulated PLC: the peer that plays the line's PLC against the station's signals, written once for the
tests, the benchmarks (``bench/signals.py``, ``bench/line.py``) and the line simulator (``qcline demo --line``).

* its memory, served on loopback by a real protocol stack: ``ModbusServer`` (pymodbus holding registers) or
  ``OpcUaServer`` (asyncua nodes ``ns=<ns>;s=qcline.<name>``);
* the PLC program's view of that memory by signal name (``PlcMemory``): ``ModbusMemory`` (a Modbus client of
  its own, on the station's register map) or the ``OpcUaServer`` itself (its own address space);
* the PLC's half of the result handshake of ``inspection/signals/handshake.py`` (``PlcHandshake``), one scan
  at a time: a result is new when ``result_valid = 1`` and its ``sequence`` is not the last one taken; take it,
  ``ack = sequence``; with the four-step handshake, ``ack = 0`` once the station dropped ``result_valid``.
  Tests take results one by one with ``take_result``; ``PlcProgram`` runs the same scan in a thread, as a PLC
  program scans its registers every cycle.

It lives in the installed ``drills`` package (not under ``tests/``) so that ``qcline demo --line`` and
``python -m drills.line_simulator`` can run it from a station install.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from drills.peers import free_port, port_open, wait_until
from inspection.signals.handshake import PlcError
from inspection.signals.modbus import UNIT_ID_WORDS, ModbusLink, ascii_words, register_map, words_ascii

WriteHook = Callable[[int, list[int]], None]

PLC_READS = ("result_code", "sequence", "unit_id", "result_valid", "ack", "error")
"""The signals the PLC program reads in one scan (``unit_id`` and ``error`` where its memory has them)."""

OPCUA_SIGNALS = ("heartbeat", "ready", "result_code", "sequence", "result_valid", "ack", "fault")
"""The UInt16 handshake nodes of ``OpcUaServer`` (``unit_id`` is a String node beside them)."""


# -- the PLC's memory, served ------------------------------------------------------------------------------

class ModbusServer:
    """A pymodbus TCP server with ``registers`` holding registers (0..registers-1), in its own thread and event
    loop, on a free loopback port unless ``port`` is given.

    ``on_write(address, values)`` (optional) is called inside the server as each write request is applied,
    which is the moment the values become readable by any client.
    """

    def __init__(self, on_write: WriteHook | None = None, port: int | None = None, *, registers: int = 200) -> None:
        self.port = port or free_port()
        self.registers = registers
        self._on_write = on_write
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="modbus-server", daemon=True)

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: Any) -> None:
        if set_values is not None and self._on_write is not None:
            self._on_write(address, list(set_values))

    def _serve(self) -> None:
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        device = SimDevice(id=1, simdata=[SimData(0, count=self.registers, values=0, datatype=DataType.REGISTERS)],
                           action=self._action)

        async def main() -> None:
            self._server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
            self._started.set()
            await self._server.serve_forever()

        asyncio.set_event_loop(self._loop)
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(main())

    def __enter__(self) -> ModbusServer:
        self._thread.start()
        self._started.wait(10)
        if not wait_until(lambda: port_open(self.port), 10):
            raise RuntimeError(f"pymodbus server did not listen on {self.port}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._thread.join(10)


class ResultStamps:
    """A ``ModbusServer`` write hook: the moment (monotonic) the station's ``result_valid = 1`` write for each
    sequence was applied, i.e. when that result became readable by the PLC (``valid_at``: sequence -> time)."""

    def __init__(self, registers: Mapping[str, int] | None = None) -> None:
        self.registers = register_map(registers or {})
        self.valid_at: dict[int, float] = {}
        self._sequence = 0
        self._lock = threading.Lock()

    def __call__(self, address: int, values: list[int]) -> None:
        now = time.monotonic()
        seq, valid = self.registers["sequence"], self.registers["result_valid"]
        with self._lock:
            if address <= seq < address + len(values):
                self._sequence = values[seq - address]
            if address == valid and values and values[0] == 1:
                self.valid_at.setdefault(self._sequence, now)

    def get(self, sequence: int) -> float | None:
        with self._lock:
            return self.valid_at.get(sequence)


class OpcUaServer:
    """An asyncua server with the handshake nodes ``ns=<ns>;s=qcline.<name>`` (UInt16; unit_id a String). It is
    its own ``PlcMemory``: the PLC program reads and writes the nodes of its own address space."""

    def __init__(self, port: int | None = None) -> None:
        # asyncua is the optional ``opcua`` extra: imported where an OPC UA PLC is asked for, not by drills
        from asyncua import ua
        from asyncua.sync import Server

        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/qcline/"
        self.server = Server()
        self.server.set_endpoint(self.url)
        self.namespace = self.server.register_namespace("urn:qcline:test-plc")
        folder = self.server.nodes.objects.add_object(self.namespace, "qcline")
        self.nodes: dict[str, Any] = {}
        for name in OPCUA_SIGNALS:
            node = folder.add_variable(ua.NodeId.from_string(f"ns={self.namespace};s=qcline.{name}"), name, 0,
                                       varianttype=ua.VariantType.UInt16)
            node.set_writable()
            self.nodes[name] = node
        node = folder.add_variable(ua.NodeId.from_string(f"ns={self.namespace};s=qcline.unit_id"), "unit_id", "",
                                   varianttype=ua.VariantType.String)
        node.set_writable()
        self.nodes["unit_id"] = node

    @property
    def node_prefix(self) -> str:
        return f"ns={self.namespace};s=qcline."

    def read(self, name: str) -> int | str:
        value: Any = self.nodes[name].read_value()
        return value if isinstance(value, str) else int(value)

    def write(self, name: str, value: int) -> None:
        from asyncua import ua

        self.nodes[name].write_value(ua.Variant(value, ua.VariantType.UInt16))

    def snapshot(self) -> dict[str, int | str]:
        """One node at a time, so read as the station writes in reverse: result_valid and sequence first (the
        station writes result_valid last and clears it before the next result's values), the values, then
        both again; a result that changed meanwhile is read again, so no values of two results are mixed."""
        while True:
            marks = (self.read("result_valid"), self.read("sequence"))
            values = {name: self.read(name) for name in PLC_READS if name in self.nodes}
            if (self.read("result_valid"), self.read("sequence")) == marks:
                return values

    def __enter__(self) -> OpcUaServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


# -- the PLC program's view of it ----------------------------------------------------------------------------

class PlcMemory(Protocol):
    """The PLC's own signals by handshake name, as its program sees them."""

    def snapshot(self) -> Mapping[str, int | str]:
        """The ``PLC_READS`` signals this memory holds, read together (``unit_id`` as text)."""
        ...

    def write(self, name: str, value: int) -> None: ...


class ModbusMemory:
    """The PLC's holding registers through a Modbus client of its own (``ModbusLink``, so a refused request is
    a ``PlcError``), on the station's register map (``registers``: the same overrides the station is given).
    ``snapshot`` reads the handshake block in one request, as a PLC program reads its data block each scan.
    Connects when made (a server that is not there is a ``PlcError`` at once); safe to share between threads."""

    def __init__(self, port: int, registers: Mapping[str, int] | None = None, *, host: str = "127.0.0.1") -> None:
        self.registers = register_map(registers or {})
        self.link = ModbusLink(host, port)
        self._lock = threading.Lock()
        spans = [(self.registers[n], self.registers[n] + (UNIT_ID_WORDS if n == "unit_id" else 1))
                 for n in PLC_READS if n in self.registers]
        start = min(a for a, _ in spans)
        self._block = (start, max(b for _, b in spans) - start)
        self.link.connect()

    def read_words(self, address: int, count: int = 1) -> list[int]:
        with self._lock:
            return self.link.read_registers(address, count)

    def write_words(self, address: int, words: Sequence[int]) -> None:
        with self._lock:
            self.link.write_registers(address, words)

    def read(self, name: str) -> int | str:
        address = self.registers[name]
        if name == "unit_id":
            return words_ascii(self.read_words(address, UNIT_ID_WORDS))
        return self.read_words(address)[0]

    def write(self, name: str, value: int | str) -> None:
        self.write_words(self.registers[name], ascii_words(value) if isinstance(value, str) else [value])

    def snapshot(self) -> dict[str, int | str]:
        start, count = self._block
        words = self.read_words(start, count)
        out: dict[str, int | str] = {}
        for name in PLC_READS:
            if name in self.registers:
                at = self.registers[name] - start
                out[name] = words_ascii(words[at:at + UNIT_ID_WORDS]) if name == "unit_id" else words[at]
        return out

    def close(self) -> None:
        self.link.close()


# -- the PLC's half of the handshake ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Taken:
    """One result the PLC took: what the station presented, and when the PLC's scan read it (monotonic)."""

    code: int
    sequence: int
    unit_id: str
    error: int = 0
    seen_at: float = field(default=0.0, compare=False)


class PlcHandshake:
    """The PLC program's side of the result handshake, one scan at a time, over any ``PlcMemory``.

    ``four_step`` (the station's default ``QC_PLC_HANDSHAKE=four-step``): ack = sequence, then ack = 0 once the
    station dropped result_valid. Otherwise (``sequence``) the ack is left in place and a result is told apart
    from the last by its sequence. ``last`` is the sequence taken before (0: none; the station never uses 0).
    """

    def __init__(self, *, four_step: bool = True, last: int = 0) -> None:
        self.four_step = four_step
        self.last = last
        self.ack = 0  # what this program last wrote into ack

    def scan(self, memory: PlcMemory) -> Taken | None:
        """One scan: the result newly taken (acknowledged), or None."""
        signals = memory.snapshot()
        seen_at = time.monotonic()
        valid, seq, ack = int(signals["result_valid"]), int(signals["sequence"]), int(signals["ack"])
        if valid == 1 and seq != self.last:
            memory.write("ack", seq)
            self.last = self.ack = seq
            return Taken(int(signals["result_code"]), seq, str(signals.get("unit_id", "")),
                         int(signals.get("error", 0)), seen_at)
        if self.four_step and valid == 0 and ack != 0:
            memory.write("ack", 0)
            self.ack = 0
        return None


def take_result(memory: PlcMemory, timeout_s: float = 10.0, *, four_step: bool = True, last: int = 0,
                scan_s: float = 0.01) -> Taken:
    """Take the next result through the handshake, as a PLC program does; with ``four_step``, return once the
    station dropped result_valid and the ack is back to 0. ``TimeoutError`` names the step that did not come."""
    program = PlcHandshake(four_step=four_step, last=last)
    deadline = time.monotonic() + timeout_s
    taken = program.scan(memory)
    while taken is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"result_valid never set with a new sequence within {timeout_s} s")
        time.sleep(scan_s)
        taken = program.scan(memory)
    deadline = time.monotonic() + timeout_s
    while program.ack != 0 and four_step:
        if time.monotonic() > deadline:
            raise TimeoutError(f"station did not clear result_valid within {timeout_s} s")
        time.sleep(scan_s)
        early = program.scan(memory)
        if early is not None:  # not the four-step handshake: the station went on before step 4
            raise RuntimeError(f"the station presented sequence {early.sequence} before the ack was cleared")
    return taken


class PlcProgram:
    """A PLC program on the Modbus PLC at ``port``: ``PlcHandshake.scan`` every ``scan_s`` in a thread of its own
    over its own connection (``ModbusMemory``); each result taken goes to ``on_take`` (on that thread), after the
    ack is written. A lost connection is retried until the program is stopped."""

    def __init__(self, port: int, on_take: Callable[[Taken], None], *, scan_s: float = 0.002,
                 four_step: bool = True, registers: Mapping[str, int] | None = None) -> None:
        self.port = port
        self.scan_s = scan_s
        self.handshake = PlcHandshake(four_step=four_step)
        self.taken = 0
        self._on_take = on_take
        self._registers = registers
        self._memory: ModbusMemory | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-plc-program", daemon=True)

    def _run(self) -> None:
        memory = self._memory
        assert memory is not None
        try:
            while not self._stop.is_set():
                try:
                    taken = self.handshake.scan(memory)
                except PlcError:  # the server is going away: the program ends with it, or reconnects
                    if self._stop.is_set():
                        return
                    with contextlib.suppress(PlcError):
                        memory.link.connect()
                    time.sleep(0.05)
                    continue
                if taken is not None:
                    self.taken += 1
                    self._on_take(taken)
                time.sleep(self.scan_s)
        finally:
            memory.close()

    def __enter__(self) -> PlcProgram:
        self._memory = ModbusMemory(self.port, self._registers)  # a PLC that cannot be reached fails here
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

