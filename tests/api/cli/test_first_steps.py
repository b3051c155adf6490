"""The CLI as a new user meets it (issue 13): readable tables, a data folder found from anywhere, reads that
never create an empty database, one-line errors for a base install and a dead camera, the first champion.

Each test is a real ``qcline`` subprocess on a real SQLite database with a tiny model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests.builders import Candidate, solid_image, tiny_package, write_image

pytestmark = pytest.mark.slow  # real qcline subprocesses, a few seconds each
REPO = Path(__file__).parents[3]
ORDERS = """
profiles:
  gloss:
    name: gloss
    classes: {scratch: {confidence: 0.5, critical: true}}
    required_views: [top]
  rustic:
    name: rustic
    classes: {scratch: {ignore: true}}
    required_views: [top]
orders:
  - {id: O-GLOSS, customer_ref: Smith, product: door, due_date: 2026-12-01, profile: gloss}
  - {id: O-RUSTIC, customer_ref: Jones, product: oak door, profile: rustic}
"""
# Local time is UTC+1 in Europe/Berlin in November: 05:30Z is 06:30 local (early shift), 14:30Z is 15:30.
MANIFEST = ("source,unit_id,order_id,camera_id,captured_at\n"
            "frames/white.png,U1,O-GLOSS,top,2026-11-26T05:30:00Z\n"
            "frames/white.png,U2,O-RUSTIC,top,2026-11-26T05:31:00Z\n"
            "frames/white.png,U3,O-GLOSS,top,2026-11-26T14:30:00Z\n"
            "frames/black.png,U4,O-GLOSS,side,2026-11-27T05:30:00Z\n")


def run(args: list[str], env: dict[str, str], code: int | None = 0, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False, cwd=cwd)
    assert "Traceback" not in done.stderr, done.stderr
    if code is not None:
        assert done.returncode == code, (done.stdout, done.stderr)
    return done


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QC_")}
    env.update(PYTHONPATH=str(REPO), XDG_DATA_HOME=str(tmp_path / "xdg"), COLUMNS="200", QC_TIMEZONE="Europe/Berlin")
    return env


@pytest.fixture(scope="module")
def shift(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One recorded shift: 4 units, U1 FAIL then scrapped, U3 FAIL then released."""
    tmp = tmp_path_factory.mktemp("shift")
    env = {**base_env(tmp), "QC_DATA_DIR": str(tmp / "data")}
    env["QC_MODEL_PATH"] = str(tiny_package(tmp / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)],
                                            classes=("scratch", "dent")))
    write_image(tmp / "frames" / "white.png", solid_image(255, 128, 96))
    write_image(tmp / "frames" / "black.png", solid_image(0, 128, 96))
    (tmp / "orders.yaml").write_text(ORDERS)
    (tmp / "line.csv").write_text(MANIFEST)
    run(["orders", "import", str(tmp / "orders.yaml")], env)
    run(["inspect", str(tmp / "line.csv")], env)
    run(["review", "dispose", "U1", "scrap", "--actor", "ann"], env)
    run(["review", "dispose", "U4", "release", "--actor", "ann", "--note", "side view checked by hand"], env)
    return {"env": env, "tmp": tmp}


# -- units show -------------------------------------------------------------------------------------------
def test_units_show_is_a_table_with_the_reason_and_the_disposition(shift: dict) -> None:
    done = run(["units", "show", "U1"], shift["env"])
    assert not done.stdout.lstrip().startswith("{"), done.stdout  # not JSON
    text = done.stdout
    assert "U1" in text and "FAIL" in text and "O-GLOSS" in text and "Smith" in text
    assert "scrap by ann" in text
    assert "critical" in text or "scratch" in text  # why it failed
    assert "CET" in text  # times in QC_TIMEZONE, with the zone named
    record = json.loads(run(["units", "show", "U1", "--json"], shift["env"]).stdout)
    assert [d["disposition"] for d in record["dispositions"]] == ["scrap"]
    assert record["frames"][0]["reviews"] == []


# -- report -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "units", "gloss"),
    [
        ([], 4, {"units": 3, "FAIL": 2, "REVIEW": 1, "scrap": 1, "release": 1, "awaiting_disposition": 1}),
        (["--since", "2026-11-26", "--until", "2026-11-27"], 3, {"units": 2, "FAIL": 2, "scrap": 1}),
        (["--shift", "06-14"], 3, {"units": 2, "FAIL": 1, "REVIEW": 1}),     # local 06:30, not 15:30
        (["--shift", "14-22", "--since", "2026-11-26"], 1, {"units": 1, "FAIL": 1, "awaiting_disposition": 1}),
        (["--camera", "side"], 1, {"units": 1, "REVIEW": 1, "release": 1}),
        (["--station", "top", "--until", "2026-11-26T07:00"], 2, {"units": 1, "FAIL": 1, "scrap": 1}),
    ],
    ids=["everything", "one-day", "early-shift", "late-shift", "one-camera", "station-alias-and-time"],
)
def test_report_filters_count_dispositions_and_yield(shift: dict, args: list[str], units: int,
                                                     gloss: dict[str, int]) -> None:
    data = json.loads(run(["report", *args, "--json"], shift["env"]).stdout)
    assert data["total"]["units"] == units
    rows = {r["order_id"]: r for r in data["per_order"]}
    for key, value in gloss.items():
        assert rows["O-GLOSS"][key] == value, (key, rows["O-GLOSS"])


