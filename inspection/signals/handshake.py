"""The PLC handshake, the same over Modbus TCP and OPC UA: the protocol is a ``PlcBackend``.

Signals (names used in the register / node maps):

==============  ============  ==========================================================================
name            written by    meaning
==============  ============  ==========================================================================
heartbeat       station       +1 every ``heartbeat_s`` (wraps 65535 -> 0): the PLC's watchdog
ready           station       1 while the station is up and connected, 0 after a clean shutdown
result_code     station       verdict of the unit: OK / NG / REVIEW codes (default 1 / 2 / 3); ERROR (4) for a
                              trigger that ended without a verdict (see ``error``)
sequence        station       unit sequence number, 1..65535 then 1 again (never 0); continues after a
                              restart from the value found in the PLC
unit_id         station       the unit id, ASCII, truncated to the map's length (Modbus: 20 chars)
result_valid    station       1 once result_code, sequence and unit_id are written (written last)
ack             PLC           the PLC writes the ``sequence`` it has taken, and 0 once it saw
                              result_valid drop
fault           station       0 ok; 1 a result was not acknowledged in time; 2 the PLC did not clear ack
error           station       why this result is not a plain verdict (``ResultError``): 0 judged, 4 views
                              missing, or why a trigger got no verdict (1 unknown unit, 2 rejected, ...);
                              written with result_code, before result_valid (optional)
==============  ============  ==========================================================================

The four steps (no timing assumption about the PLC's scan cycle):
1. station: result_code, sequence, error, unit_id, then result_valid = 1
2. PLC: ack = sequence
3. station: result_valid = 0
4. PLC: ack = 0; only then does the station present the next result.

``mode="sequence"`` (``QC_PLC_HANDSHAKE=sequence``) leaves out step 4: right after clearing result_valid
the station presents the next result, so a PLC program must tell results apart by ``sequence`` changing
(``result_valid = 1 and sequence <> last taken``), not by an edge of result_valid, which may be too short
to see. Half the round trips, twice the units per second through one PLC.

A result that arrives while the previous is not through the handshake waits in order in a bounded queue
(``max_pending``; beyond it the oldest waiting result is dropped, logged and counted). A step the PLC does
not take within ``ack_timeout_s`` sets ``fault`` and is logged with the unit id; an unacknowledged result
is withdrawn (result_valid 0) and the next follows. ``fault`` clears on the next complete handshake. The
connection is retried in the background; results queue meanwhile, and one being presented is written
again (same sequence) after a reconnect.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from inspection.errors import ConfigError, QCError
from inspection.types import FrameResult, UnitVerdict, Verdict

log = logging.getLogger(__name__)

HANDSHAKES = ("four-step", "sequence")
SIGNALS = ("heartbeat", "ready", "result_code", "sequence", "unit_id", "result_valid", "ack", "fault", "error")
REQUIRED = ("heartbeat", "ready", "result_code", "sequence", "result_valid", "ack")


class PlcError(QCError):
    """The PLC could not be reached or refused a read or write."""


class PlcBackend(Protocol):
    """Reads and writes named signals on one PLC; ``write`` applies the values in the order given and skips
    optional signals (``unit_id``, ``fault``) that the map leaves out."""

    description: str

    def connect(self) -> None: ...

    def write(self, values: Mapping[str, int | str]) -> None: ...

    def read(self, name: str) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ResultCodes:
    ok: int = 1
    ng: int = 2
    review: int = 3
    error: int = 4  # no verdict: the unit was not judged (a PLC that only knows OK diverts it all the same)

    def of(self, verdict: Verdict) -> int:
        return {Verdict.PASS: self.ok, Verdict.FAIL: self.ng, Verdict.REVIEW: self.review}[verdict]


class ResultError(enum.IntEnum):
    """The ``error`` signal: why a result is not a plain, complete verdict. A PLC program diverts on any
    result_code but OK; ``error`` tells the operator's HMI why."""

    NONE = 0
    UNKNOWN_UNIT = 1     # no order lists the unit: nothing judged
    REJECTED = 2         # refused before judging (bad trigger, queue full, station stopping)
    FAILED = 3           # judging or recording failed
    MISSING_VIEWS = 4    # a verdict (never OK) with views that got no frame in time
    UNREADABLE = 5       # the trigger's unit number could not be read (0, empty, not ASCII)
    MISSED = 6           # the trigger came while the station was down or overflowed its trigger slots


