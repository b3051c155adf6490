"""Training job rows on SQLite and PostgreSQL: one insert unless a busy job exists (checked in the same
transaction), progress and the end recorded, every busy job ended at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inspection.store.db import open_database
from inspection.store.training_jobs import TrainingJobRecord, TrainingJobRepository

BUSY = ("queued", "running")


@pytest.fixture
def jobs(db_url: str) -> Iterator[TrainingJobRepository]:
    repository = TrainingJobRepository(open_database(db_url))
    try:
        yield repository
    finally:
        repository.close()


def test_a_job_is_added_unless_one_is_busy(jobs: TrainingJobRepository) -> None:
    job, added = jobs.add_unless(BUSY, status="running", params={"epochs": 2}, actor="eng")
    assert added and isinstance(job, TrainingJobRecord)
    assert (job.status, job.params, job.progress, job.result, job.error, job.actor) == \
        ("running", {"epochs": 2}, {}, {}, "", "eng")
    assert job.started_at is not None and job.finished_at is None
    busy, added = jobs.add_unless(BUSY, status="running", params={"epochs": 3}, actor="eng")
    assert not added and busy == job
    assert [j.id for j in jobs.latest(10)] == [job.id]
    jobs.finish(job.id, "succeeded", result={"candidates": []}, error="")
    second, added = jobs.add_unless(BUSY, status="running", params={"epochs": 3}, actor="eng")
    assert added and second.id > job.id
    assert [j.id for j in jobs.latest(10)] == [second.id, job.id]
    assert [j.id for j in jobs.latest(1)] == [second.id]


def test_progress_and_the_end_are_recorded(jobs: TrainingJobRepository) -> None:
    job, _ = jobs.add_unless(BUSY, status="running", params={}, actor="eng")
    jobs.set_progress(job.id, {"epoch": 1, "epochs": 2})
    jobs.set_progress(job.id, {"epoch": 2, "epochs": 2})
    jobs.finish(job.id, "failed", result={}, error="trainer exited with code 1")
    got = jobs.get(job.id)
    assert got is not None and got.progress == {"epoch": 2, "epochs": 2}
    assert (got.status, got.error, got.result) == ("failed", "trainer exited with code 1", {})
    assert got.finished_at is not None
    assert jobs.get(999) is None
    jobs.set_progress(999, {"epoch": 1})  # a job that is not there: nothing to record, no error
    jobs.finish(999, "failed", result={}, error="")


def test_every_busy_job_is_ended_at_once(jobs: TrainingJobRepository) -> None:
    done, _ = jobs.add_unless(BUSY, status="running", params={}, actor="eng")
    jobs.finish(done.id, "succeeded", result={"ok": True}, error="")
    running, _ = jobs.add_unless(BUSY, status="running", params={}, actor="eng")
    assert jobs.finish_all(BUSY, "failed", error="interrupted") == 1
    ended = jobs.get(running.id)
    assert ended is not None and (ended.status, ended.error) == ("failed", "interrupted")
    assert ended.finished_at is not None
    kept = jobs.get(done.id)
    assert kept is not None and (kept.status, kept.result, kept.error) == ("succeeded", {"ok": True}, "")
    assert jobs.finish_all(BUSY, "failed", error="interrupted") == 0
