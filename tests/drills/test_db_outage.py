"""The db-outage drill, small: PostgreSQL cut for 5 s through the drills' proxy under 4 cameras."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_db_outage_loses_and_duplicates_no_acknowledged_frame(postgres_url: str) -> None:
    from drills import db_outage

    # postgres_url (the session's throw-away database) proves the server is here, or skips; the drill makes
    # its own database on that server and drops it.
    result = db_outage.run(outage_s=5.0, cameras=4, database_url=postgres_url, warm_s=3.0, after_s=3.0,
                           drain_timeout_s=15.0)
    assert result["acknowledged"] > 0 and result["during_outage"]["requests"] > 0
    assert (result["lost"], result["duplicated"]) == (0, 0), json.dumps(result)
    assert result["gave_up"] == 0, json.dumps(result)
    assert result["drain_s"] is not None, "the backlog did not drain / acknowledged rows did not all arrive"