def test_report_yield_and_table(shift: dict) -> None:
    total = json.loads(run(["report", "--json"], shift["env"]).stdout)["total"]
    assert total["first_pass_yield"] == 0.25           # 1 PASS (U2) of 4 judged
    assert total["final_yield"] == 0.5                 # U2 shipped as it was, U4 released; U1 scrapped, U3 open
    text = run(["report", "--shift", "06-14"], shift["env"]).stdout
    assert "first-pass yield" in text and "scrap" in text and "shift 06-14 (Europe/Berlin)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [(["report", "--shift", "6pm"], "START-END"), (["report", "--since", "yesterday"], "--since must be a date"),
     (["report", "--since", "2026-11-27", "--until", "2026-11-26"], "before --until")],
    ids=["bad-shift", "bad-date", "empty-window"])
def test_report_bad_filters_are_one_line_errors(shift: dict, args: list[str], message: str) -> None:
    done = run(args, shift["env"], code=1)
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- the data folder ------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["units", "show", "U1"], ["report"], ["orders", "list"], ["review", "queue"],
                                  ["units", "close", "U1"], ["keys", "list"], ["review", "history", "1"]],
                         ids=["units-show", "report", "orders-list", "review-queue", "units-close", "keys-list",
                              "review-history"])
def test_reading_an_empty_data_folder_says_where_it_looked(tmp_path: Path, args: list[str]) -> None:
    env = {**base_env(tmp_path), "QC_DATA_DIR": str(tmp_path / "nowhere")}
    done = run(args, env, code=1)
    assert "no qcline database at" in done.stderr and str(tmp_path / "nowhere") in done.stderr
    assert "QC_DATA_DIR" in done.stderr
    assert not (tmp_path / "nowhere" / "qcline.db").exists()


def test_the_data_folder_is_the_same_from_any_folder(tmp_path: Path) -> None:
    env = base_env(tmp_path)  # no QC_DATA_DIR: the user data dir under XDG_DATA_HOME
    (tmp_path / "orders.yaml").write_text(ORDERS)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    run(["orders", "import", str(tmp_path / "orders.yaml")], env, cwd=tmp_path / "a")
    listed = json.loads(run(["orders", "list", "--json"], env, cwd=tmp_path / "b").stdout)
    assert {o["id"] for o in listed} == {"O-GLOSS", "O-RUSTIC"}
    assert (tmp_path / "xdg" / "qcline" / "qcline.db").is_file()
    assert not (tmp_path / "a" / "data").exists() and not (tmp_path / "b" / "data").exists()
    helptext = run(["--help"], env).stdout
    assert "QC_DATA_DIR" in helptext and str(tmp_path / "xdg" / "qcline") in helptext.replace("\n", "")


# -- flags ----------------------------------------------------------------------------------------------
def test_version_and_logging_flags(shift: dict) -> None:
    assert re.fullmatch(r"qcline \S+\n", run(["--version"], shift["env"]).stdout)
    verbose = run(["-v", "orders", "list"], shift["env"]).stderr
    quiet = run(["-q", "inspect", str(shift["tmp"] / "line.csv")], shift["env"]).stderr
    assert "INFO" in verbose
    assert "INFO" not in quiet and "WARNING" not in quiet


def test_model_precedence_reads_the_same_everywhere(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    order = re.compile(r"--model.*QC_MODEL_PATH.*champion.*bundled", re.S)
    for args in (["--help"], ["inspect", "--help"]):
        text = re.sub(r"[\s│]+", " ", run(args, env).stdout)
        assert order.search(text), (args, text)


# -- base install ---------------------------------------------------------------------------------------
BLOCK_TRAIN_EXTRA = '''
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "ultralytics", "matplotlib"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block())
'''


@pytest.mark.parametrize("args", [["train", "--dataset", "abc"], ["evaluate", "x", "--dataset", "abc"],
                                  ["models", "build-default", "--data", "."]],
                         ids=["train", "evaluate", "build-default"])
def test_training_on_a_base_install_says_how_to_install_the_extra(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "block" / "sitecustomize.py").parent.mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCK_TRAIN_EXTRA)  # torch & co. absent, as on a station
    env = {**base_env(tmp_path), "QC_DATA_DIR": str(tmp_path / "data"),
           "PYTHONPATH": f"{tmp_path / 'block'}{os.pathsep}{REPO}"}
    done = run(args, env, code=1)
    assert "pip install -e '.[train]'" in done.stderr and "make train-deps" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- a source that never delivers -------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["rtsp://127.0.0.1:9/none", "97"], ids=["rtsp-closed-port", "no-usb-camera"])
