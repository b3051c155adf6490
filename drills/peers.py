"""Real protocol peers on loopback that the drills, the benchmarks, the line simulator and the tests share:
a pymodbus TCP server standing in for a PLC's holding registers, and the small socket helpers around it.

It lives in the installed ``drills`` package (not under ``tests/``) so that ``qcline demo --line`` and
``python -m drills.line_simulator`` can run it from a station install; the tests import it from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

WriteHook = Callable[[int, list[int]], None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (others run tests at the same time)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.01) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes; the last evaluation is the answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


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
