from __future__ import annotations

from pathlib import Path

from inspection.line.triggers import TriggerOutcome
from inspection.types import Verdict
from tests.inspection.line.fakes import FakeCamera, Rig, config, trigger, wait_until


def test_one_trigger_one_frame_one_verdict(tmp_path: Path) -> None:
    top = FakeCamera()
    rig = Rig(tmp_path, config("top", budgets="{frame_wait_ms: 3000, answer_within_ms: 5000}"), fakes={"top": top})
    try:
        wait_until(lambda: top.opens >= 1, "camera open")
        future = rig.station.submit(trigger("U-1"))
        wait_until(lambda: rig.station._current is not None, "trigger taken up")
        top.push(255)
        answer = future.result(30)
        assert answer.outcome is TriggerOutcome.JUDGED, answer.error
        assert answer.verdict is not None and answer.verdict.verdict is Verdict.FAIL
        record = rig.log.get(answer.trigger.trigger_id)
        assert record.outcome == "judged" and record.verdict == "FAIL" and record.frames["top"]["seq"] == 0
    finally:
        rig.close()