def test_a_dead_camera_is_reported_and_the_command_stops(shift: dict, source: str) -> None:
    done = run(["inspect", "--source", source, "--unit", "U9", "--order", "O-GLOSS", "--camera", "top",
                "--give-up-s", "1"], shift["env"], code=1, timeout=60)
    assert "waiting for frames from" in done.stderr and "giving up after 1 s" in done.stderr
    assert "cannot open" in done.stderr                    # each failed attempt is visible
    assert "error: no frame from" in done.stderr


# -- a fresh install has a champion ----------------------------------------------------------------------
def test_a_fresh_registry_starts_with_the_bundled_champion_once(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "QC_DATA_DIR": str(tmp_path / "data")}
    first = json.loads(run(["models", "list", "--json"], env).stdout)
    again = json.loads(run(["models", "list", "--json"], env).stdout)
    assert [m["stage"] for m in first] == ["champion"] and first == again
    meta = json.loads((REPO / "models" / "neu-det-yolov8n" / "metadata.json").read_text())
    assert first[0]["sha256"] == meta["sha256"]
    audit = json.loads(run(["models", "audit", "--json"], env).stdout)
    assert len(audit) == 1 and "bundled default" in audit[0]["reason"]


# -- first steps: docs, packaging ---------------------------------------------------------------------------
def test_api_docs_are_served_without_a_cdn(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.config import ServiceSettings
    from api.http.app import create_app

    # no lifespan: docs need no database; QC_DOCS_PUBLIC so a browser opens them without a bearer key
    client = TestClient(create_app(ServiceSettings(data_dir=tmp_path, docs_public=True)))
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    for url in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', page.text):
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 500, url


def test_the_package_metadata_has_no_setuptools_deprecation() -> None:
    from setuptools.config.pyprojecttoml import apply_configuration, read_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = read_configuration(REPO / "pyproject.toml")
        apply_configuration(Distribution(), REPO / "pyproject.toml")  # where the project.license warning came from
    assert isinstance(config["project"]["license"], str)
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message) for w in caught]


def test_model_card_and_readme_name_only_what_a_clone_has() -> None:
    card = (REPO / "models" / "neu-det-yolov8n" / "MODEL_CARD.md").read_text()
    assert "../shared" not in card
    for path in re.findall(r"`((?:tests|training|datasets|models|api|inspection)/[\w./-]+)`", card):
        assert (REPO / path.split("::")[0]).exists(), path
    readme = (REPO / "README.md").read_text()
    assert re.search(r"CAMERA_KEY=.*keys create --role camera", readme)
    assert "review list" in readme and "review history" in readme and "make train-deps" in readme


# -- a profile's review band below the model's floor --------------------------------------------------------
FLOOR_ORDERS = """
profiles:
  mirror:
    name: mirror
    default: {confidence: 0.5, review_from: 0.2, max_count: 0}
  brushed:
    name: brushed
    default: {confidence: 0.5, review_from: 0.3, max_count: 0}
orders:
  - {id: O-MIRROR, profile: mirror}
  - {id: O-BRUSHED, profile: brushed}
"""


@pytest.mark.parametrize(("order", "verdict", "findings"), [("O-MIRROR", "REVIEW", 1), ("O-BRUSHED", "PASS", 0)])
def test_a_review_band_below_the_package_floor_is_not_cut(tmp_path: Path, order: str, verdict: str,
                                                          findings: int) -> None:
    """Package floor 0.25; a 0.22 detection is in mirror's review band [0.2, 0.5) and below brushed's 0.3."""
    env = {**base_env(tmp_path), "QC_DATA_DIR": str(tmp_path / "data")}
    env["QC_MODEL_PATH"] = str(tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.22)],
                                            classes=("scratch", "dent"), confidence=0.25))
    write_image(tmp_path / "white.png", solid_image(255, 64, 64))
    (tmp_path / "orders.yaml").write_text(FLOOR_ORDERS)
    run(["orders", "import", str(tmp_path / "orders.yaml")], env)
    run(["inspect", "--source", str(tmp_path / "white.png"), "--unit", "U1", "--order", order, "--camera", "top",
         "--close-units"], env)
    unit = json.loads(run(["units", "show", "U1", "--json"], env).stdout)
    assert unit["verdict"] == verdict, unit
    found = unit["frames"][0]["findings"]
    assert len(found) == findings
    if findings:
        assert 0.2 <= found[0]["confidence"] < 0.25 and found[0]["outcome"] == "REVIEW"
