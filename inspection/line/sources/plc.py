"""Triggers the PLC writes (Modbus holding registers or OPC UA nodes), the same logic for both protocols.

The station polls the PLC (a ``PlcTriggerReader`` reads the trigger signal and the unit / order of each slot
in one request) and answers through the result handshake of ``inspection.signals.handshake`` (``PlcOutput``).

Two ways a PLC can say "a unit is here":

``counter`` (recommended)
    The PLC writes the unit (and order) into slot ``n % slots``, then sets the trigger register to ``n``
    (+1 per unit, 65535 wraps to 0). A change of the counter is a trigger; two units faster than one poll
    are two increments, and with ``slots`` > 1 each has its own unit number, so none is lost. More
    increments than slots within one poll: the oldest are counted ``missed`` and logged (their unit numbers
    are overwritten); the newest ``slots`` are delivered.
``bit``
    The PLC writes the unit, then sets the trigger register to 1; the station takes it and writes 0. The
    PLC must wait for 0 before the next unit, so a PLC faster than the poll loses units: use ``counter``.

Once, never twice: a counter value is a trigger only the first time it is seen. The last value seen is
kept in memory across reconnects and, with ``state_path``, in a small JSON file written (and fsynced)
*before* the trigger is handed on, so a restarted station knows which values it already took. A trigger
is only handed to the station when it is seen on the poll right after it came: one that came while the
station or the PLC link was down is never judged (its unit may have left the cameras, and frames of the
next unit would be bound to it), it is answered to the PLC as not judged (``error`` MISSED) and logged.
A bit still set after a reconnect, whose trigger the station already took, is only cleared.

Every trigger the station answers goes back through the handshake: a verdict as OK / NG / REVIEW, a trigger
without a verdict (unknown unit, rejected, failed) as result_code ERROR with ``error`` saying why. When the
station's line signals already include a ``PlcOutput`` for the same PLC (``QC_MODBUS_HOST`` /
``QC_OPCUA_URL``), that sink presents every unit verdict after commit and this source adds only the
verdict-less answers (``answer_verdicts=False``), so no result reaches the PLC twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from inspection.line.sources.base import ERROR_OF_OUTCOME, SourceStats, StatsBox, now_utc, run_token
from inspection.line.triggers import Trigger, TriggerAnswer, TriggerChannel, TriggerSink
from inspection.signals.handshake import PlcError, PlcOutput, ResultError

log = logging.getLogger(__name__)

TriggerMode = Literal["counter", "bit"]
COUNTER_MODULO = 65536
RESET_JUMP = 1024
"""A counter that moves on by more than this between two polls was reset (a PLC restart or program download),
not incremented: it is taken as the new baseline, not as a thousand lost units."""


@dataclass(frozen=True)
class Slot:
    """What one slot of the PLC says: the unit (and order), or why it cannot be read."""

    unit_id: str
    order_id: str | None = None
    problem: str = ""


@dataclass(frozen=True)
class PlcTriggerSnapshot:
    trigger: int
    slots: tuple[Slot, ...]


class PlcTriggerReader(Protocol):
    """One protocol's view of the trigger signals: ``read`` returns the trigger and every slot in one go."""

    description: str
    slots: int

    def connect(self) -> None: ...

    def read(self) -> PlcTriggerSnapshot: ...

    def clear_trigger(self) -> None: ...

    def close(self) -> None: ...


def check_unit_text(text: str, what: str) -> str:
    """An id read from the PLC: stripped, non-empty, at most 128 characters (else ``ValueError``)."""
    text = text.strip()
    if not text:
        raise ValueError(f"{what} is empty (not written by the PLC?)")
    if len(text) > 128:
        raise ValueError(f"{what} has {len(text)} characters, more than 128")
    return text


