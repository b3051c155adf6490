"""The ``qcline`` CLI end to end, as a user runs it: a real subprocess, a real database, a tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.builders import Candidate, solid_image, tiny_package, write_image

ORDERS = """
profiles:
  gloss:
    name: gloss
    classes: {scratch: {confidence: 0.5, critical: true}}
    required_views: [top, side]
  rustic:
    name: rustic
    classes: {scratch: {ignore: true}}
    required_views: [top]
orders:
  - {id: O-GLOSS, customer_ref: "Smith <b>kitchen</b>", product: door, due_date: 2026-12-01, profile: gloss}
  - {id: O-RUSTIC, customer_ref: Jones, product: oak door, profile: rustic}
"""


def run(args: list[str], env: dict[str, str], check_code: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    if check_code is not None:
        assert done.returncode == check_code, (done.stdout, done.stderr)
    return done


@pytest.fixture
def line(db_url: str, tmp_path: Path) -> dict[str, object]:
    """A line on each backend (``db_url``: SQLite, and a wiped PostgreSQL with no other test's champion)."""
    env = {**os.environ, "QC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(Path(__file__).parents[3]),
           "QC_DATABASE_URL": db_url}
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent"))
    env["QC_MODEL_PATH"] = str(package)
    frames = tmp_path / "frames"
    write_image(frames / "white.png", solid_image(255, 128, 96))
    write_image(frames / "black.png", solid_image(0, 128, 96))
    _, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))
    (frames / "truncated.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])
    (tmp_path / "orders.yaml").write_text(ORDERS)
    manifest = tmp_path / "line.csv"
    manifest.write_text(
        "source,unit_id,order_id,camera_id,captured_at\n"
        "frames/white.png,U1,O-GLOSS,top,2026-11-26T08:00:00Z\n"
        "frames/black.png,U1,O-GLOSS,side,2026-11-26T08:00:01Z\n"
        "frames/white.png,U2,O-RUSTIC,top,2026-11-26T08:00:02Z\n"
        "frames/black.png,U3,O-GLOSS,top,2026-11-26T08:00:03Z\n"
        "frames/truncated.jpg,U3,O-GLOSS,side,2026-11-26T08:00:04Z\n"
        "frames/missing.png,U4,O-RUSTIC,top,2026-11-26T08:00:05Z\n"
    )
    return {"env": env, "tmp": tmp_path, "manifest": manifest, "package": package}


@pytest.mark.slow
def test_replay_a_line_then_read_units_and_report(line: dict) -> None:
    env, tmp = line["env"], line["tmp"]
    imported = json.loads(run(["orders", "import", str(tmp / "orders.yaml"), "--json"], env).stdout)
    assert imported["created"] == 2
    again = json.loads(run(["orders", "import", str(tmp / "orders.yaml"), "--json"], env).stdout)
    assert again["created"] == 0 and again["unchanged"] == 2

    first = json.loads(run(["inspect", str(line["manifest"]), "--json"], env).stdout)
    verdicts = {u["unit_id"]: u for u in first["units"]}
    assert verdicts["U1"]["verdict"] == "FAIL"         # gloss: a scratch is critical
    assert verdicts["U2"]["verdict"] == "PASS"         # rustic: the same scratch is ignored
    assert verdicts["U3"]["verdict"] == "REVIEW"       # side view unreadable: a person must look
    assert verdicts["U3"]["missing_views"] == ["side"]
    assert verdicts["U4"]["verdict"] == "REVIEW" and verdicts["U4"]["missing_views"] == ["top"]
    assert first["frames"] == 4 and first["failed_frames"] == 2

    unit = json.loads(run(["units", "show", "U1", "--json"], env).stdout)
    assert unit["verdict"] == "FAIL" and len(unit["frames"]) == 2
    meta = json.loads((line["package"] / "metadata.json").read_text())
    assert unit["model_sha256s"] == [meta["sha256"]]
    top = next(f for f in unit["frames"] if f["camera_id"] == "top")
    assert top["findings"][0]["class"] == "scratch" and Path(top["evidence_path"]).is_file()
    unreadable = json.loads(run(["units", "show", "U3", "--json"], env).stdout)
    assert any("truncated" in f["error"] for f in unreadable["frames"])

    replay = json.loads(run(["inspect", str(line["manifest"]), "--json"], env).stdout)
    assert replay["frames"] == 0 and replay["duplicate_frames"] == 4
    report = json.loads(run(["report", "--json"], env).stdout)
    per_order = {r["order_id"]: r for r in report["per_order"]}
    assert per_order["O-GLOSS"]["FAIL"] == 1 and per_order["O-GLOSS"]["REVIEW"] == 1
    assert per_order["O-RUSTIC"]["units"] == 2
    assert len(json.loads(run(["units", "show", "U1", "--json"], env).stdout)["frames"]) == 2


@pytest.mark.slow
def test_inspect_a_source_for_one_unit_then_close_it(line: dict) -> None:
    env, tmp = line["env"], line["tmp"]
    run(["orders", "import", str(tmp / "orders.yaml")], env)
    run(["inspect", "--source", str(tmp / "frames" / "black.png"), "--unit", "U9", "--order", "O-GLOSS",
         "--camera", "top", "--json"], env)
    assert json.loads(run(["units", "show", "U9", "--json"], env).stdout)["verdict"] is None  # side missing
    closed = json.loads(run(["units", "close", "U9", "--json"], env).stdout)
    assert closed["verdict"] == "REVIEW" and closed["missing_views"] == ["side"]
    shown = json.loads(run(["units", "show", "U9", "--json"], env).stdout)
    assert (shown["status"], shown["verdict"], shown["missing_views"]) == ("closed", "REVIEW", ["side"])
    audit = json.loads(run(["audit", "verify", "--json"], env).stdout)  # the close is sealed in the chain
    assert audit["ok"] and audit["unsealed"] == [] and audit["units_checked"] >= 1


def test_detect_prints_one_json_line_per_image(line: dict) -> None:
    frames = line["tmp"] / "frames"
    done = run(["detect", str(frames / "white.png"), str(frames / "black.png"), "--json"], line["env"])
    rows = [json.loads(x) for x in done.stdout.splitlines()]
    assert [Path(r["image"]).name for r in rows] == ["white.png", "black.png"]
    [hit] = rows[0]["detections"]
    assert hit["class"] == "scratch" and 0.7 < hit["confidence"] < 0.9  # gray letterbox bars dim it
    # 128x96 frame in a 64 px input: gain 0.5, 8 px padding on top; (32, 32, 16x16) -> x 48..80, y 32..64
    assert hit["box"] == [48.0, 32.0, 80.0, 64.0]
    assert rows[1]["detections"] == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["units", "show", "NOPE"], 3, "has no record"),
        (["units", "close", "NOPE"], 3, "has no record"),
        (["inspect", "{tmp}/nope.csv"], 1, "nope.csv"),
        (["inspect"], 1, "either a MANIFEST or --source"),
        (["inspect", "--source", "{tmp}/frames", "--unit", "U1"], 1, "needs --unit, --order and --camera"),
        (["detect", "{tmp}/frames/truncated.jpg", "--json"], 1, "could not be read"),
        (["detect", "{tmp}/frames/white.png", "--model", "{tmp}"], 1, "model package"),
        (["orders", "import", "{tmp}/bad.yaml"], 1, "less than or equal to 1"),
        (["orders", "import", "{tmp}/nope.yaml"], 1, "cannot read orders file"),
    ],
    ids=["unknown-unit", "close-unknown-unit", "missing-manifest", "nothing-to-inspect", "source-without-ids",
         "truncated-image",
         "not-a-model", "bad-profile", "missing-orders-file"],
)
def test_bad_input_gets_a_message_and_an_exit_code(line: dict, args: list[str], code: int, message: str) -> None:
    tmp = line["tmp"]
    (tmp / "bad.yaml").write_text("profiles: {p: {name: p, default: {confidence: 7}}}\norders: []\n")
    done = run([a.format(tmp=tmp) for a in args], line["env"], check_code=code)
    assert message in done.stderr.replace("\n", " "), done.stderr


