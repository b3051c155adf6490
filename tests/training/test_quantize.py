"""int8 packages: the unsigned rewrite of NNCF's activation quantizers is the same function, and OpenVINO then
computes what onnxruntime computes on the default model quantized by NNCF (the check that would have caught
OpenVINO misreading the signed form: mAP@0.5 0.15 instead of 0.74)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.boxes import box_iou
from inspection.detector import post_process, pre_process
from inspection.engines import openvino_available, to_network_input
from inspection.settings import DEFAULT_MODEL_DIR, REPO_ROOT
from training.quantize import head_ignored_scope, unsigned_activations

onnx = pytest.importorskip("onnx", reason="int8 quantization needs the [train] extra")
ort = pytest.importorskip("onnxruntime")
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="the openvino package is not installed")
DEMO_FRAMES = REPO_ROOT / "api" / "demo" / "frames"


def _signed_qdq_graph() -> object:
    """Conv -> signed asymmetric Q/DQ (zero point -116, as NNCF writes activations) -> Split -> Concat, with a
    per-channel signed symmetric weight DQ (which must stay signed)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 127, (4, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.05, np.float32), "a_scale"),
        numpy_helper.from_array(np.array(-116, np.int8), "a_zp"),
        numpy_helper.from_array(np.array([2, 2], np.int64), "split"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=0),
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "a_scale", "a_zp"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "a_scale", "a_zp"], ["c_dq"]),
        helper.make_node("Split", ["c_dq", "split"], ["s0", "s1"], axis=1),
        helper.make_node("Concat", ["s1", "s0"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "signed_qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                                  [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits,
                              value_info=[helper.make_tensor_value_info("c_q", TensorProto.INT8, [1, 4, 8, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: object, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]
    return np.asarray(session.run(None, {"x": x})[0])


def test_unsigned_rewrite_is_the_same_function_and_keeps_weights_signed() -> None:
    from onnx import TensorProto, numpy_helper

    model = _signed_qdq_graph()
    x = np.random.default_rng(1).normal(0, 2, (1, 3, 8, 8)).astype(np.float32)
    before = _run(model, x)
    assert unsigned_activations(model) == 1
    inits = {i.name: i for i in model.graph.initializer}  # type: ignore[attr-defined]
    assert inits["a_zp"].data_type == TensorProto.UINT8 and int(numpy_helper.to_array(inits["a_zp"])) == 12
    assert inits["w_zp"].data_type == TensorProto.INT8  # weights: still signed symmetric (U8S8)
    [info] = [v for v in model.graph.value_info if v.name == "c_q"]  # type: ignore[attr-defined]
    assert info.type.tensor_type.elem_type == TensorProto.UINT8
    np.testing.assert_array_equal(_run(model, x), before)  # every level the same number, shifted by 128
    assert unsigned_activations(model) == 0  # already unsigned: nothing left to move


@pytest.mark.slow
@needs_openvino
def test_openvino_runs_an_nncf_int8_default_model_as_onnxruntime_does() -> None:
    """NNCF (few calibration images: speed, not accuracy, is the point here) -> unsigned -> OpenVINO int8 must
    find onnxruntime's boxes on real frames, same class, IoU >= 0.9 (int8 kernels differ in rounding)."""
    nncf = pytest.importorskip("nncf")
    import openvino as ov

    frames = [cv2.imread(str(p)) for p in sorted(DEMO_FRAMES.glob("*.jpg"))]
    batch, letterboxes = pre_process(frames, 416, 416)
    x = to_network_input(batch)
    model = onnx.load(str(DEFAULT_MODEL_DIR / "model.onnx"))
    name = model.graph.input[0].name
    calibration = nncf.Dataset([{name: x[i:i + 1]} for i in range(len(frames))])
    quantized = nncf.quantize(model, calibration, preset=nncf.QuantizationPreset.MIXED, subset_size=len(frames),
                              ignored_scope=head_ignored_scope(model))
    assert unsigned_activations(quantized) > 10
    expected = np.asarray(ort.InferenceSession(quantized.SerializeToString(), providers=["CPUExecutionProvider"])
                          .run(None, {name: x})[0])
    core = ov.Core()
    compiled = core.compile_model(core.read_model(quantized.SerializeToString()), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    got = np.asarray(compiled({0: x})[0])
    classes = [f"c{i}" for i in range(expected.shape[1] - 4)]
    theirs = post_process(expected, letterboxes, classes, confidence=0.3, iou=0.7, max_detections=100)
    ours = post_process(got, letterboxes, classes, confidence=0.2, iou=0.7, max_detections=100)
    matched = 0
    for a, b in zip(theirs, ours, strict=True):
        if not len(a):
            continue
        assert len(b), "OpenVINO lost every box of a frame onnxruntime found boxes in"
        iou = box_iou(a.xyxy.astype(np.float64), b.xyxy.astype(np.float64))
        same = a.class_id[:, None] == b.class_id[None, :]
        best = (iou * same).max(axis=1)
        assert best.min() >= 0.9, f"IoU {np.sort(best)[:5]}"
        matched += len(best)
    assert matched >= 5, "too few boxes to prove anything"
