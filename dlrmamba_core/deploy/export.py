"""ONNX export of a checkpoint, with metadata, ``onnx.checker`` and a parity check (torch).

``export_onnx`` writes ``M.onnx`` and its model card ``M.json``:

1. load the checkpoint (``models.io.load_model``), eval mode, chunked selective scan;
2. ``torch.onnx.export`` at a fixed input size (inputs ``rgb`` (1, 3, H, W) and ``thermal``
   (1, 1, H, W), output ``predictions`` (1, 4 + nc, A); a segment model's: ``predictions``
   (1, 4 + nc + K, A) and ``protos`` (1, K, H/4, W/4)) into a temporary file;
3. add the ``dlrmamba.*`` metadata, run ``onnx.checker.check_model(full_check=True)``;
4. parity: onnxruntime vs torch on synthetic RGB-T frames passed through the shared
   pre-processing (raw max abs difference, and the detections after the shared NMS);
5. only then rename the file into place and write the card. Any failure leaves no file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
import logging
import os
from pathlib import Path
from typing import Any
import warnings

import numpy as np

from dlrmamba_core.engine.fileio import atomic_write
from dlrmamba_core.errors import ConfigError, ModelFileError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.metadata import ModelInfo, write_model_card

__all__ = ["ExportResult", "ParityReport", "check_parity", "export_onnx", "parity_inputs"]

log = logging.getLogger(__name__)

MIN_OPSET = 17
MASK_PIXELS_DIFFER_MAX = 1e-3
"""Segment models: largest share of decoded mask pixels allowed to differ, ort vs torch."""


@dataclass
class ParityReport:
    """Agreement of onnxruntime with torch on the same inputs.

    Attributes:
        samples: number of input pairs compared.
        max_abs_diff: max |ort - torch| over all raw outputs (boxes in input pixels and
            class probabilities).
        max_abs_diff_boxes: same, box rows only (network-input pixels).
        max_abs_diff_scores: same, class-probability rows only.
        detections: per sample, number of detections after NMS (torch).
        detections_match: per sample, same count, same classes in the same order, boxes within
            ``box_atol`` px and scores within ``score_atol``.
        max_det_box_diff: largest box coordinate difference among matched detections, px.
        conf_threshold: NMS score threshold used.
        max_abs_diff_protos: segment models: max |ort - torch| over the prototypes (None
            for detect models); the mask coefficient rows are in ``max_abs_diff``.
        mask_pixels_differ: segment models: share of pixels that differ between the masks
            decoded (``runtime.segment.decode_masks``) from ort's and torch's outputs of the
            same detections, over all samples (None for detect models).
    """

    samples: int
    max_abs_diff: float
    max_abs_diff_boxes: float
    max_abs_diff_scores: float
    detections: list[int]
    detections_match: list[bool]
    max_det_box_diff: float
    conf_threshold: float
    max_abs_diff_protos: float | None = None
    mask_pixels_differ: float | None = None

    @property
    def ok(self) -> bool:
        """All samples gave matching detections."""
        return all(self.detections_match)


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    onnx_path: Path
    card_path: Path
    info: ModelInfo
    parity: ParityReport | None
    opset: int
    exporter: str
    onnx_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)


def parity_inputs(input_hw: tuple[int, int], n: int = 2, seed: int = 0,
                  thermal_norm: Any = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Network inputs made from synthetic RGB-T frames through the shared pre-processing.

    Args:
        input_hw: network input (h, w).
        n: number of frames.
        seed: first generator seed.
        thermal_norm: thermal normalization (``ThermalNorm`` or dict), default settings if None.

    Returns:
        ``n`` pairs ``(rgb (1, 3, h, w), thermal (1, 1, h, w))`` float32 in [0, 1].
    """
    from dlrmamba_core.data.preprocess import prepare_inputs
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    out = []
    for i in range(n):
        s = generate_frame(SynthConfig(), seed + i)
        p = prepare_inputs(s.rgb, s.thermal, s.homography, input_hw, thermal_norm=thermal_norm)
        out.append((p.rgb[None], p.thermal[None]))  # (3,h,w) -> (1,3,h,w); (1,h,w) -> (1,1,h,w)
    return out