@dataclass(frozen=True)
class PlcResult:
    """One result for the PLC: a unit's verdict, or a trigger answered without one."""

    unit_id: str
    code: int
    error: int = 0
    label: str = ""  # for the logs: the verdict or the reason

    @classmethod
    def of_verdict(cls, verdict: UnitVerdict, codes: ResultCodes) -> PlcResult:
        error = ResultError.MISSING_VIEWS if verdict.missing_views else ResultError.NONE
        return cls(verdict.unit_id, codes.of(verdict.verdict), int(error), verdict.verdict.value)


@dataclass
class PlcStats:
    connected: bool = False
    pending: int = 0
    presented: int = 0
    acknowledged: int = 0
    ack_timeouts: int = 0
    dropped: int = 0
    sequence: int = 0
    last_error: str = ""


class PlcOutput:
    """A pipeline sink that hands each unit verdict to a PLC through the result-valid / ack handshake."""

    def __init__(self, backend: PlcBackend, *, codes: ResultCodes | None = None, ack_timeout_s: float = 5.0,
                 heartbeat_s: float = 1.0, max_pending: int = 64, poll_s: float = 0.002,
                 mode: str = "four-step") -> None:
        if mode not in HANDSHAKES:
            raise ConfigError(f"QC_PLC_HANDSHAKE must be one of {', '.join(HANDSHAKES)}, not {mode!r}")
        self.mode = mode
        self.backend = backend
        self.codes = codes or ResultCodes()
        self.ack_timeout_s = ack_timeout_s
        self.heartbeat_s = heartbeat_s
        self.poll_s = poll_s
        self._pending: deque[PlcResult] = deque()
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._stop = False
        self._stats = PlcStats()
        self._current: PlcResult | None = None
        self._presented_at = 0.0
        self._withdrawn_at: float | None = None
        self._seq_known = False
        self._acked_last = False
        self._seq = 0
        self._heartbeat = 0
        self._fault = 0
        self._error_written: int | None = None
        self._connected = False
        self._thread = threading.Thread(target=self._run, name=f"qcline-plc-{backend.description}", daemon=True)
        self._thread.start()

    # -- the sink ---------------------------------------------------------------------------------
    def submit(self, result: FrameResult) -> None:
        """Frames are not the PLC's business: it diverts units."""

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        self.submit_result(PlcResult.of_verdict(verdict, self.codes))

    def submit_unjudged(self, unit_id: str, error: ResultError, reason: str) -> None:
        """A trigger that ended without a verdict is answered all the same: result_code ERROR and ``error``
        saying why, through the same handshake, so the PLC never waits for a result_valid that never comes."""
        self.submit_result(PlcResult(unit_id, self.codes.error, int(error), reason))

    def submit_result(self, result: PlcResult) -> None:
        with self._cond:
            if len(self._pending) >= self._max_pending:
                lost = self._pending.popleft()
                self._stats.dropped += 1
                log.error("PLC %s: %d results wait for acknowledgement; the oldest waiting (unit %s, %s) is dropped",
                          self.backend.description, self._max_pending, lost.unit_id, lost.label)
            self._pending.append(result)
            self._cond.notify()

    # -- the handshake loop -----------------------------------------------------------------------
    def _connect(self) -> None:
        self.backend.connect()
        if not self._seq_known:  # first contact: continue the PLC's numbering (e.g. after a station restart)
            self._seq = self.backend.read("sequence")
            self._seq_known = True
        self.backend.write({"result_valid": 0, "ready": 1, "heartbeat": self._heartbeat})
        self._error_written = None  # a restarted PLC may hold anything there: written with the next result
        if self._fault:
            self._write_fault(self._fault)
        self._connected = True
        log.info("PLC %s connected; sequence continues after %d", self.backend.description, self._seq)
        if self._current is not None:  # it was being presented when the link dropped: present it again
            self._present(self._current, new_sequence=False)

    def _write_fault(self, code: int) -> None:
        self._fault = code
        self.backend.write({"fault": code})  # a map without a fault signal skips it

    def _present(self, result: PlcResult, *, new_sequence: bool = True) -> None:
        # Taken before writing: if a write fails, the reconnect presents it again under the same sequence
        # (a PLC that already took it sees a sequence it knows, and its ack still matches).
        if new_sequence:
            self._seq = self._seq % 65535 + 1
            self._stats.presented += 1
        self._current = result
        self._presented_at = time.monotonic()
        values: dict[str, int | str] = {"result_code": result.code, "sequence": self._seq}
        if result.error != self._error_written:  # mostly 0: written when it changes, no extra request per unit
            values["error"] = result.error
        values["unit_id"] = result.unit_id
        self.backend.write(values)
        self._error_written = result.error
        self.backend.write({"result_valid": 1})

    def _step(self) -> float:
        """One pass of the handshake; returns how long to wait before the next."""
        if self._withdrawn_at is not None:  # step 4: wait for the PLC to clear ack
            if self.backend.read("ack") == 0:
                self._withdrawn_at = None
                if self._fault and self._acked_last:
                    self._write_fault(0)
            elif time.monotonic() - self._withdrawn_at > self.ack_timeout_s:
                self._withdrawn_at = None
                self._write_fault(2)
                log.error("PLC %s did not clear ack after sequence %d within %.1f s; going on",
                          self.backend.description, self._seq, self.ack_timeout_s)
            else:
                return self.poll_s
        if self._current is None:
            with self._cond:  # current is set under the lock, so stats never miss the result in hand
                nxt = self._pending.popleft() if self._pending else None
                self._current = nxt
            if nxt is None:
                return self.heartbeat_s
            self._present(nxt)
        if self.backend.read("ack") == self._seq:  # step 2 seen: step 3
            self.backend.write({"result_valid": 0})
            self._current = None
            self._acked_last = True
            self._stats.acknowledged += 1
            if self.mode == "four-step":
                self._withdrawn_at = time.monotonic()
            elif self._fault:
                self._write_fault(0)
            return 0.0
        if time.monotonic() - self._presented_at > self.ack_timeout_s:
            unit = self._current
            assert unit is not None
            self._current = None
            self._acked_last = False
            self._stats.ack_timeouts += 1
            self.backend.write({"result_valid": 0})
            self._write_fault(1)
            if self.mode == "four-step":  # a PLC that took it late clears its ack before the next result
                self._withdrawn_at = time.monotonic()
            log.error("PLC %s did not acknowledge unit %s (%s, sequence %d) within %.1f s; withdrawn",
                      self.backend.description, unit.unit_id, unit.label, self._seq, self.ack_timeout_s)
            return 0.0
        return self.poll_s

    def _run(self) -> None:
        next_beat = 0.0
        backoff = 0.5
        while True:
            with self._cond:
                if self._stop:
                    return
            try:
                if not self._connected:
                    self._connect()
                    backoff = 0.5
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat = (self._heartbeat + 1) % 65536
                    self.backend.write({"heartbeat": self._heartbeat, "ready": 1})
                    next_beat = now + self.heartbeat_s
                wait = min(self._step(), max(0.0, next_beat - time.monotonic()))
            except PlcError as e:
                if self._connected or self._stats.last_error != str(e):
                    log.warning("PLC %s: %s (retrying in %.1f s)", self.backend.description, e, backoff)
                self._stats.last_error = str(e)
                self._connected = False
                wait = backoff
                backoff = min(backoff * 2, 10.0)
            except Exception as e:  # keep the handshake alive through anything unexpected
                self._stats.last_error = str(e)
                log.exception("PLC %s handshake error", self.backend.description)
                wait = 1.0
            if wait > 0:
                with self._cond:
                    busy = self._current is not None or self._withdrawn_at is not None
                    if not self._stop and (busy or not self._pending or not self._connected):
                        self._cond.wait(wait)

    # -- lifecycle --------------------------------------------------------------------------------
    def stats(self) -> PlcStats:
        with self._cond:
            self._stats.pending = len(self._pending) + (self._current is not None)
        self._stats.connected = self._connected
        self._stats.sequence = self._seq
        return self._stats

    def close(self) -> None:
        """Stop the handshake and tell the PLC the station is gone (ready 0, no valid result)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
        left = len(self._pending) + (self._current is not None)
        if left:
            log.warning("PLC %s: %d results were not acknowledged before shutdown", self.backend.description, left)
        if self._connected:
            try:
                self.backend.write({"result_valid": 0, "ready": 0})
            except PlcError as e:
                log.warning("PLC %s: could not clear ready on shutdown: %s", self.backend.description, e)
        self.backend.close()
