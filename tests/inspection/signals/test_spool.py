from __future__ import annotations

import logging
from pathlib import Path

import pytest

from inspection.signals.spool import Spool


def test_messages_come_back_in_order_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, max_messages=100)
    for i in range(5):
        assert spool.put(f"t/{i}", f"m{i}".encode())
    first = spool.after(0, 2)
    assert [m.topic for m in first] == ["t/0", "t/1"] and first[0].qos == 1 and not first[0].retain
    spool.delete([first[0].id])
    spool.close()
    again = Spool(path, max_messages=100)
    assert again.depth == 4
    assert [m.payload for m in again.after(0, 10)] == [b"m1", b"m2", b"m3", b"m4"]
    again.close()


def test_a_full_spool_refuses_counts_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spool = Spool(tmp_path / "spool.db", max_messages=10, alarm_fraction=0.8)
    with caplog.at_level(logging.WARNING, logger="inspection.signals.spool"):
        results = [spool.put("t", b"x") for _ in range(12)]
    assert results == [True] * 10 + [False] * 2
    stats = spool.stats()
    assert stats.depth == 10 and stats.refused == 2 and stats.alarm
    assert any("80% full" in r.getMessage() for r in caplog.records)
    assert any("is full" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    spool.delete([m.id for m in spool.after(0, 10)])
    assert spool.stats().depth == 0 and not spool.stats().alarm
    assert spool.put("t", b"y")
    spool.close()


def test_meta_values_persist(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_messages=10)
    assert spool.get_meta("model_sha256") is None
    spool.set_meta("model_sha256", "abc")
    spool.set_meta("model_sha256", "def")
    spool.close()
    assert Spool(tmp_path / "spool.db", max_messages=10).get_meta("model_sha256") == "def"