def _match(a: Detections, b: Detections, box_atol: float,
           score_atol: float) -> tuple[bool, float]:
    boxes_a, scores_a, cls_a = a.boxes, a.scores, a.class_ids
    boxes_b, scores_b, cls_b = b.boxes, b.scores, b.class_ids
    if len(cls_a) != len(cls_b) or not np.array_equal(cls_a, cls_b):
        return False, float("inf")
    if len(cls_a) == 0:
        return True, 0.0
    box_diff = float(np.max(np.abs(boxes_a - boxes_b)))
    score_diff = float(np.max(np.abs(scores_a - scores_b)))
    return box_diff <= box_atol and score_diff <= score_atol, box_diff


def check_parity(
    model: Any,
    onnx_path: str | os.PathLike[str],
    inputs: Sequence[tuple[np.ndarray, np.ndarray]],
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    box_atol: float = 0.05,
    score_atol: float = 1e-4,
) -> ParityReport:
    """Compare an ONNX file in onnxruntime with the torch model on the same inputs.

    Args:
        model: the eval-mode torch model.
        onnx_path: the exported file.
        inputs: pairs ``(rgb (1, 3, h, w), thermal (1, 1, h, w))`` float32.
        conf_threshold: NMS score threshold for the detection comparison.
        iou_threshold: NMS IoU.
        box_atol: largest box difference (input pixels) counted as the same detection.
        score_atol: largest score difference counted as the same detection.

    An untrained model scores every anchor near its prior (~0.01): no detection passes
    ``conf_threshold`` and the detection comparison is vacuous (``detections`` shows the
    counts); the raw-output difference still applies.
    """
    import torch

    from dlrmamba_core.runtime.ort_session import ort_session
    from dlrmamba_core.runtime.postprocess import nms

    sess = ort_session(onnx_path)
    worst = worst_box = worst_score = worst_det = 0.0
    counts: list[int] = []
    matches: list[bool] = []
    masks = _MaskParity() if _is_segment(model) else None
    for rgb, thermal in inputs:
        with torch.inference_mode():
            out = model(torch.from_numpy(rgb), torch.from_numpy(thermal))
        if masks is not None:
            ref, ref_protos = (t.float().numpy() for t in out)
            got, got_protos = sess.run(["predictions", "protos"],
                                       {"rgb": rgb, "thermal": thermal})
            masks.add(ref, ref_protos, got, got_protos, rgb.shape[2:], conf_threshold,
                      iou_threshold)
            k = ref_protos.shape[1]  # score rows below: class probabilities only
        else:
            ref = out.float().numpy()
            (got,) = sess.run(["predictions"], {"rgb": rgb, "thermal": thermal})
            k = 0
        if got.shape != ref.shape:
            raise ModelFileError(
                f"{onnx_path}: onnxruntime output shape {got.shape} != torch {ref.shape}; "
                "the export is broken (report it with the model variant)"
            )
        diff = np.abs(got - ref)  # (1, 4 + nc, A)
        worst = max(worst, float(diff.max()))
        worst_box = max(worst_box, float(diff[:, :4].max()))
        worst_score = max(worst_score, float(diff[:, 4:diff.shape[1] - k].max()))
        det_ref = nms(ref[0, :ref.shape[1] - k], conf_threshold, iou_threshold, 100)
        det_got = nms(got[0, :got.shape[1] - k], conf_threshold, iou_threshold, 100)
        ok, box_diff = _match(det_got, det_ref, box_atol, score_atol)
        counts.append(len(det_ref))
        matches.append(ok)
        if np.isfinite(box_diff):
            worst_det = max(worst_det, box_diff)
    return ParityReport(len(inputs), worst, worst_box, worst_score, counts, matches, worst_det,
                        conf_threshold,
                        None if masks is None else masks.worst_protos,
                        None if masks is None else masks.share_differ())


def _is_segment(model: Any) -> bool:
    return getattr(getattr(model, "cfg", None), "task", "detect") == "segment"


