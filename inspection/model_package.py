"""The model package: the one contract between training and the stations (read by the runtime, so it lives here).

A package is a folder with ``model.onnx`` and ``metadata.json``. Everything the runtime needs to use
the model (class names, input size, letterbox padding, thresholds, and optionally test-time augmentation)
travels in the metadata, and the metadata's ``sha256`` pins the exact ONNX bytes, checked before any session
is created.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from inspection.errors import ModelPackageError
from inspection.hashing import sha256_file

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
PACKAGE_FORMAT = "qcline-model/1"
SUPPORTED_HEADS = ("yolov8",)
TTA_FLIPS = ("hflip", "vflip", "hvflip")
"""Flipped views test-time augmentation may add: left-right, top-bottom, both (a 180 degree turn)."""
TTA_FUSIONS = ("wbf",)
"""How the views' boxes become one set: weighted box fusion (``inspection.boxes.weighted_box_fusion``)."""
PACKAGE_TTA: Literal["package"] = "package"
"""``OnnxDetector.from_package(tta=...)``'s default: the package's own ``metadata.tta``."""


@dataclass(frozen=True)
class Thresholds:
    """Detector-level thresholds; each order's profile may only ask for stricter confidence."""

    confidence: float = 0.25
    iou: float = 0.45
    max_detections: int = 300

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ModelPackageError(f"thresholds.confidence must be in [0, 1], got {self.confidence}")
        if not 0.0 < self.iou <= 1.0:
            raise ModelPackageError(f"thresholds.iou must be in (0, 1], got {self.iou}")
        if self.max_detections < 1:
            raise ModelPackageError(f"thresholds.max_detections must be >= 1, got {self.max_detections}")


@dataclass(frozen=True)
class TTA:
    """Test-time augmentation, a runtime option of a package (``metadata.tta``; absent = off).

    The detector adds each ``flips`` view of every letterboxed frame to the same engine batch, maps the views'
    boxes back and fuses them per class by ``fusion`` (weighted box fusion), boxes of different views being
    one object when their IoU exceeds ``iou``. It costs ``1 + len(flips)`` forward images per frame, so it is
    a choice a package states (and ``qcline models measure --tta`` prices), never a code default.
    In ``metadata.json``: ``"tta": {"flips": ["hflip"], "fusion": "wbf", "iou": 0.55}``.
    """

    flips: tuple[str, ...] = ("hflip",)
    fusion: str = "wbf"
    iou: float = 0.55

    def __post_init__(self) -> None:
        if isinstance(self.flips, list):  # TTA(flips=["hflip"]) from Python, as JSON spells it
            object.__setattr__(self, "flips", tuple(self.flips))
        if not isinstance(self.flips, tuple) or not self.flips:
            raise ModelPackageError(f"tta.flips must be a non-empty list of {', '.join(TTA_FLIPS)}, "
                                    f"got {self.flips!r}")
        unknown = [f for f in self.flips if f not in TTA_FLIPS]
        if unknown:
            raise ModelPackageError(f"tta.flips: unknown flip {unknown[0]!r} (one of {', '.join(TTA_FLIPS)})")
        if len(set(self.flips)) != len(self.flips):
            raise ModelPackageError(f"tta.flips has duplicates: {list(self.flips)}")
        if self.fusion not in TTA_FUSIONS:
            raise ModelPackageError(f"tta.fusion {self.fusion!r} is not one of {', '.join(TTA_FUSIONS)}")
        if isinstance(self.iou, bool) or not isinstance(self.iou, int | float) or not 0.0 < self.iou <= 1.0:
            raise ModelPackageError(f"tta.iou must be a number in (0, 1], got {self.iou!r}")

    @property
    def views(self) -> int:
        """Forward images per frame: the frame itself and each flip."""
        return 1 + len(self.flips)

    @property
    def label(self) -> str:
        """``hflip+vflip wbf@0.55``: how a measurement names the setting."""
        return f"{'+'.join(self.flips)} {self.fusion}@{self.iou:g}"

    def to_json(self) -> dict[str, Any]:
        return {"flips": list(self.flips), "fusion": self.fusion, "iou": self.iou}

    @classmethod
    def from_json(cls, raw: Any) -> TTA:
        """``metadata.tta`` as stored; an unknown key is refused (a misspelt option must not pass as off)."""
        if not isinstance(raw, dict):
            raise ModelPackageError(f"metadata.tta must be an object like {{\"flips\": [\"hflip\"]}}, got {raw!r}")
        unknown = sorted(set(raw) - {"flips", "fusion", "iou"})
        if unknown:
            raise ModelPackageError(f"metadata.tta has unknown field {unknown[0]!r} (flips, fusion, iou)")
        flips = raw.get("flips", ["hflip"])
        if not isinstance(flips, list) or not all(isinstance(f, str) for f in flips):
            raise ModelPackageError(f"tta.flips must be a list of {', '.join(TTA_FLIPS)}, got {flips!r}")
        return cls(flips=tuple(cast(list[str], flips)), fusion=str(raw.get("fusion", "wbf")),
                   iou=raw.get("iou", 0.55))

    @classmethod
    def from_spec(cls, spec: str, *, iou: float = 0.55) -> TTA | None:
        """A command line's ``hflip[,vflip]`` (``off`` / ``none``: no augmentation) -> the option."""
        text = spec.strip().lower()
        if text in ("off", "none", ""):
            return None
        return cls(flips=tuple(part.strip() for part in text.split(",")), iou=iou)


