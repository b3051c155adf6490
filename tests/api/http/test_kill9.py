"""``kill -9`` of ``qcline serve`` on SQLite while cameras stream: every frame answered 200 is in the database
after restart, none twice, and the unanswered ones retried with their Idempotency-Keys are stored exactly once.

A small version of the ``drills/kill9`` drill, so a regression of "durable before acknowledged" fails CI.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from api.services.auth import ApiKeyService, Role
from inspection.profiles import OrderBook
from inspection.store.repository import ResultsStore
from inspection.store.tables.results import InspectionRow, UnitRow
from tests.api.conftest import ORDER_BOOK, free_port, jpeg
from tests.api.processes import Camera, Sent, start_serve, station_env, wait_ready

ROUNDS = 3
CAMERAS = 4


@pytest.mark.slow
def test_kill9_loses_no_acknowledged_frame_and_duplicates_none(tmp_path: Path, tiny_model: Path) -> None:
    data_dir = tmp_path / "data"
    env = station_env(data_dir, tiny_model)
    url = f"sqlite:///{(data_dir / 'qcline.db').resolve()}"
    store = ResultsStore.open(url, data_dir / "frames")
    store.import_order_book(OrderBook.model_validate(ORDER_BOOK))
    with ApiKeyService.open(url) as keys:
        api_key = keys.create(Role.CAMERA, "kill9")[0]
    rng = random.Random(9)
    log = tmp_path / "serve.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    camera = Camera(base, api_key)
    counter = iter(range(10**6))
    counter_lock = threading.Lock()

    def next_frame(cam: int) -> Sent:
        with counter_lock:
            n = next(counter)
        # Units of one required view ("top", high-gloss): each frame completes its unit.
        return Sent(key=f"cam{cam}-{n}", unit_id=f"U-{n}", camera_id="top", data=jpeg(255 if n % 3 else 0, noise=n + 1))

    for _round in range(ROUNDS):
        server = start_serve(env, port, log)
        wait_ready(base, server, log)
        stop = threading.Event()

        def stream(cam: int, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                camera.send(next_frame(cam))

        threads = [threading.Thread(target=stream, args=(c,), daemon=True) for c in range(CAMERAS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.8, 2.0))
        os.kill(server.pid, signal.SIGKILL)  # at a random moment, requests in flight
        server.wait(10)
        stop.set()
        for t in threads:
            t.join(60)
    assert camera.answered, "no frame was answered before the kills: the test proves nothing"
    server = start_serve(env, port, log)
    try:
        wait_ready(base, server, log)
        # Every acknowledged frame is there, exactly once, with its unit's verdict.
        with store._session("checking") as session:
            rows = session.execute(select(InspectionRow.unit_id, InspectionRow.camera_id,
                                          InspectionRow.frame_sha256)).all()
            verdicts = dict(session.execute(select(UnitRow.id, UnitRow.verdict)).all())
        recorded = {(r[0], r[1], r[2]) for r in rows}
        assert len(recorded) == len(rows)
        for sent in camera.answered:
            assert sent.answer is not None
            assert (sent.unit_id, "top", sent.answer["frame_sha256"]) in recorded, f"acknowledged {sent.key} lost"
            assert verdicts[sent.unit_id] == sent.answer["verdict"]  # the unit verdict went with its frame
        # The unanswered: retried with the same keys, each is stored exactly once.
        retry, camera.unanswered = camera.unanswered, []
        for sent in retry:
            for _ in range(20):
                if camera.send(sent):
                    break
                camera.unanswered.remove(sent)
                time.sleep(0.2)
            else:
                raise AssertionError(f"retry of {sent.key} never answered 200")
        # Retries of acknowledged frames are replayed, not stored again.
        for sent in rng.sample(camera.answered, min(10, len(camera.answered))):
            r = camera.post(sent)
            assert sent.answer is not None and r is not None and r.status_code == 200
            assert r.json()["frame_sha256"] == sent.answer["frame_sha256"]
        with store._session("counting") as session:
            total = session.scalar(select(func.count()).select_from(InspectionRow))
            without_verdict = session.scalar(select(func.count()).select_from(UnitRow)
                                             .where(UnitRow.verdict.is_(None)))
        assert total == len({s.unit_id for s in camera.answered}), "a frame is missing or stored twice"
        assert without_verdict == 0
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        store.close()
