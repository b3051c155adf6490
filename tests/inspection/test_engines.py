"""Engines: the auto choice as a table, then the committed default model on real images through every engine
and precision this CPU offers: the boxes must agree with onnxruntime fp32 (IoU >= 0.95, same classes)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.boxes import box_iou
from inspection.detector import OnnxDetector, pre_process
from inspection.engines import choose_engine, engine_pairs, openvino_available, to_network_input
from inspection.errors import ConfigError
from inspection.settings import DEFAULT_MODEL_DIR, REPO_ROOT, load_settings
from inspection.types import Detections

DEMO_FRAMES = REPO_ROOT / "api" / "demo" / "frames"
NEU_IMAGES = REPO_ROOT.parent / "shared" / "datasets" / "neu-det" / "images"
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="the openvino package is not installed")


@pytest.mark.parametrize(
    ("engine", "precision", "quantized", "bf16", "have_ov", "expected"),
    [
        ("auto", "auto", None, True, True, ("openvino", "bf16")),
        ("auto", "auto", None, False, True, ("openvino", "fp32")),  # as fast as onnxruntime, in less memory
        ("auto", "auto", None, True, False, ("onnxruntime", "fp32")),
        ("auto", "fp32", None, True, True, ("openvino", "fp32")),
        ("auto", "fp32", None, False, False, ("onnxruntime", "fp32")),
        ("openvino", "auto", None, True, True, ("openvino", "bf16")),
        ("openvino", "auto", None, False, True, ("openvino", "fp32")),
        ("openvino", "fp32", None, True, True, ("openvino", "fp32")),
        ("auto", "bf16", None, True, True, ("openvino", "bf16")),
        ("onnxruntime", "auto", None, True, True, ("onnxruntime", "fp32")),
        ("auto", "auto", "u8", True, True, ("openvino", "int8")),  # OpenVINO's int8 kernels: fastest measured
        ("auto", "int8", "u8", False, True, ("openvino", "int8")),
        ("openvino", "auto", "u8", True, True, ("openvino", "int8")),
        ("auto", "auto", "u8", True, False, ("onnxruntime", "int8")),
        ("onnxruntime", "auto", "u8", True, True, ("onnxruntime", "int8")),
        ("auto", "fp32", "u8", True, True, ("openvino", "int8")),  # an int8 package runs int8 whatever is asked
        ("auto", "auto", "s8", True, True, ("onnxruntime", "int8")),  # OpenVINO misreads signed activations
        ("auto", "int8", "s8", False, True, ("onnxruntime", "int8")),
        ("onnxruntime", "auto", "s8", True, True, ("onnxruntime", "int8")),
    ],
)
def test_auto_choice(engine: str, precision: str, quantized: str | None, bf16: bool, have_ov: bool,
                     expected: tuple[str, str]) -> None:
    choice = choose_engine(engine, precision, quantized=quantized, bf16=bf16, have_openvino=have_ov)
    assert (choice.engine, choice.precision) == expected
    assert choice.reason


@pytest.mark.parametrize(("amx", "warned"), [(True, True), (False, False)])
def test_an_int8_package_on_amx_says_the_float_package_is_faster_there(
        amx: bool, warned: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="inspection.engines"):
        choice = choose_engine("auto", "auto", quantized="u8", bf16=True, have_openvino=True, amx=amx)
    assert (choice.engine, choice.precision) == ("openvino", "int8")  # the package's precision, either way
    assert ("prefer the float package" in caplog.text) is warned
    assert ("prefer the float package" in choice.reason) is warned


@pytest.mark.parametrize(
    ("engine", "precision", "quantized", "have_ov", "message"),
    [
        ("tensorrt", "auto", None, True, "engine must be one of"),
        ("auto", "fp16", None, True, "precision must be one of"),
        ("onnxruntime", "bf16", None, True, "no bf16"),
        ("openvino", "auto", None, False, "not installed"),
        ("auto", "int8", None, True, "needs an int8 package"),
        ("openvino", "auto", "s8", True, "misreads this int8 package's signed activations"),
    ],
)
def test_impossible_choices_say_why(engine: str, precision: str, quantized: str | None, have_ov: bool,
                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        choose_engine(engine, precision, quantized=quantized, bf16=True, have_openvino=have_ov)


@needs_openvino
def test_openvino_is_imported_without_phoning_home(tmp_path: Path) -> None:
    """A bare ``import openvino`` writes a client id under ``~/intel`` and sends a usage event; a station
    process that goes through the engine module does neither (fresh process, its own empty home)."""
    import subprocess
    import sys

    code = ("import threading, time\n"
            "from inspection.engines import openvino_available\n"
            "assert openvino_available()\n"
            "import openvino\n"
            "time.sleep(0.3)\n"
            "print(sorted(t.name for t in threading.enumerate()))\n")
    done = subprocess.run([sys.executable, "-c", code], env={"HOME": str(tmp_path), "PYTHONPATH": str(REPO_ROOT),
                                                             "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == [], "OpenVINO wrote its telemetry files into the home directory"
    assert done.stdout.strip() == "['MainThread']", done.stdout  # no telemetry sender thread


def test_settings_refuse_an_unknown_engine() -> None:
    with pytest.raises(ValueError, match="engine"):
        load_settings(engine="tensorrt")


def _real_images() -> list[np.ndarray]:
    paths = sorted(DEMO_FRAMES.glob("*.jpg"))
    if NEU_IMAGES.is_dir():
        paths += sorted(NEU_IMAGES.glob("*.jpg"))[::150]
    images = [cv2.imread(str(p)) for p in paths]
    images.append(cv2.resize(images[0], (330, 200)))  # non-square: letterbox padding inside the batch
    return images


def _best_matches(reference: Detections, other_loose: Detections) -> list[float]:
    """For every box the reference is sure of (conf >= 0.30): the best IoU among the other engine's boxes of the
    same class down to conf 0.20 (scores move a little between precisions; a box at the threshold may fall either
    side of it). 0 where the other engine has no box of that class at all."""
    sure = reference.confidence >= 0.30
    if not sure.any():
        return []
    if not len(other_loose):
        return [0.0] * int(sure.sum())
    iou = box_iou(reference.xyxy[sure].astype(np.float64), other_loose.xyxy.astype(np.float64))
    same_class = reference.class_id[sure][:, None] == other_loose.class_id[None, :]
    return [float(v) for v in (iou * same_class).max(axis=1)]


@pytest.mark.parametrize(("engine", "precision"), [p for p in engine_pairs() if p != ("onnxruntime", "fp32")])
def test_engines_agree_on_real_images(engine: str, precision: str) -> None:
    """fp32 on OpenVINO: every box at IoU >= 0.95 with the same class. bf16 keeps 8 mantissa bits in every
    convolution, so a box edge moves by a pixel or two: measured on NEU-DET, 96% of boxes at IoU >= 0.95 (median
    0.99, worst 0.86), mAP within 0.01 (README). The test holds bf16 to that: same classes, 90% of boxes at
    IoU >= 0.95, none below 0.8."""
    images = _real_images()
    reference = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine="onnxruntime")
    other = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine=engine, precision=precision)
    assert (other.engine_name, other.precision) == (engine, precision)
    ref, ref_loose = reference.detect(images), reference.detect(images, confidence=0.20)
    got, got_loose = other.detect(images), other.detect(images, confidence=0.20)
    found, invented = [], []
    for r, r_loose, g, g_loose in zip(ref, ref_loose, got, got_loose, strict=True):
        found += _best_matches(r, g_loose)  # every sure reference box is found by the other engine
        invented += _best_matches(g, r_loose)  # and the other engine invents nothing the reference does not see
    assert len(found) >= 10, "too few confident boxes to prove anything"
    for ious in (np.array(found), np.array(invented)):
        if precision == "fp32":
            assert ious.min() >= 0.95, f"IoU {np.sort(ious)[:5]}"
        else:
            assert ious.min() >= 0.8 and (ious >= 0.95).mean() >= 0.9, f"IoU {np.sort(ious)[:5]}"


INT8_MODEL_DIR = REPO_ROOT / "models" / "neu-det-yolov8n-int8"


@needs_openvino
def test_the_committed_int8_package_runs_on_openvino_int8_and_finds_onnxruntimes_boxes() -> None:
    """``auto`` puts the u8-activation package on OpenVINO int8; its boxes are those onnxruntime computes from
    the same QDQ graph (same class, IoU >= 0.9: the int8 kernels round differently), none invented."""
    auto = OnnxDetector.from_package(INT8_MODEL_DIR)
    assert (auto.engine_name, auto.precision) == ("openvino", "int8")
    reference = OnnxDetector.from_package(INT8_MODEL_DIR, engine="onnxruntime")
    assert (reference.engine_name, reference.precision) == ("onnxruntime", "int8")
    images = _real_images()
    found, invented = [], []
    for r, r_loose, g, g_loose in zip(reference.detect(images), reference.detect(images, confidence=0.20),
                                      auto.detect(images), auto.detect(images, confidence=0.20), strict=True):
        found += _best_matches(r, g_loose)
        invented += _best_matches(g, r_loose)
    assert len(found) >= 10, "too few confident boxes to prove anything"
    for ious in (np.array(found), np.array(invented)):
        assert ious.min() >= 0.8 and (ious >= 0.9).mean() >= 0.9, f"IoU {np.sort(ious)[:5]}"


@needs_openvino
def test_openvino_graph_takes_uint8_and_matches_the_numpy_input() -> None:
    """The PrePostProcessor in front of the compiled model (BGR->RGB, NHWC->NCHW, /255) computes what
    ``to_network_input`` does in numpy: fp32 outputs of both paths agree to rounding."""
    import onnxruntime as ort

    images = _real_images()[:4]
    reference = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine="openvino", precision="fp32")
    batch, _ = pre_process(images, 416, 416)
    theirs = ort.InferenceSession(str(DEFAULT_MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = theirs.run(None, {theirs.get_inputs()[0].name: to_network_input(batch)})[0]
    got = reference.forward(batch)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got[:, 4:], expected[:, 4:], atol=2e-3)  # class scores
    np.testing.assert_allclose(got[:, :4], expected[:, :4], atol=0.05)  # box pixels


@needs_openvino
def test_openvino_compiled_model_cache_is_written_and_reused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine="openvino", cache_dir=cache)
    blobs = sorted(p.name for p in cache.rglob("*.blob"))
    assert blobs, "no compiled blob in CACHE_DIR"
    second = OnnxDetector.from_package(DEFAULT_MODEL_DIR, engine="openvino", cache_dir=cache)
    assert sorted(p.name for p in cache.rglob("*.blob")) == blobs  # loaded, not compiled into a new blob
    image = cv2.imread(str(sorted(DEMO_FRAMES.glob("*.jpg"))[0]))
    np.testing.assert_allclose(first.forward(pre_process([image], 416, 416)[0]),
                               second.forward(pre_process([image], 416, 416)[0]), atol=1e-5)


def test_detector_names_its_engine_in_settings(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, engine="onnxruntime")
    detector = OnnxDetector.from_settings(DEFAULT_MODEL_DIR, settings)
    assert (detector.engine_name, detector.precision) == ("onnxruntime", "fp32")
    assert settings.engine_cache_dir == tmp_path / "cache" / "openvino"


def test_cli_detect_names_its_engine_and_refuses_impossible_ones() -> None:
    from typer.testing import CliRunner

    from api.cli.main import app

    image = str(sorted(DEMO_FRAMES.glob("scratches_*.jpg"))[0])
    runner = CliRunner()
    ok = runner.invoke(app, ["detect", image, "--engine", "onnxruntime", "--json"])
    assert ok.exit_code == 0, ok.output
    assert "engine onnxruntime, precision fp32" in ok.stderr
    assert '"detections"' in ok.stdout
    refused = runner.invoke(app, ["detect", image, "--engine", "onnxruntime", "--precision", "bf16"])
    assert refused.exit_code != 0 and "no bf16" in str(refused.exception)  # main() prints it as one line
    unknown = runner.invoke(app, ["detect", image, "--engine", "tensorrt"])
    assert unknown.exit_code == 2 and "not one of" in unknown.output
