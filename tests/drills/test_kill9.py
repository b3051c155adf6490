"""The kill9 drill, small: kill -9 the real service 3 times under 4 cameras; nothing acknowledged is lost."""

from __future__ import annotations

import json

import pytest

from drills import kill9

pytestmark = pytest.mark.slow


def test_kill9_loses_and_duplicates_no_acknowledged_frame() -> None:
    result = kill9.run(rounds=3, cameras=4, seed=3, up_s=(1.0, 2.5), early_p=0.0, drain_s=20.0)
    assert result["acknowledged"] > 0 and result["rounds"] == 3
    assert result["attempts_by_status"].get("no_answer", 0) > 0, "the kills did not interrupt any request"
    assert (result["missing"], result["duplicated"]) == (0, 0), json.dumps(result)
    assert result["gave_up"] == 0, json.dumps(result)
