"""Two real ``qcline serve`` processes on one PostgreSQL database, each unit's two required views sent at the same
moment to different processes: every unit gets exactly one complete verdict (rolled up in the database under a
lock), no frame is lost or stored twice, and an Idempotency-Key holds across processes."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.services.auth import ApiKeyService, Role
from inspection.profiles import OrderBook
from inspection.store.repository import ResultsStore
from inspection.store.tables.results import InspectionRow, UnitRow
from tests.api.conftest import ORDER_BOOK, free_port, jpeg
from tests.api.processes import Camera, Sent, fresh_postgres_database, start_serve, station_env, wait_ready

UNITS = 30


@pytest.fixture
def fresh_postgres() -> Iterator[str]:
    with fresh_postgres_database("qcline_mp") as url:
        yield url


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_roll_each_unit_up_once(tmp_path: Path, tiny_model: Path, fresh_postgres: str) -> None:
    store = ResultsStore.open(fresh_postgres, tmp_path / "frames")
    store.import_order_book(OrderBook.model_validate(ORDER_BOOK))
    with ApiKeyService.open(fresh_postgres) as keys:
        api_key = keys.create(Role.CAMERA, "line-7")[0]
    servers, bases = [], []
    try:
        for name in ("a", "b"):  # one after the other: the first migrates, the second finds it done
            port = free_port()
            log = tmp_path / f"serve-{name}.log"
            server = start_serve(station_env(tmp_path / name, tiny_model, fresh_postgres), port, log)
            servers.append(server)
            bases.append(f"http://127.0.0.1:{port}")
            wait_ready(bases[-1], server, log)
        camera = Camera(bases[0], api_key)
        # ORD-2 (rustic-oak) needs "top" and "side": each unit's views go to different processes at once.
        sent: dict[str, list[Sent]] = {}
        barrier = threading.Barrier(2)

        def view(unit: int, camera_id: str, base: str) -> None:
            item = Sent(key=f"{camera_id}-{unit}", unit_id=f"U-mp-{unit}", camera_id=camera_id, order_id="ORD-2",
                        data=jpeg(255 if camera_id == "top" else 0, noise=unit * 2 + (camera_id == "side") + 1))
            sent.setdefault(item.unit_id, []).append(item)
            barrier.wait(30)
            assert camera.send(item, base), f"{item.key} not answered 200"

        for unit in range(UNITS):
            a, b = (bases[0], bases[1]) if unit % 2 else (bases[1], bases[0])
            pair = [threading.Thread(target=view, args=(unit, "top", a)),
                    threading.Thread(target=view, args=(unit, "side", b))]
            for t in pair:
                t.start()
            for t in pair:
                t.join(60)
        assert len(camera.answered) == 2 * UNITS and not camera.unanswered
        for unit_id, items in sent.items():
            reported = [i.answer["unit_verdict"] for i in items if i.answer and i.answer["unit_verdict"]]
            assert len(reported) == 1, f"{unit_id}: unit verdict reported {len(reported)} times"
            assert reported[0]["complete"] and reported[0]["frames"] == 2  # type: ignore[index]
        with store._session("checking") as session:
            frames = dict(session.execute(select(InspectionRow.unit_id, func.count())
                                          .group_by(InspectionRow.unit_id)).all())
            units = {u.id: u for u in session.scalars(select(UnitRow).where(UnitRow.id.like("U-mp-%")))}
        assert frames == {f"U-mp-{n}": 2 for n in range(UNITS)}
        assert all(u.verdict is not None and u.complete and not u.missing_views for u in units.values())
        for unit_id, items in sent.items():  # the store's verdict is the one the cameras were told
            told = next(i.answer["unit_verdict"] for i in items if i.answer and i.answer["unit_verdict"])
            assert units[unit_id].verdict == told["verdict"]  # type: ignore[index]
        # An Idempotency-Key answered by one process is replayed by the other, storing nothing.
        for item in [items[0] for items in sent.values()][:5]:
            other = bases[1] if item.answer and camera.base == bases[0] else bases[0]
            for base in (bases[0], other):
                r = camera.post(item, base)
                assert r is not None and r.status_code == 200, r.text if r is not None else "no answer"
                assert r.headers.get("idempotent-replayed") == "true" or r.json()["duplicate"] is True
        with store._session("counting") as session:
            assert session.scalar(select(func.count()).select_from(InspectionRow)) == 2 * UNITS
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(60)
        store.close()
