"""The dynamic batcher with a fake inspector: batching, ordering, shedding load, failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from api.services.batching import MicroBatcher, OverloadedError
from inspection.pipeline import FrameOutcome, FrameStatus
from inspection.types import Frame


def _frame(n: int) -> Frame:
    return Frame(np.full((8, 8, 3), n % 255, np.uint8), "top", f"U-{n}", "ORD", datetime.now(UTC))


class FakeInspector:
    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.calls: list[str] = []
        self.gate = gate
        self.fail = fail

    def inspect_frames(self, frames: Sequence[Frame]) -> list[FrameOutcome]:
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail:
            raise RuntimeError("onnxruntime fell over")
        self.batches.append([f.unit_id for f in frames])
        return [FrameOutcome(f, FrameStatus.DUPLICATE) for f in frames]

    def close_unit(self, unit_id: str) -> str:
        self.calls.append(unit_id)
        return unit_id


def _batcher(inspector: FakeInspector, **kwargs: Any) -> MicroBatcher:
    batcher = MicroBatcher(inspector, **kwargs)  # type: ignore[arg-type]
    batcher.start()
    return batcher


def test_queued_frames_share_one_forward_pass_and_calls_run_after_them() -> None:
    gate = threading.Event()
    inspector = FakeInspector(gate)
    batcher = _batcher(inspector, max_batch=4)
    first = batcher.submit(_frame(0))  # taken alone; the worker then blocks on the gate
    time.sleep(0.05)
    futures = [batcher.submit(_frame(n)) for n in range(1, 6)]
    closed = batcher.call(lambda i: i.close_unit("U-1"))  # type: ignore[attr-defined]
    gate.set()
    assert closed.result(5) == "U-1"
    for f in [first, *futures]:
        assert f.result(5).status is FrameStatus.DUPLICATE
    assert inspector.batches == [["U-0"], ["U-1", "U-2", "U-3", "U-4"], ["U-5"]]
    batcher.stop()


def test_a_full_queue_sheds_load_with_overloaded() -> None:
    gate = threading.Event()
    batcher = _batcher(FakeInspector(gate), max_batch=1, max_queue=2)
    batcher.submit(_frame(0))
    time.sleep(0.05)  # the worker holds frame 0
    batcher.submit(_frame(1))
    batcher.submit(_frame(2))
    with pytest.raises(OverloadedError, match="queue is full"):
        batcher.submit(_frame(3))
    assert batcher.stats.dropped == 1
    gate.set()
    batcher.stop()
    assert batcher.depth == 0


def test_a_lone_request_does_not_wait_but_arriving_ones_are_waited_for() -> None:
    inspector = FakeInspector()
    batcher = _batcher(inspector, max_batch=8, max_wait_s=0.2)
    started = time.perf_counter()
    batcher.submit(_frame(0)).result(5)
    assert time.perf_counter() - started < 0.1  # nobody else arriving: no 200 ms wait
    with batcher.arriving():
        first = batcher.submit(_frame(1))
        time.sleep(0.02)
        second = batcher.submit(_frame(2))
    first.result(5), second.result(5)
    assert inspector.batches[-1] == ["U-1", "U-2"]
    batcher.stop()


def test_a_failing_batch_fails_its_requests_and_the_worker_goes_on() -> None:
    inspector = FakeInspector(fail=True)
    batcher = _batcher(inspector)
    with pytest.raises(RuntimeError, match="fell over"):
        batcher.submit(_frame(0)).result(5)
    inspector.fail = False
    assert batcher.submit(_frame(1)).result(5).status is FrameStatus.DUPLICATE
    batcher.stop()
