"""The small socket helpers that the simulated peers (``drills.plc``: the PLC; ``drills.cameras``), the drills,
the benchmarks and the tests share: a free loopback port, whether one listens, and polling for a condition.

It lives in the installed ``drills`` package (not under ``tests/``) so that ``qcline demo --line`` and
``python -m drills.line_simulator`` can run the peers from a station install; the tests import it from here.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


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

