"""The line station on a real RTSP camera (GStreamer on loopback, read through OpenCV/FFmpeg): frames bound
to triggers by capture time, overlapping units each with their own frame, the camera stopped (the trigger is
answered with the reason) and restarted in the middle of a unit (the unit gets its frame after the reconnect).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from inspection.line.triggers import TriggerOutcome
from tests.inspection.line.fakes import Rig, config, trigger, wait_until
from tests.rtsp_server import rtsp_camera

pytestmark = pytest.mark.rtsp


def test_rtsp_camera_through_triggers_overlaps_and_a_restart(tmp_path: Path) -> None:
    with rtsp_camera(tmp_path / "camera") as (server, url):
        rig = Rig(tmp_path, config(f"top={url}", budgets="{frame_wait_ms: 20000, answer_within_ms: 30000}"))
        try:
            wait_until(lambda: rig.hub.stats()[0].frames_in > 0, "frames over RTSP", 30)
            first = trigger("U-r1")
            answer = rig.station.submit(first).result(60)
            assert answer.outcome is TriggerOutcome.JUDGED, answer.error
            ref = rig.log.get(first.trigger_id).frames["top"]
            assert datetime.fromisoformat(ref["captured_at"]) >= first.at - timedelta(milliseconds=20)

            overlapping = [trigger(f"U-o{i}") for i in range(3)]
            futures = [rig.station.submit(t) for t in overlapping]
            answers = [f.result(60) for f in futures]
            assert [a.outcome for a in answers] == [TriggerOutcome.JUDGED] * 3
            seqs = [rig.log.get(t.trigger_id).frames["top"]["seq"] for t in overlapping]
            assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > ref["seq"]
            assert sorted(a.answered_at for a in answers) == [a.answered_at for a in answers]

            server.stop()
            wait_until(lambda: not rig.hub.stats()[0].connected, "the camera seen down", 30)
            reconnects = rig.hub.stats()[0].reconnects
            mid = trigger("U-mid")
            future = rig.station.submit(mid)  # waits for a frame while the camera is away
            wait_until(lambda: rig.hub.stats()[0].reconnects > reconnects, "a reconnect attempt", 30)
            server.start()  # the camera comes back within the unit's budget
            answer = future.result(60)
            assert answer.outcome is TriggerOutcome.JUDGED, answer.error
            assert rig.log.get(mid.trigger_id).frames["top"]["seq"] > max(seqs)
        finally:
            rig.close()


def test_rtsp_camera_away_answers_with_the_reason(tmp_path: Path) -> None:
    with rtsp_camera(tmp_path / "camera") as (server, url):
        rig = Rig(tmp_path, config(f"top={url}", budgets="{frame_wait_ms: 500, answer_within_ms: 30000}"))
        try:
            wait_until(lambda: rig.hub.stats()[0].frames_in > 0, "frames over RTSP", 30)
            server.stop()
            wait_until(lambda: not rig.hub.stats()[0].connected, "the camera seen down", 30)
            # FFmpeg flushes its buffered frames when the stream ends: let the last one age past the clock tolerance
            wait_until(lambda: (rig.hub.stats()[0].last_frame_age_s or 0) > 0.2, "the last frame older than 200 ms")
            away = trigger("U-away")
            answer = rig.station.submit(away).result(60)
            ref = rig.log.get(away.trigger_id).frames["top"]
            assert answer.outcome is TriggerOutcome.MISSING_VIEWS, f"at {away.at} ref {ref} {rig.hub.stats()}"
            assert answer.verdict is not None and answer.verdict.verdict.value != "PASS"
            assert answer.error.startswith("camera top: ")  # down: <the stream's error>, or no frame in time
            assert rig.log.get(answer.trigger.trigger_id).frames["top"]["error"] == answer.error
        finally:
            rig.close()
