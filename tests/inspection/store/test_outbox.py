"""The station outbox: results keep being acknowledged while the central PostgreSQL is cut (through a TCP proxy;
the real server is never stopped), and are replayed in order, exactly once, when it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from drills.tcp_proxy import CutMode, TcpProxy
from inspection.errors import StoreError
from inspection.store import BatchedResultWriter, ResultsStore
from inspection.store.outbox import Outbox, OutboxFullError, StationOrders, verdict_from_json, verdict_to_json
from inspection.store.repository import ResultRecord
from inspection.types import UnitVerdict, Verdict
from tests.inspection.store.factories import finding, result, standard_book


class Units:
    def __init__(self) -> None:
        self.verdicts: list[UnitVerdict] = []

    def submit(self, result: object) -> None:
        pass

    def submit_unit_verdict(self, verdict: UnitVerdict) -> None:
        self.verdicts.append(verdict)


@pytest.fixture
def proxied(postgres_url: str, tmp_path: Path) -> Iterator[tuple[TcpProxy, ResultsStore, ResultsStore]]:
    """(proxy, store through the proxy, store direct) on the session's PostgreSQL database."""
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        station = ResultsStore.open(through, tmp_path / "frames")
        direct = ResultsStore.open(postgres_url, tmp_path / "frames")
        direct.import_order_book(standard_book())
        try:
            yield proxy, station, direct
        finally:
            station.close()
            direct.close()


def wait_for(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["reset", pytest.param("blackhole", marks=pytest.mark.slow)])
def test_a_cut_database_fills_the_outbox_and_the_backlog_is_replayed_exactly_once(
        proxied: tuple[TcpProxy, ResultsStore, ResultsStore], tmp_path: Path, mode: CutMode) -> None:
    proxy, station, direct = proxied
    outbox = Outbox(tmp_path / "outbox.db")
    sink = Units()
    tag = f"OB{time.monotonic_ns()}"
    writer = BatchedResultWriter(station, outbox=outbox, retry_delay_s=0.01, offline_retry_s=0.2,
                                 after_commit=[sink])
    try:
        before = writer.submit(result(f"{tag}-0", camera="top", seq=1)).result(timeout=30)
        assert before.inserted and not before.queued
        proxy.cut(mode)
        views = (("top", Verdict.FAIL), ("side", Verdict.PASS))
        during = [writer.submit(result(f"{tag}-{n}", camera=cam, seq=10 * n + i, verdict=verdict,
                                       findings=[finding()] if verdict is Verdict.FAIL else []))
                  for n in range(1, 6) for i, (cam, verdict) in enumerate(views)]
        answers = [f.result(timeout=30) for f in during]
        assert all(a.queued and a.inserted for a in answers)  # acknowledged because they are in the outbox
        assert all(a.unit_verdict is None for a in answers)  # no provisional roll-up given with these results
        assert outbox.status().backlog == len(during) and writer.stats.offline
        assert direct.unit_histories([f"{tag}-1"]) == {}  # nothing reached the database
        provisional = UnitVerdict(unit_id=f"{tag}-0", order_id="ORD-1", verdict=Verdict.PASS, frames=(), reasons=())
        again = writer.submit(result(f"{tag}-0", camera="side", seq=2), provisional).result(timeout=30)
        assert again.queued and again.unit_verdict is provisional  # behind the backlog, in order
        assert sink.verdicts == [provisional]  # the line acts on the station's own roll-up during the cut
        proxy.restore()
        assert wait_for(lambda: outbox.status().backlog == 0 and not writer.stats.offline), "never replayed"
        assert writer.stats.replayed == len(during) + 1
    finally:
        writer.close()
        outbox.close()
    for n in range(0, 6):
        record = direct.unit_record(f"{tag}-{n}").to_json()
        assert len(record["frames"]) == 2 and record["complete"]
        assert record["verdict"] == ("PASS" if n == 0 else "FAIL")  # rolled up centrally on replay
    central = sink.verdicts[1:]  # after the provisional one: re-checked centrally on replay, one per unit
    assert sorted(v.unit_id for v in central) == sorted(f"{tag}-{n}" for n in range(6))


@pytest.mark.postgres
def test_a_replay_interrupted_after_the_commit_stores_nothing_twice(
        proxied: tuple[TcpProxy, ResultsStore, ResultsStore], tmp_path: Path) -> None:
    _proxy, station, direct = proxied
    tag = f"RP{time.monotonic_ns()}"
    done = [ResultRecord.of(result(f"{tag}-1", camera=cam, seq=n)) for n, cam in enumerate(("top", "side"))]
    direct.commit_group(done)  # committed centrally, then the station died before removing them from the outbox
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append(done)
    with BatchedResultWriter(station, outbox=outbox, offline_retry_s=0.05) as writer:  # replays at start
        assert wait_for(lambda: outbox.backlog() == 0)
        assert writer.stats.written == 0 and writer.stats.replayed == 2
    outbox.close()
    assert len(direct.unit_record(f"{tag}-1").frames) == 2


def test_entries_the_database_refuses_are_kept_not_dropped(store: ResultsStore, tmp_path: Path) -> None:
    store.import_order_book(standard_book())
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.append([ResultRecord.of(result("U1", seq=1)), ResultRecord.of(result("U9", "ORD-404", seq=2)),
                   ResultRecord.of(result("U1", camera="side", seq=3))])
    with BatchedResultWriter(store, outbox=outbox, offline_retry_s=0.05):
        assert wait_for(lambda: outbox.backlog() == 0)
    assert outbox.status().dead == 1 and len(store.frame_verdicts("U1")) == 2
    outbox.close()


def test_the_outbox_is_bounded_with_an_alarm_before_full(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(tmp_path / "outbox.db", max_bytes=200_000, warn_fraction=0.5)
    record = ResultRecord.of(result("U1", seq=1))
    with pytest.raises(OutboxFullError):
        for _ in range(2000):
            outbox.append([record] * 10)
    assert "ALARM" in caplog.text and outbox.status().alarm
    outbox.close()


def test_verdicts_survive_the_outbox_format() -> None:
    v = result("U1", seq=3, verdict=Verdict.FAIL, findings=[finding()]).verdict
    assert verdict_from_json(verdict_to_json(v)) == v


@pytest.mark.postgres
def test_orders_are_served_from_the_local_cache_during_a_cut(
        proxied: tuple[TcpProxy, ResultsStore, ResultsStore], tmp_path: Path) -> None:
    proxy, station, _direct = proxied
    outbox = Outbox(tmp_path / "outbox.db")
    orders = StationOrders(station, outbox)
    assert orders.sync() >= 2
    proxy.cut()
    try:
        order, profile = orders.get_order("ORD-1")
        assert order.id == "ORD-1" and profile.required_views == ("top", "side")
        assert orders.unit_histories(["U1"]) == {}  # unknown during the cut: the station starts from what it knows
        with pytest.raises(StoreError, match="not cached"):
            orders.get_order("ORD-NEVER")
    finally:
        proxy.restore()
        outbox.close()