@pytest.mark.slow
def test_unknown_orders_in_a_manifest_are_reported_and_the_rest_is_kept(line: dict) -> None:
    env, tmp = line["env"], line["tmp"]
    run(["orders", "import", str(tmp / "orders.yaml")], env)
    manifest = tmp / "mixed.jsonl"
    manifest.write_text(
        json.dumps({"source": "frames/white.png", "unit_id": "U7", "order_id": "O-NOPE", "camera_id": "top"}) + "\n"
        + json.dumps({"source": "frames/black.png", "unit_id": "U8", "order_id": "O-RUSTIC", "camera_id": "top"})
        + "\n")
    done = run(["inspect", str(manifest)], env, check_code=1)
    assert "O-NOPE" in done.stderr and "rejected" in done.stderr
    assert json.loads(run(["units", "show", "U8", "--json"], env).stdout)["verdict"] == "PASS"


@pytest.mark.slow
def test_demo_runs_on_the_default_model(tmp_path: Path) -> None:
    env = {**os.environ, "QC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(Path(__file__).parents[3])}
    done = run(["demo"], env)
    assert "U-1001-A" in done.stdout and "units:" in done.stdout
    report = json.loads(run(["report", "--json"], env).stdout)
    assert sum(r["units"] for r in report["per_order"]) == 11
    assert sum(r["open"] for r in report["per_order"]) == 0
