"""``qcline inspect`` while the database fails now and then: the line pauses and retries, every frame is recorded,
no unit verdict is written without its frames, and a frame counts as done only once it is committed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from api.cli.inspect import run_inspection
from inspection.errors import StoreError
from inspection.profiles import load_order_book
from inspection.settings import load_settings
from inspection.store.repository import ResultsStore
from tests.builders import Candidate, solid_image, tiny_package, write_image

ORDERS = """
profiles:
  gloss: {name: gloss, classes: {scratch: {confidence: 0.5, critical: true}}, required_views: [top, side]}
orders:
  - {id: O-GLOSS, profile: gloss}
"""
UNITS = 12


class Flaky:
    """Makes a method of ``ResultsStore`` fail like a dropped connection on its first ``failures`` calls."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real, self.failures, self.calls = real, failures, 0

    def __call__(self, store: ResultsStore, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("server closed the connection unexpectedly")
        return self.real(store, *args, **kwargs)


def test_a_line_survives_a_flaky_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(data_dir=tmp_path / "data", model_path=tiny_package(
        tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent")), batch_size=4)
    (tmp_path / "orders.yaml").write_text(ORDERS)
    settings.data_dir.mkdir(parents=True)
    with ResultsStore.open(settings.resolved_database_url, settings.evidence_dir) as store:
        store.import_order_book(load_order_book(tmp_path / "orders.yaml"))
    rows = ["source,unit_id,order_id,camera_id,captured_at"]
    for n in range(UNITS):
        for k, camera in enumerate(("top", "side")):
            name = f"f{n}-{camera}.png"
            image = solid_image(255 if n % 3 == 0 and camera == "top" else 0, 64, 48)
            image[0, 0] = (n, k, 7)  # a distinct frame each
            write_image(tmp_path / "frames" / name, image)
            rows.append(f"frames/{name},U{n},O-GLOSS,{camera},2026-11-26T08:{n:02d}:{k:02d}Z")
    (tmp_path / "line.csv").write_text("\n".join(rows) + "\n")
    commits = Flaky(ResultsStore.commit_group, 3)
    histories = Flaky(ResultsStore.unit_histories, 2)
    monkeypatch.setattr(ResultsStore, "commit_group", lambda self, *a, **k: commits(self, *a, **k))
    monkeypatch.setattr(ResultsStore, "unit_histories", lambda self, *a, **k: histories(self, *a, **k))
    verdicts = run_inspection(settings, manifest=tmp_path / "line.csv", source=None, unit=None, order=None,
                              camera=None, close_units=None, as_json=True)
    assert commits.calls > 3 and histories.calls > 2  # both failed, and the line went on
    assert sorted(v.unit_id for v in verdicts) == sorted(f"U{n}" for n in range(UNITS))
    with ResultsStore.open(settings.resolved_database_url, settings.evidence_dir) as store:
        for n in range(UNITS):
            record = store.unit_record(f"U{n}").to_json()
            assert len(record["frames"]) == 2 and record["complete"]
            assert record["verdict"] == ("FAIL" if n % 3 == 0 else "PASS")


def test_station_status_on_an_embedded_station(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from api.cli.main import app

    runner = CliRunner()
    missing = runner.invoke(app, ["station", "status", "--json", "--data-dir", str(tmp_path / "none")])
    assert missing.exit_code == 0 and '"status": "down"' in missing.stdout
    assert not (tmp_path / "none").exists()  # asking never creates a database
    (tmp_path / "d").mkdir()
    ResultsStore.open(f"sqlite:///{tmp_path / 'd' / 'qcline.db'}", tmp_path / "d" / "frames").close()
    shown = runner.invoke(app, ["station", "status", "--data-dir", str(tmp_path / "d")])
    assert shown.exit_code == 0, shown.output
    assert "station: ok" in shown.stdout and "reachable" in shown.stdout and "outbox: none" in shown.stdout
