"""The trigger record (``line_triggers``) on SQLite and PostgreSQL: one row per trigger id and station, the
first answer kept, newest first, per station."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inspection.errors import NotFoundError
from inspection.store.db import open_database
from inspection.store.triggers import TriggerLog, TriggerRecord

T0 = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def record(trigger_id: str, seconds: int, outcome: str = "judged", verdict: str | None = "PASS") -> TriggerRecord:
    at = T0 + timedelta(seconds=seconds)
    return TriggerRecord(trigger_id, "", "modbus", f"U-{trigger_id}", "ORD-1" if verdict else None, at, at,
                         at + timedelta(milliseconds=120), outcome, verdict, "" if verdict else "why not",
                         120.0, {"top": {"camera": "top", "seq": seconds, "captured_at": at.isoformat()}})


def test_trigger_log_round_trip(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        log, other = TriggerLog(engine, "press-3"), TriggerLog(engine, "press-4")
        assert log.record(record("t1", 1))
        assert log.record(record("t2", 2, "unknown_unit", None))
        assert not log.record(record("t1", 9, "failed", None))  # a trigger keeps its first answer
        assert other.record(record("t1", 5))  # the same id at another station is another trigger
        got = log.get("t1")
        assert got.outcome == "judged" and got.verdict == "PASS" and got.station_id == "press-3"
        assert got.frames["top"]["seq"] == 1 and got.at == T0 + timedelta(seconds=1)
        assert [r.trigger_id for r in log.recent(10)] == ["t2", "t1"]
        assert [r.trigger_id for r in log.recent(10, unit_id="U-t2")] == ["t2"]
        assert log.get("t2").error == "why not" and log.get("t2").order_id is None
        with pytest.raises(NotFoundError):
            log.get("t9")
    finally:
        engine.dispose()


def test_a_trigger_answered_while_the_database_is_away_is_spooled_and_written_once_it_is_back(tmp_path) -> None:
    from sqlalchemy import text

    engine = open_database(f"sqlite:///{tmp_path / 'qcline.db'}")
    spool = tmp_path / "line" / "unrecorded-triggers.jsonl"
    try:
        log = TriggerLog(engine, "press-3", spool=spool)
        assert log.record(record("t1", 1))
        with engine.begin() as connection:  # the table is away: every insert fails as if the database were
            connection.execute(text("ALTER TABLE line_triggers RENAME TO line_triggers_away"))
        assert not log.record(record("t2", 2))
        assert not log.record(record("t3", 3, "unknown_unit", None))
        assert log.spooled == 2 and len(spool.read_text().splitlines()) == 2
        assert log.replay() == 0 and spool.exists()  # still away: nothing lost, nothing written
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE line_triggers_away RENAME TO line_triggers"))
        assert log.record(record("t4", 4))  # the next record that gets through writes the spooled ones first
        assert not spool.exists()
        assert [r.trigger_id for r in log.recent(10)] == ["t4", "t3", "t2", "t1"]
        assert log.get("t3").error == "why not" and log.lost == 0
        small = TriggerLog(engine, "press-9", spool=tmp_path / "small.jsonl", spool_max_bytes=10)
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE line_triggers RENAME TO line_triggers_away"))
        assert not small.record(record("t5", 5))
        assert small.lost == 1 and not (tmp_path / "small.jsonl").exists()  # bounded: counted, logged, not kept
    finally:
        engine.dispose()
