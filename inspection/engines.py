"""Inference engines: the one ``forward`` a detector delegates to, from a letterboxed uint8 batch to the head output.

Every engine takes the same input, a ``[B, H, W, 3]`` uint8 BGR batch exactly as ``pre_process`` letterboxed it,
and returns the model's raw ``[B, 4 + nc, N]`` float32 output; ``pre_process`` and ``post_process`` never know
which engine ran. They differ only in where colour order, layout and scaling happen:

* ``onnxruntime`` (CPU provider): one strided numpy pass per channel (BGR->RGB, NHWC->NCHW, /255) into a
  reusable float32 buffer, then ``InferenceSession.run``. onnxruntime has no bf16 kernels on x86.
* ``openvino``: the verified ONNX bytes are compiled with a ``PrePostProcessor`` in front, so the compiled
  model itself takes uint8 NHWC BGR and does the conversion inside the graph; bf16 (``INFERENCE_PRECISION_HINT``)
  where the CPU has bf16 units (AMX or avx512_bf16), fp32 elsewhere. ``CACHE_DIR`` keeps the compiled blob, so a
  restart skips the compile.

``auto`` picks what measured fastest (see README, "Engines"): OpenVINO whenever it is installed, bf16 when the
CPU has bf16 units, else fp32 (on an AVX2-only CPU its fp32 forward is level with onnxruntime's, and the whole
in-process pipeline measured as fast and steadier on it); onnxruntime fp32 without OpenVINO.

An int8 (QDQ) package with unsigned activations (``U8S8``, what ``qcline models quantize`` writes) runs on
OpenVINO's int8 kernels, the float remainder (the head's box arithmetic) in fp32: on a 2-core Zen 4 (VNNI,
avx512_bf16) its bare forward measured 125 frames/s against 84 for bf16 and 36 for onnxruntime fp32, with the
boxes of onnxruntime running the same graph. A package with *signed* asymmetric activations (int8 with a zero
point, as NNCF's ONNX backend emits them, and as int8 packages made before were written) runs on onnxruntime:
OpenVINO 2026.4 misreads those quantizers (measured: activations off by more than their own size from the first
such pair on, mAP@0.5 0.15 for 0.76).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast

import numpy as np
import numpy.typing as npt

from inspection.errors import ConfigError, ModelPackageError
from inspection.model_package import ModelMetadata

log = logging.getLogger(__name__)

EngineName = Literal["auto", "onnxruntime", "openvino"]
Precision = Literal["auto", "fp32", "bf16", "int8"]
ENGINES: tuple[str, ...] = ("auto", "onnxruntime", "openvino")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")

Batch = npt.NDArray[np.uint8]
Output = npt.NDArray[np.float32]


class Engine(Protocol):
    """Runs the network on a letterboxed ``[B, H, W, 3]`` uint8 BGR batch; thread-safe."""

    name: str
    precision: str
    output_shape: Sequence[int | str | None]
    """The head's output shape as the engine reads it (a dynamic dimension is a name or ``None``)."""

    def forward(self, batch: Batch) -> Output: ...


