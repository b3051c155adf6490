"""PLC triggers in Modbus holding registers: the station polls them as a Modbus TCP client.

Register map (0-based addresses; one read request per poll when the trigger register heads a block of at
most 125, else the trigger first and then the slots, so a slot is never older than the counter read):

===========  ==============  =============================================================================
signal       default         meaning
===========  ==============  =============================================================================
trigger      100             ``counter``: +1 per unit (wraps 65535 -> 0); ``bit``: 1 = unit here, the
                             station writes 0 once it took it
unit         101..110        the unit of slot 0: ``ascii`` (``unit_words`` registers, 2 chars each, high
                             byte first, NUL/space padded), ``uint16`` (1 register) or ``uint32`` (2,
                             high word first)
order        (none)          optional: the unit's order, same formats; without it (or all 0) the station
                             looks the order up from the unit
slot i       unit + i*stride with ``slots`` > 1 (counter only): the PLC writes unit (and order) of
             (order + ...)   trigger ``n`` into slot ``n % slots`` before it sets the counter to ``n``
===========  ==============  =============================================================================

The answer goes to the result registers of ``inspection.signals.modbus`` (``result_code``, ``sequence``,
``error``, ``unit_id``, ``result_valid`` / ``ack``), see ``plc.py`` for what is answered when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from inspection.errors import ConfigError
from inspection.line.sources.plc import PlcTriggerSnapshot, Slot, check_unit_text
from inspection.signals.modbus import MAX_READ, ModbusLink, words_ascii

UnitFormat = Literal["ascii", "uint16", "uint32"]
WIDTH = {"uint16": 1, "uint32": 2}


def _width(fmt: UnitFormat, words: int) -> int:
    return words if fmt == "ascii" else WIDTH[fmt]


def decode_id(words: Sequence[int], fmt: UnitFormat, what: str) -> str:
    """A unit or order id from its registers; ``ValueError`` says why it cannot be one (0, empty, garbage)."""
    if fmt == "ascii":
        try:
            text = words_ascii(words)
        except ValueError as e:
            raise ValueError(f"{what} is not ASCII: {e}") from e
        return check_unit_text(text, what)
    number = words[0] if fmt == "uint16" else (words[0] << 16) | words[1]
    if number == 0:
        raise ValueError(f"{what} is 0 (not written by the PLC?)")
    return str(number)


@dataclass(frozen=True)
class ModbusTriggerLayout:
    """Where the trigger, the unit and the order live; checked on construction (overlaps, register space)."""

    trigger: int = 100
    unit: int = 101
    unit_format: UnitFormat = "ascii"
    unit_words: int = 10
    order: int | None = None
    order_format: UnitFormat = "ascii"
    order_words: int = 10
    slots: int = 1
    stride: int | None = None  # registers from one slot to the next; default: just past the slot's last one

    def __post_init__(self) -> None:
        if self.slots not in (1, 2, 4, 8, 16):
            raise ConfigError(f"slots must be 1, 2, 4, 8 or 16 (a power of two, so slot = counter % slots stays "
                              f"in step when the counter wraps), not {self.slots}")
        for name, words in (("unit_words", self.unit_words), ("order_words", self.order_words)):
            if not 1 <= words <= 64:
                raise ConfigError(f"{name} must be 1..64, not {words}")
        used: dict[int, str] = {}
        for name, address, width in self.signals():
            if address < 0 or address + width > 65536:
                raise ConfigError(f"register {name} at {address} is outside the register space")
            for a in range(address, address + width):
                if a in used:
                    raise ConfigError(f"registers {name} and {used[a]} overlap at {a}")
                used[a] = name

    @property
    def slot_stride(self) -> int:
        if self.stride is not None:
            return self.stride
        start, end = self._slot_span()
        return end - start

    def _slot_span(self) -> tuple[int, int]:
        spans = [(self.unit, self.unit + _width(self.unit_format, self.unit_words))]
        if self.order is not None:
            spans.append((self.order, self.order + _width(self.order_format, self.order_words)))
        return min(s for s, _ in spans), max(e for _, e in spans)

    def signals(self) -> list[tuple[str, int, int]]:
        """(name, first register, width) of every register this layout reads."""
        out = [("trigger", self.trigger, 1)]
        for i in range(self.slots):
            base = i * self.slot_stride if self.slots > 1 else 0
            suffix = f"[{i}]" if self.slots > 1 else ""
            out.append((f"unit{suffix}", self.unit + base, _width(self.unit_format, self.unit_words)))
            if self.order is not None:
                out.append((f"order{suffix}", self.order + base, _width(self.order_format, self.order_words)))
        return out

    def span(self) -> tuple[int, int]:
        """(first register, count): one block that covers every signal."""
        signals = self.signals()
        start = min(a for _, a, _ in signals)
        return start, max(a + w for _, a, w in signals) - start

    def slot_span(self) -> tuple[int, int]:
        """(first register, count) of the slots alone."""
        signals = self.signals()[1:]
        start = min(a for _, a, _ in signals)
        return start, max(a + w for _, a, w in signals) - start

    def decode(self, block: Sequence[int], start: int) -> PlcTriggerSnapshot:
        slots = []
        for i in range(self.slots):
            base = i * self.slot_stride if self.slots > 1 else 0
            u = self.unit + base - start
            unit_regs = block[u:u + _width(self.unit_format, self.unit_words)]
            try:
                unit = decode_id(unit_regs, self.unit_format, "unit number")
            except ValueError as e:
                slots.append(Slot("", None, str(e)))
                continue
            order: str | None = None
            o = (self.order + base - start) if self.order is not None else 0
            order_regs = block[o:o + _width(self.order_format, self.order_words)] if self.order is not None else []
            if any(order_regs):  # all 0: the PLC gave no order, the station looks it up from the unit
                try:
                    order = decode_id(order_regs, self.order_format, "order number")
                except ValueError as e:
                    slots.append(Slot(unit, None, str(e)))
                    continue
            slots.append(Slot(unit, order))
        return PlcTriggerSnapshot(block[self.trigger - start], tuple(slots))


class ModbusTriggerReader:
    """The trigger block of one PLC over its own ``ModbusLink``."""

    def __init__(self, link: ModbusLink, layout: ModbusTriggerLayout) -> None:
        self.link = link
        self.layout = layout
        self.description = link.description
        self.slots = layout.slots
        self._start, self._count = layout.span()
        # One request when the trigger heads the block and it fits; else the trigger first, then the slots:
        # the PLC writes a slot before it steps the counter, so a slot read after the counter is never older.
        self._one_read = self._start == layout.trigger and self._count <= MAX_READ
        self._slots_start, self._slots_count = layout.slot_span()

    def connect(self) -> None:
        self.link.connect()

    def read(self) -> PlcTriggerSnapshot:
        if self._one_read:
            return self.layout.decode(self.link.read_registers(self._start, self._count), self._start)
        trigger = self.link.read_registers(self.layout.trigger, 1)
        words = self.link.read_registers(self._slots_start, self._slots_count)
        block = [0] * self._count
        offset = self._slots_start - self._start
        block[offset:offset + len(words)] = words
        block[self.layout.trigger - self._start] = trigger[0]  # the value read first, also if inside the slots
        return self.layout.decode(block, self._start)

    def clear_trigger(self) -> None:
        self.link.write_registers(self.layout.trigger, [0])

    def close(self) -> None:
        self.link.close()
