"""ONNX defect detector: pure ``pre_process`` / ``post_process`` around one engine's ``forward``.

The engine (onnxruntime or OpenVINO, ``inspection.engines``) is the only part that differs between stations.

Decodes the ultralytics YOLOv8 / YOLO11 detection head as exported to ONNX: output ``[B, 4 + nc, N]``
with (cx, cy, w, h) in letterboxed input pixels and per-class scores already passed through a sigmoid,
no NMS inside the graph. Letterboxing and box rescaling follow ultralytics' own arithmetic so our
boxes match ``YOLO(model.onnx).predict`` on the same image.

Test-time augmentation (a package's ``metadata.tta``, off when absent) stays inside the same three steps:
``pre_process`` puts the flipped copies of every letterboxed frame into the same batch (view-major: the ``n``
frames, then their first flip, ...), the one ``forward`` runs them (in chunks of at most ``max_batch`` engine
images, the batch the engine was opened for), and ``post_process`` decodes every view, un-flips its boxes in
letterbox pixels and fuses the views per frame and class by weighted box fusion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

import cv2
import numpy as np
import numpy.typing as npt

from inspection.boxes import weighted_box_fusion
from inspection.engines import Engine, open_engine
from inspection.errors import InvalidFrameError, ModelPackageError
from inspection.hashing import sha256_bytes
from inspection.model_package import PACKAGE_TTA, TTA, ModelMetadata, ModelPackage
from inspection.settings import Settings
from inspection.types import Detections

log = logging.getLogger(__name__)

Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Letterbox:
    """How one image was fitted into the network input: scale ``gain`` then padding ``(left, top)``."""

    gain: float
    pad_left: int
    pad_top: int
    orig_width: int
    orig_height: int


def letterbox(image: Image, width: int, height: int, pad_value: int = 114) -> tuple[Image, Letterbox]:
    """Resize keeping aspect ratio and pad to ``width`` x ``height``, centred, as ultralytics does."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise InvalidFrameError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    gain = min(height / h, width / w)
    new_w, new_h = round(w * gain), round(h * gain)
    pad_w, pad_h = (width - new_w) / 2, (height - new_h) / 2
    if (w, h) != (new_w, new_h):
        image = cast(Image, cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR))
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    if top or bottom or left or right:
        image = cast(Image, cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                               value=(pad_value, pad_value, pad_value)))
    return image, Letterbox(gain, left, top, w, h)


def pre_process(images: Sequence[Image], width: int, height: int, pad_value: int = 114, *,
                buffers: _BatchBuffers | None = None,
                flips: Sequence[str] = ()) -> tuple[npt.NDArray[np.uint8], list[Letterbox]]:
    """BGR uint8 images -> one letterboxed ``[B, H, W, 3]`` uint8 BGR batch and their letterboxes.

    The batch is what every engine takes: colour order, layout and scaling to [0, 1] happen inside the
    engine (OpenVINO: in the compiled graph; onnxruntime: ``to_network_input``), so the only per-image work
    here is the resize, written straight into the batch. ``buffers`` lets a long-running detector reuse its
    batch array: a fresh one per batch costs page faults that, measured here, tripled the pre-processing time.

    ``flips`` (test-time augmentation, ``TTA_FLIPS``) appends, per flip, the flipped copy of every letterboxed
    frame: ``B = len(images) * (1 + len(flips))``, view-major; the letterboxes are the frames' (one each).
    """
    if not images:
        raise InvalidFrameError("pre_process needs at least one image")
    n = len(images)
    shape = (n * (1 + len(flips)), height, width)
    batch = buffers.get(shape) if buffers is not None else _BatchBuffers.allocate(shape)
    infos = [_letterbox_into(image, batch[i], pad_value) for i, image in enumerate(images)]
    for view, flip in enumerate(flips, start=1):
        np.copyto(batch[view * n:(view + 1) * n], _flipped(batch[:n], flip))
    return batch, infos


def _flipped(frames: npt.NDArray[np.uint8], flip: str) -> npt.NDArray[np.uint8]:
    """A view of ``[n, H, W, 3]`` frames flipped left-right (``hflip``), top-bottom (``vflip``) or both."""
    if flip == "hflip":
        return frames[:, :, ::-1]
    if flip == "vflip":
        return frames[:, ::-1]
    if flip == "hvflip":
        return frames[:, ::-1, ::-1]
    raise ValueError(f"unknown flip {flip!r}")