class _MaskParity:
    """Prototype differences and decoded-mask agreement of ort vs torch (segment models).

    The masks of torch's detections (NMS on torch's output) are decoded from each side's own
    coefficients and prototypes (``runtime.segment.decode_masks``, at the input size: an
    identity letterbox), so only the network's numbers differ between them.
    """

    def __init__(self) -> None:
        self.worst_protos = 0.0
        self.differ = 0
        self.pixels = 0

    def add(self, ref: np.ndarray, ref_protos: np.ndarray, got: np.ndarray,
            got_protos: np.ndarray, hw: tuple[int, ...], conf: float, iou: float) -> None:
        """One sample: predictions (1, 4 + nc + K, A) and protos (1, K, h, w) of each."""
        from dlrmamba_core.data.letterbox import letterbox_params
        from dlrmamba_core.runtime.postprocess import nms_indices
        from dlrmamba_core.runtime.segment import decode_masks

        if got_protos.shape != ref_protos.shape:
            raise ModelFileError(f"onnxruntime protos {got_protos.shape} != torch "
                                 f"{ref_protos.shape}; the export is broken")
        self.worst_protos = max(self.worst_protos,
                                float(np.abs(got_protos - ref_protos).max()))
        k = ref_protos.shape[1]
        c = ref.shape[1] - k
        # A low threshold: an untrained model's scores sit near the prior, and masks of
        # some detections are wanted anyway.
        idx = nms_indices(ref[0, :c], min(conf, 0.001), iou, 100)
        lb = letterbox_params((int(hw[0]), int(hw[1])), (int(hw[0]), int(hw[1])))
        boxes = ref[0][:4, idx].T  # (N, 4) input pixels
        m_ref = decode_masks(ref[0][c:, idx].T, ref_protos[0], boxes, lb)
        m_got = decode_masks(got[0][c:, idx].T, got_protos[0], boxes, lb)
        self.differ += int((m_ref != m_got).sum())
        self.pixels += int(m_ref.size)

    def share_differ(self) -> float:
        """Share of decoded mask pixels that differ (0 when no detection was decoded)."""
        return self.differ / self.pixels if self.pixels else 0.0


def _validate_hw(input_hw: Sequence[int]) -> tuple[int, int]:
    if len(input_hw) != 2 or any(int(v) <= 0 or int(v) % 32 for v in input_hw):
        raise ConfigError(
            f"input size {tuple(input_hw)}: need two positive multiples of 32 (H, W), "
            "e.g. 512x640"
        )
    return int(input_hw[0]), int(input_hw[1])


def _export_to(model: Any, info: ModelInfo, path: str, opset: int, dynamo: bool) -> None:
    """Export to ``path`` (not atomic), embed the metadata and run the ONNX checker."""
    import onnx
    import torch

    from dlrmamba_core.deploy.torch_backend import set_scan

    model.eval()
    set_scan(model, "chunked")  # the reference loop would unroll over L in the graph
    h, w = info.input_hw
    rgb = torch.rand(1, 3, h, w)
    thermal = torch.rand(1, 1, h, w)
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of dynamo (expected warning);
            # see docs/runtime.md for which one gives the faster ORT graph.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            kw: dict[str, Any] = {"dynamo": dynamo}
            if dynamo:
                kw["external_data"] = False
                kw["verbose"] = False
            else:
                kw["do_constant_folding"] = True
            outputs = ["predictions", "protos"] if _is_segment(model) else ["predictions"]
            torch.onnx.export(
                model, (rgb, thermal), path, input_names=["rgb", "thermal"],
                output_names=outputs, opset_version=opset, **kw,
            )
        proto = onnx.load(path)
        del proto.metadata_props[:]
        metadata = info.to_metadata()
        if _is_segment(model):
            metadata["dlrmamba.task"] = "segment"
            metadata["dlrmamba.num_protos"] = str(model.cfg.num_protos)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = (
            f"dlrmamba {info.variant} RGB-T detector, input {h}x{w}, "
            f"{info.num_classes} classes"
        )
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, path)
        os.chmod(path, 0o644)  # a model file is meant to be shared
    except (RuntimeError, ValueError, TypeError, onnx.checker.ValidationError) as exc:
        raise ModelFileError(
            f"exporting {info.variant} failed ({type(exc).__name__}: {exc}); no file was "
            "written. Try the other exporter (--dynamo or not) or another opset"
        ) from exc