@dataclass(frozen=True)
class ModelMetadata:
    name: str
    classes: tuple[str, ...]
    input_width: int
    input_height: int
    sha256: str
    thresholds: Thresholds = field(default_factory=Thresholds)
    head: str = "yolov8"
    pad_value: int = 114
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    format: str = PACKAGE_FORMAT
    tta: TTA | None = None

    def __post_init__(self) -> None:
        if not self.classes or any(not isinstance(c, str) or not c for c in self.classes):
            raise ModelPackageError("metadata.classes must be a non-empty list of class names")
        if len(set(self.classes)) != len(self.classes):
            raise ModelPackageError(f"metadata.classes has duplicates: {list(self.classes)}")
        if self.input_width < 32 or self.input_height < 32 or self.input_width % 32 or self.input_height % 32:
            raise ModelPackageError(
                f"metadata input size must be multiples of 32 >= 32, got {self.input_width}x{self.input_height}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ModelPackageError(f"metadata.sha256 must be 64 lowercase hex characters, got {self.sha256!r}")
        if self.head not in SUPPORTED_HEADS:
            raise ModelPackageError(f"metadata.head {self.head!r} is not one of {SUPPORTED_HEADS}")
        if self.format != PACKAGE_FORMAT:
            raise ModelPackageError(f"metadata.format {self.format!r} is not {PACKAGE_FORMAT!r}")
        if self.tta is not None and not isinstance(self.tta, TTA):
            raise ModelPackageError(f"metadata.tta must be a TTA option, got {type(self.tta).__name__}")

    def to_json(self) -> dict[str, Any]:
        """The metadata as stored; ``tta`` only when set, so a package without it writes what it always did."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        del data["tta"]
        if self.tta is not None:
            data["tta"] = self.tta.to_json()
        return data

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ModelMetadata:
        if not isinstance(raw, dict):
            raise ModelPackageError("metadata.json must hold a JSON object")
        try:
            thresholds = Thresholds(**raw.get("thresholds", {}))
            return cls(
                name=str(raw["name"]),
                classes=tuple(raw["classes"]),
                input_width=int(raw["input_width"]),
                input_height=int(raw["input_height"]),
                sha256=str(raw["sha256"]),
                thresholds=thresholds,
                head=str(raw.get("head", "yolov8")),
                pad_value=int(raw.get("pad_value", 114)),
                dataset=dict(raw.get("dataset", {})),
                metrics=dict(raw.get("metrics", {})),
                training=dict(raw.get("training", {})),
                created_at=str(raw.get("created_at", "")),
                format=str(raw.get("format", PACKAGE_FORMAT)),
                tta=None if raw.get("tta") is None else TTA.from_json(raw["tta"]),
            )
        except KeyError as exc:
            raise ModelPackageError(f"metadata.json is missing the field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise ModelPackageError(f"metadata.json has a field of the wrong type: {exc}") from exc


@dataclass(frozen=True)
class ModelPackage:
    path: Path
    metadata: ModelMetadata

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @classmethod
    def load(cls, path: Path | str, *, verify: bool = True) -> ModelPackage:
        """Read and validate a package; with ``verify`` the ONNX bytes must match ``metadata.sha256``."""
        folder = Path(path)
        if folder.is_file() and folder.name in (MODEL_FILE, METADATA_FILE):
            folder = folder.parent
        if not folder.is_dir():
            raise ModelPackageError(f"model package {folder} is not a folder")
        meta_path, model_path = folder / METADATA_FILE, folder / MODEL_FILE
        for required in (meta_path, model_path):
            if not required.is_file():
                raise ModelPackageError(f"model package {folder} has no {required.name}")
        try:
            raw = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelPackageError(f"{meta_path} is not valid JSON: {exc}") from exc
        metadata = ModelMetadata.from_json(raw)
        if verify:
            actual = sha256_file(model_path)
            if actual != metadata.sha256:
                raise ModelPackageError(
                    f"{model_path} does not match its metadata: sha256 {actual} != {metadata.sha256} "
                    "(corrupt or replaced file)")
        return cls(folder, metadata)


def write_package(folder: Path, onnx_path: Path, metadata: ModelMetadata) -> ModelPackage:
    """Copy ``onnx_path`` into ``folder`` and write metadata whose sha256 is the copy's."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MODEL_FILE
    if Path(onnx_path).resolve() != target.resolve():
        target.write_bytes(Path(onnx_path).read_bytes())
    digest = sha256_file(target)
    data = metadata.to_json()
    data["sha256"] = digest
    (folder / METADATA_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return ModelPackage.load(folder)