def _letterbox_into(image: Image, out: Image, pad_value: int) -> Letterbox:
    """``letterbox`` writing into ``out`` (one slot of the batch) instead of a new array."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise InvalidFrameError(f"expected an HxWx3 uint8 image, got {image.shape} {image.dtype}")
    height, width = out.shape[:2]
    h, w = image.shape[:2]
    gain = min(height / h, width / w)
    new_w, new_h = round(w * gain), round(h * gain)
    top, left = round((height - new_h) / 2 - 0.1), round((width - new_w) / 2 - 0.1)
    bottom, right = top + new_h, left + new_w
    if (new_w, new_h) != (width, height):  # only the borders: the slot may hold the batch before's image
        out[:top] = pad_value
        out[bottom:] = pad_value
        out[top:bottom, :left] = pad_value
        out[top:bottom, right:] = pad_value
    target = out[top:bottom, left:right]
    if (w, h) == (new_w, new_h):
        target[:] = image
    elif target.flags.c_contiguous:  # full rows of the slot: resized straight into the batch, no copy
        cv2.resize(image, (new_w, new_h), dst=target, interpolation=cv2.INTER_LINEAR)
    else:
        target[:] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return Letterbox(gain, left, top, w, h)


class _BatchBuffers(threading.local):
    """Per-thread reusable uint8 NHWC batch, one per input size, as large as the largest batch met so far: a
    smaller batch gets the leading slice (contiguous along the batch axis), so a micro-batcher meeting every
    batch size from 1 to 8 keeps one array, not eight."""

    def __init__(self) -> None:
        self.arrays: dict[tuple[int, int], npt.NDArray[np.uint8]] = {}

    @staticmethod
    def allocate(shape: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
        batch, height, width = shape
        return np.empty((batch, height, width, 3), np.uint8)

    def get(self, shape: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
        batch, height, width = shape
        held = self.arrays.get((height, width))
        if held is None or len(held) < batch:
            held = self.arrays[(height, width)] = self.allocate(shape)
        return held[:batch]


def post_process(output: npt.NDArray[np.float32], letterboxes: Sequence[Letterbox], class_names: Sequence[str],
                 *, confidence: float, iou: float, max_detections: int, tta: TTA | None = None,
                 input_size: tuple[int, int] | None = None) -> list[Detections]:
    """Decode ``[B, 4 + nc, N]``, run class-aware NMS over the whole batch at once, map boxes back.

    One ``cv2.dnn.NMSBoxesBatched`` call covers every image: the "batch id" it separates on is
    ``image_index * nc + class_id``, so boxes of different images or classes never suppress each other.

    With ``tta`` the output holds ``tta.views`` images per letterbox, view-major as ``pre_process`` made them:
    each view is decoded and NMS'd as an image of its own, its boxes un-flipped in letterbox pixels
    (``input_size`` = the network's width, height), then the views of a frame are fused per class by weighted
    box fusion (``tta.iou``); ``confidence`` applies to the views and again to the fused scores, and
    ``max_detections`` to each view and to the fused result.
    """
    nc = len(class_names)
    if output.ndim != 3 or output.shape[1] != 4 + nc:
        raise ModelPackageError(
            f"model output shape {output.shape} does not match [B, 4 + {nc} classes, N] of a YOLOv8 head")
    views = 1 if tta is None else tta.views
    if output.shape[0] != len(letterboxes) * views:
        raise ValueError(f"output batch {output.shape[0]} != {len(letterboxes)} letterboxes x {views} views")
    image_idx, xyxy, scores, classes = _decode(output, nc, confidence=confidence, iou=iou,
                                               max_detections=max_detections)
    if tta is not None:
        if input_size is None:
            raise ValueError("post_process with tta needs input_size (the network's width, height)")
        image_idx, xyxy, scores, classes = _fuse_views(image_idx, xyxy, scores, classes, tta, len(letterboxes),
                                                       nc, input_size, confidence=confidence,
                                                       max_detections=max_detections)
    return _to_frames(image_idx, xyxy, scores, classes, letterboxes, class_names)


Decoded = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]
"""Kept boxes of a batch: image index, xyxy in letterbox pixels, score, class; grouped by image, score-descending
inside, at most ``max_detections`` per image."""


def _decode(output: npt.NDArray[np.float32], nc: int, *, confidence: float, iou: float,
            max_detections: int) -> Decoded:
    preds = output.transpose(0, 2, 1)  # [B, N, 4 + nc]
    scores_all = preds[..., 4:]
    class_all = scores_all.argmax(axis=2)
    score_all = np.take_along_axis(scores_all, class_all[..., None], axis=2)[..., 0]
    image_idx, anchor_idx = np.nonzero(score_all > confidence)
    if image_idx.size == 0:
        return _nothing()
    cxcywh = preds[image_idx, anchor_idx, :4].astype(np.float32)
    scores = score_all[image_idx, anchor_idx].astype(np.float32)
    classes = class_all[image_idx, anchor_idx].astype(np.int64)
    xywh = cxcywh.copy()
    xywh[:, :2] -= cxcywh[:, 2:] / 2
    kept = cv2.dnn.NMSBoxesBatched(xywh, scores, (image_idx * nc + classes).astype(np.int32),  # type: ignore[arg-type]
                                   score_threshold=confidence, nms_threshold=iou)
    keep = np.asarray(kept, dtype=np.int64).reshape(-1)
    if keep.size == 0:
        return _nothing()
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    order = np.argsort(image_idx[keep], kind="stable")  # group by image, score-descending inside
    keep = keep[order]
    xyxy = xywh[keep].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    return _cap(image_idx[keep].astype(np.int64), xyxy, scores[keep], classes[keep], output.shape[0], max_detections)


def _nothing() -> Decoded:
    return (np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def _cap(image_idx: npt.NDArray[np.int64], xyxy: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
         classes: npt.NDArray[np.int64], images: int, max_detections: int) -> Decoded:
    """The first ``max_detections`` rows of each image (rows grouped by image, best first)."""
    starts = np.searchsorted(image_idx, np.arange(images))
    rank = np.arange(len(image_idx)) - starts[image_idx]
    keep = rank < max_detections
    return image_idx[keep], xyxy[keep], scores[keep], classes[keep]


def _fuse_views(image_idx: npt.NDArray[np.int64], xyxy: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
                classes: npt.NDArray[np.int64], tta: TTA, frames: int, nc: int, input_size: tuple[int, int], *,
                confidence: float, max_detections: int) -> Decoded:
    """Un-flip each view's boxes (a box at x in a view flipped left-right is at W - x in the frame's letterbox,
    exactly), then fuse the views of each frame per class; rows come back grouped by frame, best first."""
    width, height = input_size
    view, frame = image_idx // frames, image_idx % frames
    xyxy = xyxy.copy()
    for k, flip in enumerate(tta.flips, start=1):
        rows = view == k
        if flip in ("hflip", "hvflip"):
            xyxy[rows, 0], xyxy[rows, 2] = width - xyxy[rows, 2], width - xyxy[rows, 0]
        if flip in ("vflip", "hvflip"):
            xyxy[rows, 1], xyxy[rows, 3] = height - xyxy[rows, 3], height - xyxy[rows, 1]
    fused, fused_scores, groups = weighted_box_fusion(xyxy, scores, frame * nc + classes, iou=tta.iou,
                                                      views=tta.views)
    keep = fused_scores > confidence
    fused, fused_scores, groups = fused[keep], fused_scores[keep], groups[keep]
    frame_of = groups // nc
    order = np.lexsort((-fused_scores, frame_of))  # by frame, score-descending inside
    return _cap(frame_of[order], fused[order], fused_scores[order], (groups % nc)[order], frames, max_detections)


def _to_frames(image_idx: npt.NDArray[np.int64], xyxy: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
               classes: npt.NDArray[np.int64], letterboxes: Sequence[Letterbox],
               class_names: Sequence[str]) -> list[Detections]:
    """Letterbox pixels -> frame pixels, one ``Detections`` per frame (rows grouped by frame)."""
    results = [Detections.empty(class_names) for _ in letterboxes]
    if image_idx.size == 0:
        return results
    # Back to frame pixels for every kept box at once: each box takes its own image's gain, padding and size.
    gains = np.array([i.gain for i in letterboxes], np.float32)[image_idx, None]
    pads = np.array([(i.pad_left, i.pad_top) for i in letterboxes], np.float32)[image_idx]
    sizes = np.array([(i.orig_width, i.orig_height) for i in letterboxes], np.float32)[image_idx]
    xyxy = ((xyxy - np.tile(pads, 2)) / gains).clip(0, np.tile(sizes, 2)).astype(np.float32)
    starts = np.searchsorted(image_idx, np.arange(len(letterboxes)))
    ends = np.searchsorted(image_idx, np.arange(len(letterboxes)), side="right")
    names = tuple(class_names)
    for b in np.flatnonzero(ends > starts):
        lo, hi = starts[b], ends[b]
        results[b] = Detections(xyxy[lo:hi], scores[lo:hi], classes[lo:hi], names)
    return results


class OnnxDetector:
    """Runs one ONNX model package on one engine: ``pre_process`` -> ``engine.forward`` -> ``post_process``.

    Thread-safe for concurrent ``detect`` calls (engines are, and the reusable batch arrays are per thread).
    A batch from ``pre_process`` is only valid until the same thread's next ``pre_process``.

    ``max_batch`` is both the most frames per ``detect`` pass and the most images per engine call (the batch
    the engine was opened for: OpenVINO compiles for at most, and exactly, that many); with test-time
    augmentation a pass of ``max_batch`` frames is ``views x max_batch`` images, run in ``views`` engine calls.
    """

    def __init__(self, engine: Engine, metadata: ModelMetadata, *, max_batch: int = 8) -> None:
        self.engine = engine
        self.metadata = metadata
        self.max_batch = max(1, max_batch)
        self._buffers = _BatchBuffers()

    @classmethod
    def from_package(cls, path: Path | str, *, threads: int | None = None, max_batch: int = 8,
                     engine: str = "auto", precision: str = "auto", cache_dir: Path | None = None,
                     tta: TTA | Literal["package"] | None = PACKAGE_TTA) -> OnnxDetector:
        """Verify the package's sha256 on the very bytes the engine compiles, then open it on ``engine``.

        ``tta``: the package's own ``metadata.tta`` by default; a ``TTA`` (or ``None``: off) evaluates the package
        with another setting without editing it (``qcline evaluate --tta``); the bytes and their sha256 are
        the package's either way.
        """
        package = ModelPackage.load(path, verify=False)
        if tta != PACKAGE_TTA:
            package = ModelPackage(package.path, replace(package.metadata, tta=tta))
        model_bytes = package.model_path.read_bytes()
        actual = sha256_bytes(model_bytes)
        if actual != package.metadata.sha256:
            raise ModelPackageError(
                f"{package.model_path} does not match its metadata: sha256 {actual} != "
                f"{package.metadata.sha256} (corrupt or replaced file)")
        runner = open_engine(model_bytes, package.metadata, engine=engine, precision=precision, threads=threads,
                             max_batch=max_batch, cache_dir=cache_dir, source=str(package.model_path))
        _check_output_shape(runner.output_shape, package)
        log.info("loaded model %s (%s) sha256=%s on %s %s", package.metadata.name, package.path, actual[:12],
                 runner.name, runner.precision)
        return cls(runner, package.metadata, max_batch=max_batch)

    @classmethod
    def from_settings(cls, path: Path | str, settings: Settings, *, max_batch: int | None = None,
                      tta: TTA | Literal["package"] | None = PACKAGE_TTA) -> OnnxDetector:
        """The station's detector: engine, precision, threads, batch and compiled-model cache from settings."""
        return cls.from_package(path, threads=settings.threads or None,
                                max_batch=settings.batch_size if max_batch is None else max_batch,
                                engine=settings.engine, precision=settings.precision,
                                cache_dir=settings.engine_cache_dir, tta=tta)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def model_sha256(self) -> str:
        return self.metadata.sha256

    @property
    def input_size(self) -> tuple[int, int]:
        return self.metadata.input_width, self.metadata.input_height

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def precision(self) -> str:
        return self.engine.precision

    @property
    def tta(self) -> TTA | None:
        return self.metadata.tta

    def pre_process(self, images: Sequence[Image]) -> tuple[npt.NDArray[np.uint8], list[Letterbox]]:
        meta = self.metadata
        return pre_process(images, meta.input_width, meta.input_height, meta.pad_value, buffers=self._buffers,
                           flips=meta.tta.flips if meta.tta is not None else ())

    def forward(self, batch: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """The engine's forward, in calls of at most ``max_batch`` images (a TTA batch holds more)."""
        if batch.shape[0] <= self.max_batch:
            return self.engine.forward(batch)
        return np.concatenate([self.engine.forward(batch[start:start + self.max_batch])
                               for start in range(0, batch.shape[0], self.max_batch)])

    def post_process(self, output: npt.NDArray[np.float32], letterboxes: Sequence[Letterbox],
                     confidence: float | None = None) -> list[Detections]:
        t = self.metadata.thresholds
        return post_process(output, letterboxes, self.class_names,
                            confidence=t.confidence if confidence is None else confidence,
                            iou=t.iou, max_detections=t.max_detections, tta=self.metadata.tta,
                            input_size=self.input_size)

    def detect(self, images: Sequence[Image], confidence: float | None = None) -> list[Detections]:
        """Detect on any number of images, in forward passes of at most ``max_batch``."""
        results: list[Detections] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start:start + self.max_batch]
            batch, boxes = self.pre_process(chunk)
            results.extend(self.post_process(self.forward(batch), boxes, confidence))
        return results

    def warmup(self) -> None:
        """Forward passes on blank frames so the first real frame does not pay for lazy initialisation (one at
        the largest batch, one single frame: OpenVINO specialises kernels per shape)."""
        blank = np.full((self.metadata.input_height, self.metadata.input_width, 3), 114, np.uint8)
        self.detect([blank] * self.max_batch)
        self.detect([blank])


def _check_output_shape(output_shape: Sequence[int | str | None], package: ModelPackage) -> None:
    """The head must be ``[B, 4 + nc, N]`` for the classes the metadata names."""
    expected = 4 + len(package.metadata.classes)
    if len(output_shape) != 3 or (isinstance(output_shape[1], int) and output_shape[1] != expected):
        raise ModelPackageError(
            f"{package.model_path} outputs {list(output_shape)}, but metadata names "
            f"{len(package.metadata.classes)} classes (expected [B, {expected}, N])")