class InferenceSessionLike(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the engine uses (tests inject fakes)."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, Any]) -> list[Any]: ...

    def get_inputs(self) -> list[Any]: ...

    def get_outputs(self) -> list[Any]: ...


Int8Activations = Literal["u8", "s8"]


def int8_activations(metadata: ModelMetadata) -> Int8Activations | None:
    """How an int8 package's activations are quantized, as its metadata says; ``None`` for a float package.

    ``training.quantized_from`` marks an int8 variant and ``training.int8_activations`` (``u8``) its layout;
    nothing is guessed from the graph. An int8 package without the second key was made before activations
    were written unsigned: ``s8``.
    """
    if not metadata.training.get("quantized_from"):
        return None
    return "u8" if metadata.training.get("int8_activations") == "u8" else "s8"


def to_network_input(batch: Batch, out: npt.NDArray[np.float32] | None = None) -> npt.NDArray[np.float32]:
    """uint8 BGR NHWC -> float32 RGB NCHW in [0, 1], what the exported network takes.

    One strided pass per channel does BGR->RGB, NHWC->NCHW and /255 together (measured ~4x faster than
    ``cv2.dnn.blobFromImages`` here). Division, not multiplication by 1/255, keeps ultralytics' exact values.
    """
    b, h, w, _ = batch.shape
    if out is None:
        out = np.empty((b, 3, h, w), np.float32)
    for channel in range(3):
        np.divide(batch[..., 2 - channel], np.float32(255.0), out=out[:, channel], casting="unsafe")
    return out


class _FloatBuffers(threading.local):
    """Per-thread float32 NCHW buffer per input size, as large as the largest batch met (smaller batches slice)."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[int, int], npt.NDArray[np.float32]] = {}

    def get(self, batch: int, height: int, width: int) -> npt.NDArray[np.float32]:
        held = self.arrays.get((height, width))
        if held is None or len(held) < batch:
            held = self.arrays[(height, width)] = np.empty((batch, 3, height, width), np.float32)
        return held[:batch]


class OnnxRuntimeEngine:
    """``forward`` through an onnxruntime session, the network input made in numpy."""

    name = "onnxruntime"

    def __init__(self, session: InferenceSessionLike, precision: str = "fp32") -> None:
        self._session = session
        self.precision = precision
        inputs = session.get_inputs()
        self._input_name = inputs[0].name
        batch_dim = inputs[0].shape[0] if inputs[0].shape else None
        self._fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.output_shape: Sequence[int | str | None] = list(session.get_outputs()[0].shape)
        self._buffers = _FloatBuffers()

    def forward(self, batch: Batch) -> Output:
        if self._fixed_batch == 1 and batch.shape[0] > 1:  # a static-batch export: one image per run
            return np.concatenate([self.forward(batch[i:i + 1]) for i in range(batch.shape[0])])
        b, h, w, _ = batch.shape
        tensor = to_network_input(batch, self._buffers.get(b, h, w))
        output = self._session.run(None, {self._input_name: tensor})[0]
        return np.asarray(output, dtype=np.float32)


class OpenVINOEngine:
    """``forward`` through an OpenVINO compiled model whose graph takes the uint8 batch itself.

    ``full`` is compiled for exactly ``max_batch`` frames (static shapes measured 1.3-2.5x faster than a
    dynamic batch axis here), ``compiled`` for any batch up to it: a full batch runs on the first, a partial
    one (a lone camera) on the second, never padded. One infer request per model and calling thread
    (requests are not thread-safe; compiled models are).
    """

    name = "openvino"

    def __init__(self, compiled: Any, precision: str, *, full: Any = None, full_batch: int = 0) -> None:
        self._compiled = compiled
        self._full, self._full_batch = full, full_batch
        self.precision = precision
        shape = compiled.outputs[0].get_partial_shape()
        self.output_shape: Sequence[int | str | None] = [d.get_length() if d.is_static else None for d in shape]
        self._local = threading.local()

    def forward(self, batch: Batch) -> Output:
        full = self._full is not None and batch.shape[0] == self._full_batch
        key = "full" if full else "any"
        request = getattr(self._local, key, None)
        if request is None:
            request = (self._full if full else self._compiled).create_infer_request()
            setattr(self._local, key, request)
        # share_inputs: the engine reads the caller's array in place (it stays untouched until infer returns);
        # outputs are copied, so the result outlives the request's next run.
        result = request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True, share_outputs=False)
        return cast(Output, np.asarray(result[0], dtype=np.float32))


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    precision: str
    reason: str


def decline_openvino_telemetry() -> None:
    """Keep OpenVINO from phoning home: call before ``openvino`` (or NNCF) is first imported in a process.

    ``import openvino`` imports its model converter, whose ``__init__`` sends a usage event to Google
    Analytics (from a forked child process) and writes a client id under ``~/intel`` unless the user's home
    holds an opt-out file (measured with OpenVINO 2026.4: ``~/intel/openvino_ga_cid`` and ``stats`` appear
    after a bare import). A station is offline by construction and may run on a plant network, so this
    process answers the library's consent check with "declined", the answer its own opt-out file gives;
    nothing is written and nothing is sent. Other processes and the user's files are left alone.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # no telemetry package: nothing to decline
        return

    def declined(self: object, *args: object, **kwargs: object) -> ConsentCheckResult:
        return ConsentCheckResult.DECLINED

    OptInChecker.check = declined


def openvino_available() -> bool:
    decline_openvino_telemetry()  # every OpenVINO path of the station asks this first
    try:
        import openvino  # noqa: F401 -- asks whether it is installed, without loading it for an onnxruntime station
    except ImportError:
        return False
    return True


def cpu_has_bf16() -> bool:
    """OpenVINO's own view of the CPU: ``BF16`` in its optimization capabilities (AMX or avx512_bf16)."""
    if not openvino_available():
        return False
    import openvino as ov  # installed (checked above), loaded only when asked

    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # no CPU plugin: nothing to run bf16 on
        return False


def cpu_has_amx() -> bool:
    """Whether the kernel lists AMX tiles for this CPU (``amx_bf16`` / ``amx_int8`` in ``/proc/cpuinfo``).

    OpenVINO's capabilities say ``BF16`` for AMX and for avx512_bf16 alike; which one it is decides whether an
    int8 package pays (see ``choose_engine``). Not Linux, or unreadable: ``False``."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("flags"):
                    flags = line.split()
                    return "amx_bf16" in flags or "amx_int8" in flags
    except OSError:
        return False
    return False


AMX_INT8_NOTE = ("this CPU has AMX, where the float package in bf16 measured faster than its int8 variant "
                 "(raw forward, batch 8, 2-core Xeon: 168 vs 119-129 frames/s); int8 pays on CPUs with VNNI but "
                 "no AMX (1.45x bf16 on a Zen 4): prefer the float package here")


def choose_engine(engine: str = "auto", precision: str = "auto", *, quantized: Int8Activations | None = None,
                  bf16: bool | None = None, have_openvino: bool | None = None,
                  amx: bool | None = None) -> EngineChoice:
    """Resolve ``auto`` settings to one engine and precision, with the reason (logged by the caller).

    ``quantized`` is the package's int8 activation layout (``int8_activations``), ``None`` for a float package.
    ``bf16`` / ``have_openvino`` / ``amx`` default to probing this machine; tests pass them to cover other CPUs.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    have_ov = openvino_available() if have_openvino is None else have_openvino
    if engine == "openvino" and not have_ov:
        raise ConfigError("engine openvino asked for, but the openvino package is not installed")
    if precision == "int8" and not quantized:
        raise ConfigError("precision int8 needs an int8 package (make one with `qcline models quantize MODEL`)")
    if quantized:  # the package's weights are int8: the precision is the package's, whatever was asked
        if precision not in ("auto", "int8"):
            log.warning("package is int8-quantized: precision %s ignored", precision)
        if quantized == "s8":
            if engine == "openvino":
                # measured with OpenVINO 2026.4: signed asymmetric activation quantizers compile, but their
                # outputs are wrong (mAP@0.5 0.15 for 0.76 on onnxruntime); refusing beats judging on wrong boxes
                raise ConfigError("OpenVINO misreads this int8 package's signed activations (measured: wrong "
                                  "boxes); run it on onnxruntime, or re-quantize it (`qcline models quantize`), "
                                  "which writes unsigned activations")
            return EngineChoice("onnxruntime", "int8", "int8 package with signed activations: onnxruntime runs "
                                                       "them correctly (OpenVINO misreads them)")
        if engine == "onnxruntime" or not have_ov:
            why = "engine onnxruntime asked for" if engine == "onnxruntime" else "OpenVINO not installed"
            log.warning("int8 on onnxruntime: its QDQ kernels measured slower than the float model on "
                        "onnxruntime fp32 (22 vs 36 frames/s); OpenVINO runs this package faster")
            return EngineChoice("onnxruntime", "int8", f"int8 package: {why}")
        if cpu_has_amx() if amx is None else amx:
            log.warning("int8 package: %s", AMX_INT8_NOTE)
            return EngineChoice("openvino", "int8", f"int8 package (u8 activations) on OpenVINO; {AMX_INT8_NOTE}")
        return EngineChoice("openvino", "int8", "int8 package (u8 activations): OpenVINO's int8 kernels measured "
                                                "1.45x its bf16 and 3.5x onnxruntime fp32 on a CPU with VNNI "
                                                "and no AMX")
    has_bf16 = have_ov and (cpu_has_bf16() if bf16 is None else bf16)
    if precision == "bf16":
        if engine == "onnxruntime":
            raise ConfigError("onnxruntime has no bf16 kernels on CPU: use engine openvino (or auto) for bf16")
        if not have_ov:
            raise ConfigError("precision bf16 needs the openvino package")
        if not has_bf16:
            log.warning("this CPU has no bf16 units: OpenVINO will emulate bf16 (slow)")
        return EngineChoice("openvino", "bf16", "precision bf16 asked for")
    if engine == "openvino":
        chosen = "bf16" if precision == "auto" and has_bf16 else "fp32"
        return EngineChoice("openvino", chosen, f"engine openvino asked for; CPU bf16 units: {has_bf16}")
    if engine == "onnxruntime":
        return EngineChoice("onnxruntime", "fp32", "engine onnxruntime asked for")
    if not have_ov:
        return EngineChoice("onnxruntime", "fp32", "OpenVINO not installed")
    if precision == "auto" and has_bf16:
        return EngineChoice("openvino", "bf16", "CPU has bf16 units (AMX / avx512_bf16): OpenVINO bf16 measured "
                                                "~2-3x onnxruntime fp32 on this model")
    why = "fp32 asked for" if precision == "fp32" else "CPU has no bf16 units"
    # Measured on a 2-core AVX2-only CPU (bench/inference.py, batch 8, three runs each): the fp32 forwards are
    # level (21-25 frames/s both); the in-process OpenVINO pipeline ran 20.5-21.1 frames/s against 17.0-21.3 for
    # onnxruntime (its numpy conversion costs CPU the engine then lacks). Through the HTTP service at 8 cameras
    # one run each gave 16.0 (OpenVINO) and 17.6 frames/s (onnxruntime): a close call, README "Speed on a CPU
    # without bf16 units".
    return EngineChoice("openvino", "fp32", f"{why}: OpenVINO fp32 (uint8 input, conversion in the graph) "
                                            "measured as fast as onnxruntime fp32 in process, and steadier")


def open_onnxruntime(model_bytes: bytes, *, threads: int | None, precision: str, source: str) -> OnnxRuntimeEngine:
    import onnxruntime as ort  # each runtime is loaded when an engine of it opens: a station runs one of the two

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Idle onnxruntime workers otherwise busy-wait after each run, stealing the cores that
    # decoding, judging and the results writer need between forward passes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The planned memory pattern pre-allocates one block for every intermediate tensor of a batch: measured at
    # batch 8 (416 px, 2-core AVX2 CPU) its peak RSS was 338 MB against 263 MB without it, and the forward no
    # slower (26.7 vs 24.7 frames/s, best of 5). The arena still reuses blocks between runs.
    options.enable_mem_pattern = False
    try:
        session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise ModelPackageError(f"onnxruntime cannot load {source}: {exc}") from exc
    return OnnxRuntimeEngine(session, precision)


def openvino_model(model_bytes: bytes, metadata: ModelMetadata, *, max_batch: int, source: str) -> Any:
    """Read the ONNX bytes and put the pre-processing in front: uint8 NHWC BGR in, the network's input out."""
    import openvino as ov  # loaded when an OpenVINO engine opens (see open_onnxruntime)
    from openvino.preprocess import ColorFormat, PrePostProcessor

    core = ov.Core()
    try:
        model = core.read_model(model_bytes)
        model.reshape({model.inputs[0]: ov.PartialShape(
            [ov.Dimension(1, max(1, max_batch)), 3, metadata.input_height, metadata.input_width])})
    except RuntimeError as exc:
        raise ModelPackageError(f"OpenVINO cannot read {source}: {exc}") from exc
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")) \
        .set_color_format(ColorFormat.BGR)
    ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
    ppp.input().model().set_layout(ov.Layout("NCHW"))
    return ppp.build()


def open_openvino(model_bytes: bytes, metadata: ModelMetadata, *, threads: int | None, precision: str,
                  max_batch: int, cache_dir: Path | None, source: str) -> OpenVINOEngine:
    import openvino as ov  # loaded when an OpenVINO engine opens (see open_onnxruntime)

    model = openvino_model(model_bytes, metadata, max_batch=max_batch, source=source)
    config: dict[str, Any] = {
        # int8: the quantized layers run int8 whatever the hint; the float remainder (box arithmetic) in fp32
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "PERFORMANCE_HINT": "LATENCY",  # one stream, every thread on the one batch in flight
        "NUM_STREAMS": 1,
    }
    # Unset: every core this process may use. On the quiet 2-core machine (bench/inference.py, 1451 images,
    # batch 8) 2 engine threads gave the pipeline 125 fps against 88 fps with 1 (engine 182 vs 96 fps); only on
    # a machine loaded by other work did 1 thread win. QC_THREADS caps it on a shared host.
    config["INFERENCE_NUM_THREADS"] = threads or max(1, len(os.sched_getaffinity(0)))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        config["CACHE_DIR"] = str(cache_dir)
    core = ov.Core()
    try:
        compiled = core.compile_model(model, "CPU", config)
        full = None
        if max_batch > 1:
            model.reshape({model.inputs[0]: ov.PartialShape([max_batch, *model.inputs[0].get_partial_shape()[1:]])})
            full = core.compile_model(model, "CPU", config)
    except RuntimeError as exc:
        raise ModelPackageError(f"OpenVINO cannot compile {source}: {exc}") from exc
    return OpenVINOEngine(compiled, precision, full=full, full_batch=max_batch)


def open_engine(model_bytes: bytes, metadata: ModelMetadata, *, engine: str = "auto", precision: str = "auto",
                threads: int | None = None, max_batch: int = 8, cache_dir: Path | None = None,
                source: str = "model.onnx") -> Engine:
    """Create the engine for already verified ONNX bytes; the choice and its reason are logged."""
    choice = choose_engine(engine, precision, quantized=int8_activations(metadata))
    log.info("engine %s %s for %s: %s", choice.engine, choice.precision, metadata.name, choice.reason)
    if choice.engine == "openvino":
        return open_openvino(model_bytes, metadata, threads=threads, precision=choice.precision,
                             max_batch=max_batch, cache_dir=cache_dir, source=source)
    return open_onnxruntime(model_bytes, threads=threads, precision=choice.precision, source=source)


def engine_pairs() -> Sequence[tuple[str, str]]:
    """Every (engine, precision) this machine can run a float package on, for evaluations and tests."""
    pairs = [("onnxruntime", "fp32")]
    if openvino_available():
        pairs.append(("openvino", "fp32"))
        if cpu_has_bf16():
            pairs.append(("openvino", "bf16"))
    return pairs
