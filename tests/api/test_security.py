"""The attacks of the security report against the running service, each refused, the service staying responsive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.auth import Role
from tests import hostile
from tests.api.conftest import Service, jpeg
from tests.builders import Candidate, tiny_package

REPO = Path(__file__).resolve().parents[2]


# -- 1. bounded decoding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [hostile.fill_byte_bomb(), hostile.real_jpeg(9000, 9000), hostile.png_bomb()],
                         ids=["fill-byte-20000", "jpeg-9000", "png-bomb-8000"])
def test_image_bombs_get_422_and_the_camera_goes_on(service: Service, data: bytes) -> None:
    started = time.perf_counter()
    r = service.post_frame(data, unit_id="U-bomb")
    assert r.status_code == 422, r.text
    assert "over the limit" in r.json()["detail"]
    assert time.perf_counter() - started < 10  # loose: from the header, not a multi-second decode
    assert service.post_frame(jpeg(255), unit_id="U-good").status_code == 200
    assert service.client.get("/v1/units/U-bomb", headers=service.auth(Role.OPERATOR)).status_code == 404


def test_qcline_detect_reports_each_bomb_and_stays_small(tmp_path: Path) -> None:
    package = tiny_package(tmp_path / "pkg", [Candidate(32, 32, 16, 16, 0, 0.9)], classes=("scratch", "dent"))
    files = [hostile.write(tmp_path / "fill.jpg", hostile.fill_byte_bomb()),
             hostile.write(tmp_path / "big.jpg", hostile.real_jpeg(9000, 9000)),
             hostile.write(tmp_path / "bomb.png", hostile.png_bomb()),
             hostile.write(tmp_path / "good.jpg", jpeg(255))]
    env = {**os.environ, "PYTHONPATH": str(REPO), "QC_DATA_DIR": str(tmp_path / "data"), "QC_MODEL_PATH": str(package)}
    done = subprocess.run([sys.executable, "-m", "api.cli", "detect", *map(str, files), "--json"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [("error" in row) for row in rows] == [True, True, True, False], rows
    assert all("over the limit" in row["error"] for row in rows[:3])
    assert "3 of 4 images could not be read" in done.stderr