class CounterState:
    """The last trigger counter value taken, in a JSON file replaced atomically: what a restarted station
    compares the PLC's counter with."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int | None:
        try:
            data = json.loads(self.path.read_text())
            value = data["counter"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("trigger state %s cannot be read (%s): the PLC's counter is taken as seen", self.path, e)
            return None
        return int(value) % COUNTER_MODULO if isinstance(value, int) else None

    def save(self, value: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"counter": value}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class PlcTriggerSource:
    """A ``TriggerSource`` over a ``PlcTriggerReader``, answering through a ``PlcOutput``."""

    def __init__(self, reader: PlcTriggerReader, output: PlcOutput, *, name: str, channel: TriggerChannel,
                 mode: TriggerMode = "counter", poll_s: float = 0.02, answer_verdicts: bool = True,
                 owns_output: bool = True, state: CounterState | None = None,
                 clock: Callable[[], datetime] = now_utc, max_backoff_s: float = 5.0) -> None:
        if mode not in ("counter", "bit"):
            raise ValueError(f"trigger mode must be counter or bit, not {mode!r}")
        if mode == "bit" and reader.slots != 1:
            raise ValueError("a trigger bit has one slot")
        self.name = name
        self.channel = channel
        self.reader = reader
        self.output = output
        self.mode = mode
        self.poll_s = poll_s
        self.answer_verdicts = answer_verdicts
        self._owns_output = owns_output
        self._state = state
        self._clock = clock
        self._max_backoff_s = max_backoff_s
        self._token = run_token()
        self._stats = StatsBox()
        self._stop = threading.Event()
        self._submit: TriggerSink | None = None
        self._thread: threading.Thread | None = None
        self._connected = False
        self._last: int | None = None       # counter: the last value taken
        self._first_read = True              # the first read since start
        self._bit_taken = False              # bit: handed on, but our clear has not been seen yet

    # -- TriggerSource ----------------------------------------------------------------------------
    @property
    def stats(self) -> SourceStats:
        return self._stats.snapshot()

    def start(self, submit: TriggerSink) -> None:
        if self._thread is not None:
            raise RuntimeError(f"trigger source {self.name} is already started")
        self._submit = submit
        self._thread = threading.Thread(target=self._run, name=f"qcline-trigger-{self.name}", daemon=True)
        self._thread.start()

    def answer(self, answer: TriggerAnswer) -> None:
        """Hand the answer to the handshake's queue (never blocks on the PLC)."""
        self._stats.add(answered=1)
        if answer.verdict is not None:
            if self.answer_verdicts:
                self.output.submit_unit_verdict(answer.verdict)
            return  # else the station's PlcOutput sink presents the committed verdict
        error = ERROR_OF_OUTCOME.get(answer.outcome, ResultError.FAILED)
        if error is ResultError.NONE:  # "judged" without a verdict is no verdict: never an error code of 0
            error = ResultError.FAILED
        self.output.submit_unjudged(answer.trigger.unit_id, error, answer.error)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.reader.close()
        if self._owns_output:
            self.output.close()

    # -- the poll loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        wait = 0.0
        fresh = True  # the first read after a (re)connect
        while not self._stop.wait(wait):
            try:
                if not self._connected:
                    self.reader.connect()
                    self._connected = True
                    fresh = True
                    backoff = 0.2
                    self._stats.set(connected=True, last_error="")
                    log.info("trigger source %s: connected to %s (%s mode)", self.name, self.reader.description,
                             self.mode)
                snapshot = self.reader.read()
                if self.mode == "counter":
                    self._take_counter(snapshot, fresh)
                else:
                    self._take_bit(snapshot, fresh)
                fresh = False
                self._first_read = False
                self._stats.add(polls=1)
                wait = self.poll_s
            except PlcError as e:
                repeated = self.stats.last_error == str(e)  # said once per outage, not once per retry
                if self._connected:
                    self._stats.add(disconnects=1)
                if not repeated:
                    log.warning("trigger source %s: %s: %s (retrying, at most every %.1f s)", self.name,
                                "link lost" if self._connected else "no link", e, self._max_backoff_s)
                self._stats.add(errors=1)
                self._stats.set(connected=False, last_error=str(e))
                self._connected = False
                with contextlib.suppress(Exception):
                    self.reader.close()
                wait = backoff
                backoff = min(backoff * 2, self._max_backoff_s)
            except Exception as e:  # the poll loop must outlive anything unexpected
                self._stats.add(errors=1)
                self._stats.set(last_error=str(e))
                log.exception("trigger source %s: poll failed", self.name)
                wait = 1.0

    # -- counter ----------------------------------------------------------------------------------
    def _take_counter(self, snapshot: PlcTriggerSnapshot, fresh: bool) -> None:
        value = snapshot.trigger % COUNTER_MODULO
        slots = self.reader.slots
        if self._last is None:  # station start: what the PLC counted while we were away is not a trigger
            seen = self._state.load() if self._state is not None else None
            if seen is None:
                log.info("trigger source %s: counter at %d on start, taken as seen", self.name, value)
            else:
                self._catch_up(seen, value, snapshot, "while the station was down")
            self._remember(value)
            return
        diff = (value - self._last) % COUNTER_MODULO
        if diff == 0:
            return
        if fresh:  # triggers that came while the link was down: their units may have left the cameras
            self._catch_up(self._last, value, snapshot, "while the link to the PLC was down")
            self._remember(value)
            return
        if diff > RESET_JUMP:
            log.warning("trigger source %s: counter went from %d to %d in one poll: taken as a reset of the PLC's "
                        "counter, not as triggers", self.name, self._last, value)
            self._remember(value)
            return
        first = self._last
        lost = max(0, diff - slots)
        if lost:
            self._stats.add(missed=lost)
            log.error("trigger source %s: %d triggers in one poll but %d slots: the %d oldest (after counter %d) are "
                      "lost; poll faster or give the PLC more slots", self.name, diff, slots, lost, first)
        self._remember(value)  # before handing on: a crash now loses the trigger, it never doubles it
        received_at = self._clock()
        for k in range(first + 1 + lost, first + diff + 1):
            counter = k % COUNTER_MODULO
            self._deliver(snapshot.slots[counter % slots], counter, received_at)

    def _catch_up(self, seen: int, value: int, snapshot: PlcTriggerSnapshot, when: str) -> None:
        """Answer, never judge, the triggers between ``seen`` and ``value`` (counted ``missed``)."""
        diff = (value - seen) % COUNTER_MODULO
        if diff == 0:
            return
        slots = self.reader.slots
        if diff > RESET_JUMP or (value < seen and diff > slots):
            log.warning("trigger source %s: counter moved from %d to %d %s: taken as a reset of the PLC's counter",
                        self.name, seen, value, when)
            return
        lost = max(0, diff - slots)
        self._stats.add(missed=diff)
        log.error("trigger source %s: %d triggers came %s (counter %d -> %d): answered as not judged (error %d)",
                  self.name, diff, when, seen, value, ResultError.MISSED)
        for k in range(seen + 1 + lost, seen + diff + 1):
            slot = snapshot.slots[(k % COUNTER_MODULO) % slots]
            self.output.submit_unjudged(slot.unit_id if not slot.problem else "", ResultError.MISSED,
                                        f"trigger {k % COUNTER_MODULO} came {when}")

    def _remember(self, value: int) -> None:
        self._last = value
        if self._state is not None:
            try:
                self._state.save(value)
            except OSError as e:
                self._stats.add(errors=1)
                log.error("trigger source %s: cannot save the counter to %s: %s", self.name, self._state.path, e)

    # -- bit --------------------------------------------------------------------------------------
    def _take_bit(self, snapshot: PlcTriggerSnapshot, fresh: bool) -> None:
        if snapshot.trigger == 0:
            self._bit_taken = False
            return
        if self._bit_taken:  # ours, and our clear was lost with the link: only clear it again
            self._stats.add(duplicates=1)
            log.info("trigger source %s: trigger bit still set after a reconnect; already taken, cleared", self.name)
        elif fresh:
            slot = snapshot.slots[0]
            when = "before the station started" if self._first_read else "while the link to the PLC was down"
            self._stats.add(missed=1)
            log.error("trigger source %s: trigger bit (unit %s) was set %s: answered as not judged (error %d)",
                      self.name, slot.unit_id or "?", when, ResultError.MISSED)
            self.output.submit_unjudged(slot.unit_id if not slot.problem else "", ResultError.MISSED,
                                        f"trigger bit set {when}")
        else:
            self._deliver(snapshot.slots[0], None, self._clock())
            self._bit_taken = True
        self.reader.clear_trigger()
        self._bit_taken = False

    # -- handing on -------------------------------------------------------------------------------
    def _deliver(self, slot: Slot, counter: int | None, received_at: datetime) -> None:
        seq = counter if counter is not None else self.stats.received + self.stats.malformed + 1
        if slot.problem:
            self._stats.add(malformed=1)
            log.error("trigger source %s: trigger %s has no readable unit: %s; answered as not judged",
                      self.name, seq, slot.problem)
            self.output.submit_unjudged(slot.unit_id, ResultError.UNREADABLE, slot.problem)
            return
        trigger = Trigger(trigger_id=f"{self.name}-{self._token}-{seq}", unit_id=slot.unit_id,
                          order_id=slot.order_id, channel=self.channel, received_at=received_at, at=received_at,
                          reply_to=str(seq))
        self._stats.add(received=1)
        log.debug("trigger source %s: unit %s (trigger %s)", self.name, slot.unit_id, seq)
        assert self._submit is not None
        try:
            self._submit(trigger)
        except Exception as e:  # a station that refuses must not stop the poll; the PLC still gets an answer
            self._stats.add(errors=1)
            log.exception("trigger source %s: the station refused trigger %s", self.name, trigger.trigger_id)
            self.output.submit_unjudged(slot.unit_id, ResultError.REJECTED, f"station refused the trigger: {e}")
