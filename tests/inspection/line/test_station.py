"""The line station's trigger edge cases, as one table, on fake cameras (the frames arrive exactly when the
test says) around a real core: SQLite store, group-commit writer, tiny ONNX model, trigger log.

What a case may assert: outcomes, verdicts, reasons, which frame (sequence number) went to which unit, the
record of every trigger. Never a wall-clock time: budgets are exercised by *not* delivering a frame.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspection.line.triggers import Trigger, TriggerAnswer, TriggerChannel, TriggerOutcome
from inspection.types import Verdict
from tests.inspection.line.fakes import FakeCamera, Rig, config, trigger, wait_until

LONG = "{frame_wait_ms: 20000, answer_within_ms: 30000}"
SHORT = "{frame_wait_ms: 300, answer_within_ms: 30000}"


def taken_up(rig: Rig, future: Future[TriggerAnswer], trigger_id: str) -> None:
    """Wait until the worker handles ``trigger_id`` (so a frame pushed now is captured after the trigger)."""
    wait_until(lambda: rig.station._current == trigger_id or future.done(), f"trigger {trigger_id} taken up")


def no_frame(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    return [rig.station.submit(trigger("U-none")).result(60)]


def stale_frame_before_the_trigger(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    cams["top"].push(255)
    wait_until(lambda: rig.hub.stats()[0].ring == 1, "the early frame in the ring")
    threading_wait(0.2)  # well past the 20 ms clock tolerance
    return [rig.station.submit(trigger("U-early")).result(60)]


def late_frame(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    answer = rig.station.submit(trigger("U-late")).result(60)  # answered only once the budget has passed
    cams["top"].push(255)  # too late for U-late, and captured before the next trigger: nobody's
    wait_until(lambda: rig.hub.stats()[0].ring == 1, "the late frame in the ring")
    threading_wait(0.2)
    after = rig.station.submit(trigger("U-next")).result(60)
    return [answer, after]


def first_frame_after_the_trigger(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    t = trigger("U-ok")
    future = rig.station.submit(t)
    taken_up(rig, future, t.trigger_id)
    cams["top"].push(255)
    cams["top"].push(0)
    return [future.result(60)]


def double_trigger(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    first, second = trigger("U-dbl"), trigger("U-dbl")
    f1 = rig.station.submit(first)
    f2 = rig.station.submit(second)  # the same unit while the first is open: answered at once, not judged
    duplicate = f2.result(60)
    taken_up(rig, f1, first.trigger_id)
    cams["top"].push(255)
    return [f1.result(60), duplicate]


def overlapping_units(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    a, b, c = trigger("U-a"), trigger("U-b"), trigger("U-c")
    futures = [rig.station.submit(t) for t in (a, b, c)]  # all three before any frame: they queue in order
    taken_up(rig, futures[0], a.trigger_id)
    for value in (255, 0, 255):
        cams["top"].push(value)
    return [f.result(60) for f in futures]


def camera_reconnect_mid_unit(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    t = trigger("U-2v", "ORD-2")
    future = rig.station.submit(t)
    taken_up(rig, future, t.trigger_id)
    cams["top"].push(0)
    cams["side"].drop()  # the side camera's stream breaks while the unit waits for its frame
    wait_until(lambda: cams["side"].opens >= 2, "the side camera reconnected")
    cams["side"].push(0)
    return [future.result(60)]


def camera_down(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    wait_until(lambda: rig.hub.stats()[0].reconnects >= 1, "a failed reconnect")
    return [rig.station.submit(trigger("U-down")).result(60)]


def unknown_unit(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    return [rig.station.submit(trigger("U-who", None)).result(60),
            rig.station.submit(trigger("U-bad-order", "ORD-nope")).result(60)]


def order_from_history_and_pattern(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    answers = []
    for unit, order in (("U-hist", "ORD-1"), ("U-hist", None), ("ORD-2-17", None)):
        t = trigger(unit, order)
        future = rig.station.submit(t)
        taken_up(rig, future, t.trigger_id)
        for name in cams:
            cams[name].push(0)
        answers.append(future.result(60))
    return answers


def queue_full(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    busy, queued, refused = trigger("U-q1"), trigger("U-q2"), trigger("U-q3")
    f1 = rig.station.submit(busy)
    taken_up(rig, f1, busy.trigger_id)  # the worker waits for U-q1's frame
    f2 = rig.station.submit(queued)      # fills the queue (queue_max 1)
    refusal = rig.station.submit(refused).result(60)  # answered at once, not dropped
    cams["top"].push(255)
    first = f1.result(60)
    cams["top"].push(0)
    return [first, f2.result(60), refusal]


def stopping(rig: Rig, cams: dict[str, FakeCamera]) -> list[TriggerAnswer]:
    busy, queued = trigger("U-s1"), trigger("U-s2")
    f1, f2 = rig.station.submit(busy), rig.station.submit(queued)
    taken_up(rig, f1, busy.trigger_id)
    cams["top"].push(255)
    rig.station.close()  # finishes U-s1, answers U-s2 without judging it
    return [f1.result(60), f2.result(60)]


def threading_wait(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)


@dataclass(frozen=True)
class Case:
    script: Callable[[Rig, dict[str, FakeCamera]], list[TriggerAnswer]]
    cameras: tuple[str, ...]
    outcomes: tuple[TriggerOutcome, ...]
    verdicts: tuple[Verdict | None, ...]
    error: str = ""
    budgets: str = LONG
    extra: tuple[tuple[str, str], ...] = ()
    offline: tuple[str, ...] = ()


J, M, U, R, D = (TriggerOutcome.JUDGED, TriggerOutcome.MISSING_VIEWS, TriggerOutcome.UNKNOWN_UNIT,
                 TriggerOutcome.REJECTED, TriggerOutcome.DUPLICATE)
FAIL, PASS, REV = Verdict.FAIL, Verdict.PASS, Verdict.REVIEW

CASES = {
    "no frame": Case(no_frame, ("top",), (M,), (REV,), "camera top: no frame within 300 ms after the trigger",
                     SHORT),
    "stale frame before the trigger": Case(stale_frame_before_the_trigger, ("top",), (M,), (REV,),
                                           "camera top: no frame within 300 ms", SHORT),
    "late frame": Case(late_frame, ("top",), (M, M), (REV, REV), "camera top: no frame within 300 ms", SHORT),
    "first frame after the trigger": Case(first_frame_after_the_trigger, ("top",), (J,), (FAIL,)),
    "double trigger": Case(double_trigger, ("top",), (J, D), (FAIL, None), "is already queued or being judged"),
    "overlapping units": Case(overlapping_units, ("top",), (J, J, J), (FAIL, PASS, FAIL)),
    "camera reconnect mid-unit": Case(camera_reconnect_mid_unit, ("top", "side"), (J,), (PASS,)),
    "camera down": Case(camera_down, ("top",), (M,), (REV,), "camera top: down: cannot open camera top", SHORT,
                        offline=("top",)),
    "unknown unit": Case(unknown_unit, ("top",), (U, U), (None, None), "unit U-who: no order"),
    "order from history and unit id": Case(order_from_history_and_pattern, ("top", "side"), (J, J, J),
                                           (PASS, PASS, PASS), extra=(("order_from_unit", "'^(?P<order>ORD-\\d+)-'"),)),
    "queue full": Case(queue_full, ("top",), (J, J, R), (FAIL, PASS, None), extra=(("queue_max", "1"),)),
    "stopping": Case(stopping, ("top",), (J, R), (FAIL, None)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_trigger_edge_cases(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    fakes = {camera: FakeCamera(online=camera not in case.offline) for camera in case.cameras}
    rig = Rig(tmp_path, config(*case.cameras, budgets=case.budgets, **dict(case.extra)), fakes=fakes)
    try:
        wait_until(lambda: all(f.opens >= 1 for f in fakes.values()), "cameras opened")
        answers = case.script(rig, fakes)
        assert tuple(a.outcome for a in answers) == case.outcomes, [a.error for a in answers]
        assert tuple(a.verdict.verdict if a.verdict else None for a in answers) == case.verdicts
        if case.error:
            assert case.error in answers[0].error + answers[-1].error, [a.error for a in answers]
        for answer in answers:  # every trigger leaves a record, also when it failed
            record = rig.log.get(answer.trigger.trigger_id)
            assert record.outcome == answer.outcome.value
            assert record.verdict == (answer.verdict.verdict.value if answer.verdict else None)
            assert record.error == answer.error
            if answer.outcome is TriggerOutcome.MISSING_VIEWS:  # the unit says why it cannot pass
                assert answer.verdict is not None and any("camera" in r for r in answer.verdict.reasons)
        seqs = [r["seq"] for a in answers for r in rig.log.get(a.trigger.trigger_id).frames.values() if "seq" in r]
        assert len(seqs) == len(set(seqs)) or len(case.cameras) > 1, "a frame was bound to two units"
        if name == "overlapping units":  # answered in trigger order, each its own frame, in capture order
            assert [a.trigger.unit_id for a in answers] == ["U-a", "U-b", "U-c"]
            assert seqs == [0, 1, 2]
        if name == "late frame":
            assert rig.hub.stats()[0].frames_claimed == 0  # the late frame went to no unit
        if name == "double trigger":
            assert len(rig.store.unit_record("U-dbl").frames) == 1  # judged once
        if name == "camera reconnect mid-unit":
            side = next(c for c in rig.hub.stats() if c.name == "side")
            assert side.reconnects >= 1 and side.frames_claimed == 1
        if name == "order from history and unit id":
            assert [a.verdict.order_id for a in answers if a.verdict] == ["ORD-1", "ORD-1", "ORD-2"]
    finally:
        rig.close()


class ScriptedSource:
    """A trigger channel the test drives: what a PLC / MQTT source does, minus the protocol."""

    name = "scripted"
    channel = TriggerChannel.MODBUS

    def __init__(self) -> None:
        self.submit: Callable[[Trigger], None] | None = None
        self.answers: list[TriggerAnswer] = []
        self.closed = False

    def start(self, submit: Callable[[Trigger], None]) -> None:
        self.submit = submit

    def answer(self, answer: TriggerAnswer) -> None:
        self.answers.append(answer)

    def close(self) -> None:
        self.closed = True


def test_each_trigger_is_answered_once_to_the_source_it_came_from(tmp_path: Path) -> None:
    top = FakeCamera()
    rig = Rig(tmp_path, config("top", budgets=LONG), fakes={"top": top})
    source = ScriptedSource()
    try:
        rig.station.add_source(source)
        assert source.submit is not None
        wait_until(lambda: top.opens >= 1, "camera opened")
        first = trigger("U-plc", channel=TriggerChannel.MODBUS)
        source.submit(first)
        source.submit(trigger("U-plc", channel=TriggerChannel.MODBUS))  # the PLC held its trigger bit: duplicate
        wait_until(lambda: rig.station._current == first.trigger_id, "trigger taken up")
        top.push(0)
        wait_until(lambda: len(source.answers) == 2, "both answers")
        assert [a.outcome for a in source.answers] == [TriggerOutcome.DUPLICATE, TriggerOutcome.JUDGED]
        assert source.answers[1].verdict is not None and source.answers[1].verdict.verdict is Verdict.PASS
        assert rig.log.get(first.trigger_id).channel == "modbus"
    finally:
        rig.close()
    assert source.closed and len(source.answers) == 2


def test_an_answered_trigger_reads_back_as_recorded_the_moment_its_answer_is_out(tmp_path: Path) -> None:
    """The HTTP trigger route answers when the future resolves and a reader may GET the trigger at once: by then
    it must be off the pending list and in the log (it once stayed 'current' until the worker looped)."""
    top = FakeCamera()
    rig = Rig(tmp_path, config("top", budgets=LONG), fakes={"top": top})
    seen: list[tuple[object, str]] = []
    try:
        wait_until(lambda: top.opens >= 1, "camera opened")
        t = trigger("U-read")
        future = rig.station.submit(t)
        future.add_done_callback(lambda _: seen.append((rig.station.pending(t.trigger_id),
                                                         rig.log.get(t.trigger_id).outcome)))
        taken_up(rig, future, t.trigger_id)
        top.push(0)
        assert future.result(60).outcome is TriggerOutcome.JUDGED
        wait_until(lambda: bool(seen), "the done-callback")  # it runs just after result() may return
        assert seen == [(None, "judged")]
    finally:
        rig.close()
