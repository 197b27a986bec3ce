"""Model metadata: the ``dlrmamba.*`` ONNX metadata keys and the model card JSON (torch-free).

Every exported ONNX file carries its class map, input size, thermal normalization, variant,
library version and the sha256 of the checkpoint it was exported from, as ONNX
``metadata_props`` (string key -> string value, JSON-encoded where structured). A model card
``<name>.json`` beside ``<name>.onnx`` repeats them and adds the sha256 of the ONNX file itself,
where the training data came from and the metrics when known. :func:`verify_model_card` checks
that the two agree, so a model file swapped or corrupted on a robot is refused at start-up
instead of silently producing wrong detections.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dlrmamba_core.errors import ModelFileError

__all__ = [
    "CARD_FORMAT",
    "KEY_CLASS_NAMES",
    "KEY_INPUT_HW",
    "KEY_NORMALIZATION",
    "KEY_VARIANT",
    "KEY_VERSION",
    "KEY_WEIGHTS_SHA256",
    "ModelInfo",
    "card_path_for",
    "read_model_card",
    "sha256_file",
    "verify_model_card",
    "write_model_card",
]

KEY_CLASS_NAMES = "dlrmamba.class_names"
KEY_INPUT_HW = "dlrmamba.input_hw"
KEY_VARIANT = "dlrmamba.variant"
KEY_VERSION = "dlrmamba.version"
KEY_WEIGHTS_SHA256 = "dlrmamba.weights_sha256"
KEY_NORMALIZATION = "dlrmamba.normalization"
#: Optional key, only on quantized models (JSON: format, calibration images, ...).
KEY_QUANTIZATION = "dlrmamba.quantization"

_REQUIRED = (
    KEY_CLASS_NAMES,
    KEY_INPUT_HW,
    KEY_VARIANT,
    KEY_VERSION,
    KEY_WEIGHTS_SHA256,
    KEY_NORMALIZATION,
)

#: Version of the model card layout written by :func:`write_model_card`.
CARD_FORMAT = 1


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (what ``sha256sum`` prints).

    Args:
        path: the file.
        chunk_bytes: read size, bytes (the file is never loaded whole).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a model, beyond its graph.

    Attributes:
        class_names: index -> class name (the model's class map).
        input_hw: network input (height, width), pixels; multiples of 32.
        variant: registered model variant (``student``, ``nano``, ...).
        version: ``dlrmamba_core.__version__`` of the exporter.
        weights_sha256: sha256 of the checkpoint file the model was exported from.
        normalization: thermal normalization settings (``ThermalNorm.to_dict()``).
        quantization: None for float models; for INT8 models what was done (format, ...).
    """

    class_names: list[str]
    input_hw: tuple[int, int]
    variant: str
    version: str
    weights_sha256: str
    normalization: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def to_metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` (all values strings, structured ones JSON)."""
        meta = {
            KEY_CLASS_NAMES: json.dumps(list(self.class_names)),
            KEY_INPUT_HW: json.dumps([int(self.input_hw[0]), int(self.input_hw[1])]),
            KEY_VARIANT: self.variant,
            KEY_VERSION: self.version,
            KEY_WEIGHTS_SHA256: self.weights_sha256,
            KEY_NORMALIZATION: json.dumps(self.normalization, sort_keys=True),
        }
        if self.quantization is not None:
            meta[KEY_QUANTIZATION] = json.dumps(self.quantization, sort_keys=True)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str) -> ModelInfo:
        """Parse ONNX ``metadata_props``.

        Args:
            meta: key -> string value, as stored in the ONNX file.
            source: the file name, used in error messages.

        Raises:
            ModelFileError: a required key is missing or a value is malformed.
        """
        missing = [k for k in _REQUIRED if k not in meta]
        if missing:
            raise ModelFileError(
                f"{source}: ONNX metadata lacks {missing}; this file was not exported by "
                "`dlrmamba export` (re-export it from its checkpoint)"
            )
        names = _json_value(meta, KEY_CLASS_NAMES, source)
        if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
            raise ModelFileError(
                f"{source}: metadata {KEY_CLASS_NAMES} must be a non-empty JSON list of "
                f"strings, got {meta[KEY_CLASS_NAMES]!r}; re-export the model"
            )
        hw = _json_value(meta, KEY_INPUT_HW, source)
        if not (isinstance(hw, list) and len(hw) == 2 and all(isinstance(v, int) and v > 0
                                                              for v in hw)):
            raise ModelFileError(
                f"{source}: metadata {KEY_INPUT_HW} must be a JSON list [height, width] of "
                f"positive ints, got {meta[KEY_INPUT_HW]!r}; re-export the model"
            )
        norm = _json_value(meta, KEY_NORMALIZATION, source)
        if not isinstance(norm, dict):
            raise ModelFileError(
                f"{source}: metadata {KEY_NORMALIZATION} must be a JSON object, got "
                f"{meta[KEY_NORMALIZATION]!r}; re-export the model"
            )
        quant = _json_value(meta, KEY_QUANTIZATION, source) if KEY_QUANTIZATION in meta else None
        return cls(
            class_names=list(names),
            input_hw=(int(hw[0]), int(hw[1])),
            variant=meta[KEY_VARIANT],
            version=meta[KEY_VERSION],
            weights_sha256=meta[KEY_WEIGHTS_SHA256],
            normalization=dict(norm),
            quantization=quant,
        )

    def card_fields(self) -> dict[str, Any]:
        """The fields a model card repeats from the metadata (plain JSON values)."""
        out: dict[str, Any] = {
            "variant": self.variant,
            "version": self.version,
            "class_names": list(self.class_names),
            "input_hw": [int(self.input_hw[0]), int(self.input_hw[1])],
            "normalization": dict(self.normalization),
            "weights_sha256": self.weights_sha256,
        }
        if self.quantization is not None:
            out["quantization"] = dict(self.quantization)
        return out


def _json_value(meta: Mapping[str, str], key: str, source: str) -> Any:
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"{source}: metadata {key} is not valid JSON ({exc}): {meta[key]!r}; "
            "re-export the model"
        ) from exc


def card_path_for(model_path: str | os.PathLike[str]) -> Path:
    """The model card beside a model file: ``<dir>/<stem>.json``."""
    p = Path(model_path)
    return p.with_suffix(".json")


def write_model_card(
    model_path: str | os.PathLike[str],
    info: ModelInfo,
    data: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    card_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the model card JSON of ``model_path`` (atomically).

    Args:
        model_path: the ONNX file (must exist: its sha256 goes into the card).
        info: the metadata stored in the ONNX file.
        data: where the weights came from (dataset, split, synthetic or not), if known.
        metrics: evaluation results (e.g. ``{"mAP50": ..}``), if known.
        extra: further fields (parity check results, quantization report, ...).
        card_path: where to write; defaults to :func:`card_path_for`.

    Returns:
        The path of the card.
    """
    from dlrmamba_core.engine.fileio import write_json  # only deploy tools write cards

    model = Path(model_path)
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "model": model.name,
        "onnx_sha256": sha256_file(model),
        **info.card_fields(),
        "data": dict(data) if data else None,
        "metrics": dict(metrics) if metrics else None,
    }
    if extra:
        card.update(dict(extra))
    return write_json(card_path or card_path_for(model), card)


def read_model_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model card JSON.

    Raises:
        ModelFileError: the file is missing, not JSON, or not a card.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model card; re-run `dlrmamba export` to write it")
    try:
        card = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{p}: model card is not valid JSON ({exc}); re-export") from exc
    if not isinstance(card, dict) or "onnx_sha256" not in card:
        raise ModelFileError(
            f"{p}: not a dlrmamba model card (no 'onnx_sha256' field); re-export the model"
        )
    return card


def verify_model_card(
    model_path: str | os.PathLike[str], info: ModelInfo, card: Mapping[str, Any],
    card_source: str = "model card",
) -> None:
    """Check that a model file matches its card: file checksum and every repeated field.

    Args:
        model_path: the ONNX file.
        info: the metadata read from it.
        card: the parsed card (:func:`read_model_card`).
        card_source: the card's path, for messages.

    Raises:
        ModelFileError: the checksum or a metadata field differs.
    """
    actual = sha256_file(model_path)
    if card["onnx_sha256"] != actual:
        raise ModelFileError(
            f"{model_path}: sha256 {actual} does not match {card['onnx_sha256']} in "
            f"{card_source}; the model file is corrupt or was replaced: copy the matching "
            "ONNX + JSON pair again (or re-export)"
        )
    for key, value in info.card_fields().items():
        if key not in card:
            raise ModelFileError(
                f"{card_source}: field {key!r} is missing; re-export to rewrite the card"
            )
        if card[key] != value:
            raise ModelFileError(
                f"{card_source}: {key} = {card[key]!r} but the ONNX metadata of {model_path} "
                f"says {value!r}; the card belongs to another model: copy the matching pair"
            )