def export_model_to_onnx(
    model: Any,
    info: ModelInfo,
    out_path: str | os.PathLike[str],
    opset: int = MIN_OPSET,
    dynamo: bool = False,
    parity_data: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    parity_tolerance: float = 1e-3,
) -> tuple[Path, ParityReport | None]:
    """Export an eval-mode torch model to ``out_path`` with metadata (atomic, checked).

    The file is written to a temporary name, checked (``onnx.checker``, then parity with
    torch when ``parity_data`` is given) and only then renamed to ``out_path``: a failed
    export leaves the destination untouched.

    Args:
        model: the torch detector; exported at ``info.input_hw``, batch 1.
        info: the metadata to embed.
        out_path: destination ``.onnx``.
        opset: ONNX opset (>= 17).
        dynamo: use the dynamo exporter (``torch.export``) instead of TorchScript tracing.
        parity_data: input pairs for :func:`check_parity` (empty: no parity check).
        parity_tolerance: largest accepted |ort - torch| on class probabilities; box
            coordinates (pixels) are allowed ``parity_tolerance * max(h, w)``.

    Returns:
        (written path, parity report or None).

    Raises:
        ConfigError: opset < 17 or an input size that is not a multiple of 32.
        ModelFileError: the exporter or the checker failed, or onnxruntime disagrees with
            torch beyond the tolerance.
    """
    if opset < MIN_OPSET:
        raise ConfigError(f"opset {opset}: need >= {MIN_OPSET}")
    _validate_hw(info.input_hw)
    dest = Path(out_path)
    parities: list[ParityReport] = []

    def export_and_check(tmp: str) -> None:
        _export_to(model, info, tmp, opset, dynamo)
        if parity_data:
            parity = check_parity(model, tmp, parity_data)
            parities.append(parity)
            box_tol = parity_tolerance * max(info.input_hw)
            # Masks: a pixel whose logit is ~0 may flip with float noise; allow 0.1 %.
            masks_differ = parity.mask_pixels_differ is not None and \
                parity.mask_pixels_differ > MASK_PIXELS_DIFFER_MAX
            if (parity.max_abs_diff_scores > parity_tolerance
                    or parity.max_abs_diff_boxes > box_tol or not parity.ok or masks_differ):
                raise ModelFileError(
                    f"{dest}: onnxruntime disagrees with torch (max abs diff: scores "
                    f"{parity.max_abs_diff_scores:.2e}, boxes {parity.max_abs_diff_boxes:.2e} "
                    f"px; detections match: {parity.detections_match}; mask pixels that "
                    f"differ: {parity.mask_pixels_differ}); nothing written. "
                    "Try the other exporter or report the variant to the model owner"
                )

    atomic_write(dest, export_and_check)
    return dest, (parities[0] if parities else None)


def export_onnx(
    checkpoint: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    input_hw: Sequence[int] | None = None,
    opset: int = MIN_OPSET,
    dynamo: bool = False,
    parity_samples: int = 2,
    parity_tolerance: float = 1e-3,
    write_card: bool = True,
) -> ExportResult:
    """Export a checkpoint to ONNX, check it, and write its model card.

    Args:
        checkpoint: ``.pt`` file written by ``models.io.save_model``.
        out_path: destination ``.onnx``; the card goes to ``<stem>.json``.
        input_hw: (h, w) input size, multiples of 32; default: the checkpoint's.
        opset: ONNX opset, >= 17.
        dynamo: use the dynamo exporter instead of TorchScript tracing.
        parity_samples: synthetic frames for the parity check (0: skip it).
        parity_tolerance: largest accepted |ort - torch| on class probabilities; box
            coordinates (pixels) are allowed ``parity_tolerance * max(h, w)``.
        write_card: write the model card JSON.

    Returns:
        :class:`ExportResult`.

    Raises:
        ModelFileError: the checkpoint cannot be read, the export fails, or onnxruntime
            disagrees with torch beyond the tolerance (then the ONNX file is removed).
    """
    from dlrmamba_core.deploy.torch_backend import load_checkpoint

    model, meta, info = load_checkpoint(checkpoint)
    if input_hw is not None:
        hw = _validate_hw(input_hw)
        info = ModelInfo(info.class_names, hw, info.variant, info.version,
                         info.weights_sha256, info.normalization)
    inputs = (parity_inputs(_validate_hw(info.input_hw), parity_samples,
                            thermal_norm=info.normalization) if parity_samples > 0 else [])
    dest, parity = export_model_to_onnx(model, info, out_path, opset, dynamo, inputs,
                                        parity_tolerance)
    exporter = "dynamo" if dynamo else "torchscript"
    card = dest.with_suffix(".json")
    if write_card:
        extra = meta.get("extra") or {}
        try:
            card = write_model_card(
                dest, info, data=extra.get("data"), metrics=extra.get("metrics"),
                extra={"export": {"opset": opset, "exporter": exporter,
                                  "checkpoint": Path(checkpoint).name,
                                  "parity": asdict(parity) if parity else None}},
            )
        except BaseException:
            dest.unlink(missing_ok=True)  # an ONNX file without its card would be refused
            raise
    return ExportResult(dest, card, info, parity, opset, exporter, dest.stat().st_size)
