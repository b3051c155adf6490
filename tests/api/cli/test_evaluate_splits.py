"""``qcline datasets import --test-fraction``, ``qcline evaluate --split test [--unseen-only]``,
``qcline models measure`` / ``table``: the honest protocol from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from api.cli.main import app
from tests.builders import Candidate, tiny_package
from tests.models.test_evaluation_splits import white_voc

pytest.importorskip("matplotlib", reason="qcline evaluate draws its plots with matplotlib")

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def said(result: Any) -> str:
    """What a command told the user: its output, or the QCError the entry point turns into one line."""
    return f"{result.output} {result.exception or ''}"


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    root = white_voc(tmp_path / "voc", 20)
    data = ["--data-dir", str(tmp_path / "data")]
    two = invoke("datasets", "import", str(root), "--format", "voc", "--val-fraction", "0.25", "--json", *data)
    three = invoke("datasets", "import", str(root), "--format", "voc", "--val-fraction", "0.25", "--test-fraction",
                   "0.25", "--json", *data)
    assert two.exit_code == 0 and three.exit_code == 0, two.output + three.output
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 20, 20, 0, 0.9)])
    return {"data": data, "two": json.loads(two.stdout), "three": json.loads(three.stdout), "package": package,
            "tmp": tmp_path}


def test_import_reports_the_test_split_and_its_rule(setup: dict[str, Any]) -> None:
    three = setup["three"]
    assert (three["train"], three["val"], three["test"]) == (10, 5, 5)
    assert three["split_rule"] == {"val_fraction": 0.25, "test_fraction": 0.25, "seed": "qcline"}
    assert "test" not in setup["two"] and "split_rule" not in setup["two"]
    listed = invoke("datasets", "list", *setup["data"])
    assert "test      5" in listed.stdout


def test_evaluate_on_test_reads_the_test_split(setup: dict[str, Any]) -> None:
    result = invoke("evaluate", str(setup["package"]), "--dataset", setup["three"]["snapshot"], "--split", "test",
                    "--engine", "onnxruntime", "--json", *setup["data"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["split"] == "test" and answer["images"] == 5 and answer["seen_in_training"] is None
    refused = invoke("evaluate", str(setup["package"]), "--dataset", setup["three"]["snapshot"], "--split",
                     "holdout", *setup["data"])
    assert refused.exit_code != 0 and "--split must be one of train, val, test" in said(refused)


def test_evaluate_and_measure_with_tta_without_editing_the_package(setup: dict[str, Any]) -> None:
    package, snapshot = setup["package"], setup["three"]["snapshot"]
    written = (package / "metadata.json").read_text()
    common = ["--dataset", snapshot, "--split", "test", "--engine", "onnxruntime", "--json", *setup["data"]]
    plain = json.loads(invoke("evaluate", str(package), *common).stdout)
    augmented = invoke("evaluate", str(package), "--tta", "hflip,vflip", *common)
    assert augmented.exit_code == 0, augmented.output
    answer = json.loads(augmented.stdout)
    assert plain["tta"] is None and answer["tta"] == {"flips": ["hflip", "vflip"], "fusion": "wbf", "iou": 0.55}
    assert answer["images"] == 5 and answer["confusion_matrix"].endswith("-tta-hflip-vflip/confusion_matrix.png")
    refused = invoke("evaluate", str(package), "--tta", "hflip,rot90", *common)
    assert refused.exit_code == 1 and "unknown flip 'rot90'" in said(refused)
    record = setup["tmp"] / "records" / "tta.json"
    measured = invoke("models", "measure", str(package), "--dataset", snapshot, "--record", str(record), "--tta",
                      "hflip", *setup["data"])
    assert measured.exit_code == 0, measured.output
    assert "TTA hflip wbf@0.55" in measured.stdout
    assert json.loads(record.read_text())["config"]["tta"] == "hflip wbf@0.55"
    assert (package / "metadata.json").read_text() == written


def test_evaluate_says_what_the_model_trained_on_and_can_leave_it_out(setup: dict[str, Any]) -> None:
    package = setup["package"]
    meta = json.loads((package / "metadata.json").read_text())
    meta["dataset"] = {"snapshot": setup["two"]["snapshot"]}  # "trained" on the two-way split
    (package / "metadata.json").write_text(json.dumps(meta))
    common = ["--dataset", setup["three"]["snapshot"], "--engine", "onnxruntime", "--json", *setup["data"]]
    on_val = json.loads(invoke("evaluate", str(package), "--split", "val", *common).stdout)
    assert on_val["seen_in_training"] == {"train": 5, "val": 0, "test": 0, "absent": 0}  # new val = old train
    on_test = json.loads(invoke("evaluate", str(package), "--split", "test", *common).stdout)
    assert on_test["seen_in_training"] == {"train": 0, "val": 5, "test": 0, "absent": 0}
    unseen = invoke("evaluate", str(package), "--split", "val", "--unseen-only", *common)
    assert unseen.exit_code != 0  # every val image was trained on: nothing is left to evaluate
    assert "outside the excluded images" in said(unseen)
    test_unseen = json.loads(invoke("evaluate", str(package), "--split", "test", "--unseen-only", *common).stdout)
    assert test_unseen["images"] == 5 and test_unseen["excluded_images"] == 0


def test_unseen_only_needs_the_models_training_snapshot(setup: dict[str, Any]) -> None:
    result = invoke("evaluate", str(setup["package"]), "--dataset", setup["three"]["snapshot"], "--split", "test",
                    "--unseen-only", *setup["data"])
    assert result.exit_code != 0 and "training snapshot" in said(result)


def test_measure_then_table_renders_only_measured_rows(setup: dict[str, Any]) -> None:
    records = setup["tmp"] / "records"
    measured = invoke("models", "measure", str(setup["package"]), "--dataset", setup["three"]["snapshot"],
                      "--record", str(records / "tiny.json"), "--label", "tiny", *setup["data"])
    assert measured.exit_code == 0, measured.output
    table = invoke("models", "table", str(records / "tiny.json"))
    assert table.exit_code == 0 and "| tiny |" in table.stdout
    (records / "typed.json").write_text(json.dumps({"label": "wishful", "split": "test", "test": {"map50": 0.99}}))
    mixed = invoke("models", "table", str(records / "tiny.json"), str(records / "typed.json"))
    assert mixed.exit_code == 1 and "| tiny |" in mixed.stdout and "wishful" not in mixed.stdout
    assert "refused" in mixed.output and "typed.json" in mixed.output
    on_two_way = invoke("models", "measure", str(setup["package"]), "--dataset", setup["two"]["snapshot"],
                        "--record", str(records / "two.json"), *setup["data"])
    assert on_two_way.exit_code != 0 and "no test split" in said(on_two_way)
