"""``qcline demo`` with conformance orders, ``qcline calibrate``, and the findings a count rule failed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from inspection.conformance.synthetic import checkerboard, panel
from tests.api.cli.test_main import run
from tests.builders import write_image

ROOT = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "QC_DATA_DIR": str(tmp / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("QC_DATABASE_URL", None)
    done = run(["demo"], env)
    assert "conformance" in done.stdout and "U-1006-A" in done.stdout
    return env


def _unit(env: dict[str, str], unit: str) -> dict[str, Any]:
    return json.loads(run(["units", "show", unit, "--json"], env).stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_demo_orders_that_do_not_match_fail_with_their_measured_values(demo_env: dict[str, str]) -> None:
    ok, colour, size = (_unit(demo_env, u) for u in ("U-1005-A", "U-1006-A", "U-1007-A"))
    assert ok["verdict"] == "PASS"
    assert {c["kind"]: c["outcome"] for c in ok["frames"][0]["conformance"]} == {"colour": "PASS",
                                                                                "dimensions": "PASS"}
    assert colour["verdict"] == "FAIL" and any("RAL 5010" in r for r in colour["reasons"])
    measured = {c["kind"]: c for c in colour["frames"][0]["conformance"]}
    assert measured["colour"]["deviation"] > 10 and measured["colour"]["values"]["expected_b"] < -20
    assert size["verdict"] == "FAIL"
    dims = {c["kind"]: c for c in size["frames"][0]["conformance"]}["dimensions"]
    assert dims["outcome"] == "FAIL" and abs(dims["values"]["short_mm"] - 760) < 1.0
    assert dims["expected"] == "1000 x 800 mm"


@pytest.mark.slow
def test_demo_findings_that_failed_a_count_rule_say_fail(demo_env: dict[str, str]) -> None:
    record = _unit(demo_env, "U-1004-B")
    assert record["verdict"] == "FAIL"
    findings = [f for frame in record["frames"] for f in frame["findings"]]
    assert findings and all(f["outcome"] == "FAIL" for f in findings)
    assert any("on the frame, 0 tolerated" in f["rule"] for f in findings)


def test_calibrate_scale_and_colour_from_images(tmp_path: Path) -> None:
    env = {**os.environ, "QC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    board, white = tmp_path / "board.png", tmp_path / "white.png"
    write_image(board, checkerboard((7, 5), 25))
    write_image(white, panel((400, 300), (0, 0), (0, 0, 0), cast=(1.1, 1.0, 0.8), belt_bgr=(120, 120, 120)))
    scale = json.loads(run(["calibrate", "scale", str(board), "--camera", "top", "--checkerboard", "7x5",
                            "--square-mm", "20", "--json"], env).stdout)
    assert abs(scale["values"]["px_per_mm"] - 1.25) < 0.005
    colour = json.loads(run(["calibrate", "colour", str(white), "--camera", "top", "--patch",
                             "0.03,0.04,0.09,0.09", "--json"], env).stdout)
    assert colour["values"]["gains"][2] > colour["values"]["gains"][0]  # undoes the warm cast
    shown = json.loads(run(["calibrate", "show", "--json"], env).stdout)
    assert {r["kind"] for r in shown} == {"scale", "colour"}


@pytest.mark.parametrize(("args", "message"), [
    (["scale", "{board}", "--camera", "top"], "either --checkerboard"),
    (["scale", "{board}", "--camera", "top", "--checkerboard", "7x5"], "--square-mm"),
    (["scale", "{blank}", "--camera", "top", "--checkerboard", "7x5", "--square-mm", "20"], "no checkerboard"),
    (["colour", "{board}", "--camera", "top", "--patch", "0.5,0.5,0.1"], "four fractions"),
    (["colour", "{missing}", "--camera", "top", "--patch", "0,0,1,1"], "cannot read"),
])
def test_calibrate_refuses_bad_input_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    env = {**os.environ, "QC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    write_image(tmp_path / "board.png", checkerboard((7, 5), 25))
    write_image(tmp_path / "blank.png", panel((100, 100), (0, 0), (0, 0, 0), tile=False))
    paths = {"board": str(tmp_path / "board.png"), "blank": str(tmp_path / "blank.png"),
             "missing": str(tmp_path / "nope.png")}
    done = run(["calibrate", *[a.format(**paths) for a in args]], env, check_code=1)
    assert message in done.stderr


@pytest.mark.slow
def test_audit_verify_on_the_demo_then_after_an_edit_behind_the_stores_back(demo_env: dict[str, str]) -> None:
    import sqlite3

    done = run(["audit", "verify"], demo_env)
    assert "chain intact" in done.stdout
    db = Path(demo_env["QC_DATA_DIR"]) / "qcline.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE conformance_results SET outcome = 'PASS' WHERE outcome = 'FAIL'")
    broken = run(["audit", "verify", "--json"], demo_env, check_code=2)
    report = json.loads(broken.stdout)
    assert not report["ok"] and "conformance" in report["first_broken"]
    assert run(["audit", "verify", "--order", "ORD-24-1005"], demo_env).returncode == 0  # its rows are untouched
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE conformance_results SET outcome = 'FAIL' WHERE outcome = 'PASS' AND kind = 'colour' "
                     "AND reason LIKE '%RAL 5010%'")
        conn.execute("UPDATE conformance_results SET outcome = 'FAIL' WHERE kind = 'dimensions' "
                     "AND reason LIKE '%760%'")
    assert "chain intact" in run(["audit", "verify"], demo_env).stdout  # restored: the hashes agree again


@pytest.mark.slow
def test_report_order_writes_the_certificate(demo_env: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "cert" / "ORD-24-1006.html"
    done = run(["report", "order", "ORD-24-1006", "--html", str(target)], demo_env)
    assert "written to" in done.stdout
    page = target.read_text()
    assert "U-1006-A" in page and "RAL 5010" in page and "ΔE00" in page and "Chain link: #" in page
    assert "data:image/png;base64," in page  # the FAIL frame's evidence is embedded, boxes drawn over it
    assert run(["report", "order", "NOPE", "--html", str(target)], demo_env, check_code=3)
    assert "per order" in run(["report"], demo_env).stdout  # the shift report is still `qcline report`


def test_calibrate_label_checks_the_settings_on_a_test_frame(tmp_path: Path) -> None:
    import numpy as np

    from inspection.identity import label_image

    env = {**os.environ, "QC_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    frame = np.full((300, 400, 3), 120, np.uint8)
    label = label_image("ORD-9/U-9", "DataMatrix", scale=3)
    frame[20:20 + label.shape[0], 20:20 + label.shape[1]] = label
    write_image(tmp_path / "label.png", frame)
    args = ["calibrate", "label", "--camera", "top", "--formats", "DataMatrix", "--pattern",
            r"(?P<order>ORD-\d+)/(?P<unit>U-\d+)", "--test-image", str(tmp_path / "label.png")]
    done = run(args, env)
    assert "unit U-9, order ORD-9" in done.stdout
    missed = run([*args[:-1], str(tmp_path / "label.png"), "--roi", "0.5,0.5,1,1"], env, check_code=1)
    assert "no label matching" in missed.stderr
    assert "needs a named group" in run(["calibrate", "label", "--camera", "top", "--pattern", "U.+"], env,
                                       check_code=1).stderr


@pytest.mark.slow
def test_report_writes_analytics_plots_and_csv(demo_env: dict[str, str], tmp_path: Path) -> None:
    import csv

    done = run(["report", "--plot", str(tmp_path / "plots"), "--csv", str(tmp_path / "csv"), "--bucket", "hour"],
               demo_env)
    assert "first-pass yield" in done.stdout
    assert (tmp_path / "plots" / "pareto.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "plots" / "p_chart_camera_panel.png").stat().st_size > 1000
    with (tmp_path / "csv" / "pareto.csv").open() as handle:
        categories = {row["category"] for row in csv.DictReader(handle)}
    assert {"conformance:colour", "conformance:dimensions"} <= categories
    data = json.loads(run(["report", "--since", "2026-11-26T08:02:30", "--json", "--csv", str(tmp_path / "w")],
                          demo_env).stdout)
    assert data["frames"] == 3 and data["units"] == 3  # the painted doors only
    assert run(["report", "--since", "2026-11-27", "--until", "2026-11-26", "--csv", str(tmp_path)], demo_env,
               check_code=1)
