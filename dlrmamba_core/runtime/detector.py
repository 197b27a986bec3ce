"""The edge inference engine: RGB + thermal images in, detections in RGB pixels out.

``Detector`` = validation -> shared pre-processing (``data.preprocess.prepare_inputs``:
thermal normalization, registration, letterbox) -> a backend (onnxruntime by default; torch
for development) -> the shared decode + NMS (``runtime.postprocess.nms``) -> boxes mapped back
to original RGB pixels (``data.letterbox.unletterbox_boxes``).

This module imports without torch. The optional torch backend (a ``.pt`` checkpoint, for
development) lives outside the robot path, in ``deploy.torch_backend``, and is imported only
when ``backend="torch"`` is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import logging
import os
from pathlib import Path
import time
from typing import Any, Protocol

import numpy as np

from dlrmamba_core.errors import ConfigError, InputError, ModelFileError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.input_checks import InputWarning, InputWarningCounter, check_pair
from dlrmamba_core.runtime.metadata import (
    ModelInfo,
    card_path_for,
    read_model_card,
    verify_model_card,
)
from dlrmamba_core.runtime.ort_session import GRAPH_OPTIMIZATION

__all__ = ["BACKENDS", "GRAPH_OPTIMIZATION", "Detector", "OrtBackend", "check_inputs"]

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "torch")
_THERMAL_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32),
                   np.dtype(np.float64))


class Backend(Protocol):
    """A network runner: letterboxed float inputs -> raw predictions.

    A segment model's backend has ``num_protos`` K > 0 and also ``run_segment``.
    """

    info: ModelInfo
    num_protos: int

    def run(self, rgb: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        """(1, 3, h, w) and (1, 1, h, w) float32 in [0, 1] -> (1, 4 + nc, A) float32."""
        ...

    def run_segment(self, rgb: np.ndarray, thermal: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Segment models: -> (predictions (1, 4 + nc + K, A), protos (1, K, h/4, w/4))."""
        ...


class OrtBackend:
    """onnxruntime session of a ``dlrmamba export``-ed model.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (the ones that matter on a CPU for batch 1).
        graph_optimization: ``disable`` | ``basic`` | ``extended`` | ``all``.
        providers: execution providers in priority order (default: CPU only).
        inter_op_threads: inter-op threads (1: the graph runs sequentially).
        profile_prefix: if set, ORT writes a JSON profile with this file prefix
            (``end_profiling()`` returns its path).
        spin: whether idle intra-op threads busy-wait (onnxruntime's own default; off here,
            see :func:`~dlrmamba_core.runtime.ort_session.ort_session`).

    Raises:
        ModelFileError: the file is missing, not a loadable ONNX model, or its inputs/outputs
            or metadata are not those of a dlrmamba model.
        ConfigError: an unknown optimization level or provider.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int = 2,
        graph_optimization: str = "all",
        providers: Sequence[str] | None = None,
        inter_op_threads: int = 1,
        profile_prefix: str | None = None,
        spin: bool = False,
    ) -> None:
        from dlrmamba_core.runtime.ort_session import ort_session

        self.path = Path(path)
        self.session = ort_session(self.path, threads, inter_op_threads, graph_optimization,
                                   providers, profile_prefix, allow_spinning=spin)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(meta, str(self.path))
        self._check_io()

    def _check_io(self) -> None:
        h, w = self.info.input_hw
        expect = {"rgb": [1, 3, h, w], "thermal": [1, 1, h, w]}
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != set(expect):
            raise ModelFileError(
                f"{self.path}: inputs are {sorted(inputs)}, expected ['rgb', 'thermal']; "
                "re-export with `dlrmamba export`"
            )
        for name, shape in expect.items():
            got = list(inputs[name].shape)
            if got != shape:
                raise ModelFileError(
                    f"{self.path}: input {name!r} has shape {got} but the metadata input size "
                    f"{self.info.input_hw} implies {shape}; re-export the model"
                )
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        if names not in (["predictions"], ["predictions", "protos"]):
            raise ModelFileError(
                f"{self.path}: outputs are {names}, expected ['predictions'] (or "
                "['predictions', 'protos'] of a segment model); re-export with `dlrmamba export`"
            )
        # A segment model: K prototypes, K mask coefficients after the class rows.
        k = outputs[1].shape[1] if len(outputs) == 2 else 0
        if not isinstance(k, int):
            raise ModelFileError(
                f"{self.path}: output 'protos' has shape {outputs[1].shape}: the prototype "
                "count must be a fixed size; re-export with `dlrmamba export`"
            )
        self.num_protos = k
        channels = outputs[0].shape[1] if len(outputs[0].shape) == 3 else None
        if channels != 4 + self.info.num_classes + self.num_protos:
            raise ModelFileError(
                f"{self.path}: output 'predictions' has shape {outputs[0].shape}, expected "
                f"(1, {4 + self.info.num_classes + self.num_protos}, A) for "
                f"{self.info.num_classes} classes and {self.num_protos} mask prototypes; "
                "the metadata does not belong to this graph: re-export"
            )

    def run(self, rgb: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        """Run the session; see :class:`Backend` (a segment model: box and class rows)."""
        (out,) = self.session.run(["predictions"], {"rgb": rgb, "thermal": thermal})
        return np.asarray(out)[:, : 4 + self.info.num_classes]

    def run_segment(self, rgb: np.ndarray, thermal: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Segment models: see :class:`Backend`."""
        pred, protos = self.session.run(["predictions", "protos"],
                                        {"rgb": rgb, "thermal": thermal})
        return np.asarray(pred), np.asarray(protos)

    def end_profiling(self) -> str:
        """Stop ORT profiling and return the profile JSON path."""
        return str(self.session.end_profiling())


def check_inputs(rgb: Any, thermal: Any, rgb_order: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate detector inputs; return them as arrays (RGB channel order).

    Args:
        rgb: (H, W, 3) uint8 color image.
        thermal: (Ht, Wt) or (Ht, Wt, 1) uint8 / uint16 raw counts, or float32/64 in [0, 1].
        rgb_order: ``"rgb"`` or ``"bgr"`` (OpenCV's order); ``bgr`` is flipped here.

    Raises:
        InputError: wrong type, shape, channel count, dtype, or an empty image.
        ConfigError: ``rgb_order`` is not ``rgb`` or ``bgr``.
    """
    if rgb_order not in ("rgb", "bgr"):
        raise ConfigError(f"rgb_order={rgb_order!r}: use 'rgb' or 'bgr'")
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"rgb must be a numpy array (H, W, 3) uint8, got {type(rgb).__name__}")
    if not isinstance(thermal, np.ndarray):
        raise InputError(
            f"thermal must be a numpy array (H, W) uint8/uint16, got {type(thermal).__name__}"
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        hint = " (a single-channel image? pass it as thermal)" if rgb.ndim == 2 else ""
        raise InputError(
            f"rgb has shape {rgb.shape}: expected (H, W, 3) with 3 color channels{hint}"
        )
    if rgb.dtype != np.uint8:
        raise InputError(f"rgb has dtype {rgb.dtype}: expected uint8 (0..255)")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"rgb is empty (shape {rgb.shape}): expected H, W > 0")
    if thermal.ndim == 3 and thermal.shape[2] == 1:
        thermal = thermal[:, :, 0]
    if thermal.ndim != 2:
        raise InputError(
            f"thermal has shape {thermal.shape}: expected (H, W) or (H, W, 1) single-channel "
            "counts (convert a 3-channel false-color image to gray first)"
        )
    if thermal.dtype not in _THERMAL_DTYPES:
        raise InputError(
            f"thermal has dtype {thermal.dtype}: expected uint8 or uint16 raw counts "
            "(or float32/float64 in [0, 1])"
        )
    if thermal.shape[0] == 0 or thermal.shape[1] == 0:
        raise InputError(f"thermal is empty (shape {thermal.shape}): expected H, W > 0")
    if rgb_order == "bgr":
        rgb = np.ascontiguousarray(rgb[:, :, ::-1])
    return rgb, thermal


class Detector:
    """RGB + thermal object detector for one image pair at a time (batch 1, CPU).

    Args:
        model_path: an ``.onnx`` file (``backend="onnxruntime"``) or a ``.pt`` checkpoint
            written by ``models.io.save_model`` (``backend="torch"``).
        backend: ``"onnxruntime"`` (default, torch-free) or ``"torch"`` (development).
        threads: intra-op threads of the backend.
        conf_threshold: minimum class score kept (0..1).
        iou_threshold: class-aware NMS IoU (0..1).
        max_detections: detections kept per image, highest scores first.
        homography: default (3, 3) thermal -> RGB homography of the rig, used when
            :meth:`detect` gets none; None: the thermal image covers the RGB view (resized).
        thermal_norm: thermal normalization (``data.thermal.ThermalNorm`` or its dict, or a
            ``RunningAGC`` for a stream); None: the settings the model was trained with (its
            metadata).
        graph_optimization: onnxruntime graph optimization level (see ``GRAPH_OPTIMIZATION``).
        providers: onnxruntime execution providers (default CPU).
        verify_card: check the ONNX file against its model card ``<stem>.json`` when present
            (checksum and metadata). A card that exists but does not match is an error.
        require_card: also fail when the card is missing (what the ROS node does for shipped
            models).
        spin: let onnxruntime's idle threads busy-wait between runs (its own default). Off
            here: a robot's CPU also runs the camera drivers, the ROS executor and this
            Detector's own pre-processing, which spinning threads slow down (measured in
            docs/runtime.md); on a machine that does nothing else, ``spin=True`` may shave a
            little latency.

    Raises:
        ModelFileError: missing / corrupt model, metadata or card mismatch, bad checksum.
        ConfigError: invalid thresholds, backend or thread count.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        backend: str = "onnxruntime",
        threads: int = 2,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        homography: np.ndarray | None = None,
        thermal_norm: Any = None,
        graph_optimization: str = "all",
        providers: Sequence[str] | None = None,
        verify_card: bool = True,
        require_card: bool = False,
        spin: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"backend={backend!r}: use one of {BACKENDS}")
        if not 0.0 <= conf_threshold <= 1.0 or not 0.0 < iou_threshold <= 1.0:
            raise ConfigError(
                f"score threshold {conf_threshold} (--conf, node parameter conf_threshold) "
                f"and NMS IoU {iou_threshold} (--iou, iou_threshold): need 0 <= score <= 1 "
                "and 0 < IoU <= 1"
            )
        if max_detections < 1:
            raise ConfigError(f"max_detections={max_detections}: need >= 1")
        path = Path(model_path)
        if not path.is_file():
            raise ModelFileError(
                f"{path}: no such model file; pass the path of a .onnx model (see models/, "
                "or create one with `dlrmamba export CKPT --out M.onnx`)"
            )
        self.model_path = path
        self.backend_name = backend
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.homography = None if homography is None else np.asarray(homography, np.float64)
        self.backend: Backend
        if backend == "onnxruntime":
            if path.suffix != ".onnx":
                raise ModelFileError(
                    f"{path}: the default (onnxruntime) backend needs a .onnx file; run a .pt "
                    "checkpoint with `dlrmamba detect --backend torch`, or export it: "
                    f"`dlrmamba export {path} --out model.onnx`"
                )
            self.backend = OrtBackend(path, threads, graph_optimization, providers, spin=spin)
            self.card = self._check_card(verify_card, require_card)
        else:
            from dlrmamba_core.deploy.torch_backend import TorchBackend

            self.backend = TorchBackend(path, threads)
            self.card = None
        self.info: ModelInfo = self.backend.info
        self.thermal_norm = self._thermal_norm(thermal_norm)
        self._input_warnings = InputWarningCounter(log)

    def _check_card(self, verify: bool, require: bool) -> dict[str, Any] | None:
        card_path = card_path_for(self.model_path)
        if not card_path.is_file():
            if require:
                raise ModelFileError(
                    f"{self.model_path}: its model card {card_path} is missing; copy the "
                    "ONNX + JSON pair together (or re-export)"
                )
            log.debug("%s: no model card beside it, metadata not cross-checked", self.model_path)
            return None
        card = read_model_card(card_path)
        if verify:
            verify_model_card(self.model_path, self.backend.info, card, str(card_path))
        return card

    def _thermal_norm(self, override: Any) -> Any:
        from dlrmamba_core.data.thermal import RunningAGC, ThermalNorm

        if override is None:
            return ThermalNorm.from_dict(self.backend.info.normalization)
        if isinstance(override, (ThermalNorm, RunningAGC)):
            return override
        if isinstance(override, Mapping):
            return ThermalNorm.from_dict(override)
        raise ConfigError(
            f"thermal_norm must be a ThermalNorm, a dict of its fields, a RunningAGC or None, got "
            f"{type(override).__name__}"
        )

    @property
    def input_warnings(self) -> dict[str, int]:
        """Suspicious input pairs seen so far, counted by warning code (``input_checks``):
        ``thermal_aspect`` (aspect ratios differ, no homography), ``thermal_colour``."""
        return dict(self._input_warnings.counts)

    @property
    def input_warning_messages(self) -> dict[str, str]:
        """The first message of each warning code in :attr:`input_warnings`."""
        return dict(self._input_warnings.messages)

    def record_input_warnings(self, warnings: Sequence[InputWarning]) -> list[InputWarning]:
        """Count warnings found outside :meth:`detect` (e.g. on a file before it was
        converted to grey); each code is logged once. Returns the codes new to this detector."""
        return self._input_warnings.record(warnings)

    @property
    def class_names(self) -> list[str]:
        """The model's class map (index -> name)."""
        return list(self.info.class_names)

    @property
    def input_hw(self) -> tuple[int, int]:
        """Network input (height, width), pixels."""
        return self.info.input_hw

    @property
    def weights_sha256(self) -> str:
        """sha256 of the checkpoint the model came from."""
        return self.info.weights_sha256

    @property
    def segment(self) -> bool:
        """Whether the model predicts instance masks too (a segment model)."""
        return getattr(self.backend, "num_protos", 0) > 0  # none: a detect model

    def run_network(self, rgb: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        """Forward pass only: (1, 3, h, w), (1, 1, h, w) float32 -> (1, 4 + nc, A) float32."""
        return self.backend.run(rgb, thermal)

    def detect(
        self,
        rgb: np.ndarray,
        thermal: np.ndarray,
        homography: np.ndarray | None = None,
        rgb_order: str = "rgb",
        masks: bool = True,
    ) -> Detections:
        """Detect objects in one RGB + thermal pair.

        Args:
            rgb: (H, W, 3) uint8 color image.
            thermal: (Ht, Wt) uint8/uint16 raw thermal image in its own frame (any size).
            homography: (3, 3) thermal -> RGB homography; None: the detector's default,
                and if that is None too, the thermal image is resized onto the RGB frame.
            rgb_order: channel order of ``rgb``: ``"rgb"`` or ``"bgr"`` (OpenCV).
            masks: segment models: also decode the instance masks (``Detections.masks``);
                False skips that work (e.g. while nobody consumes them).

        Returns:
            :class:`Detections` with boxes (and a segment model's masks) in original RGB
            pixels.

        Raises:
            InputError: wrong shape / dtype / empty image, or an invalid homography.
        """
        from dlrmamba_core.data.letterbox import unletterbox_boxes
        from dlrmamba_core.data.preprocess import prepare_inputs
        from dlrmamba_core.runtime.postprocess import nms

        t0 = time.perf_counter()
        rgb, thermal = check_inputs(rgb, thermal, rgb_order)
        hm = self.homography if homography is None else homography
        self._input_warnings.record(check_pair(rgb.shape[:2], thermal, hm))
        prep = prepare_inputs(rgb, thermal, hm, self.info.input_hw,
                              thermal_norm=self.thermal_norm)
        x_rgb = prep.rgb[None]  # (3, h, w) -> (1, 3, h, w)
        x_th = prep.thermal[None]  # (1, h, w) -> (1, 1, h, w)
        t1 = time.perf_counter()
        inst = None
        if masks and self.segment:
            from dlrmamba_core.runtime.segment import segment_outputs

            pred, protos = self.backend.run_segment(x_rgb, x_th)  # (1, 4 + nc + K, A), protos
            t2 = time.perf_counter()
            det, inst = segment_outputs(pred, protos, prep.letterbox, self.conf_threshold,
                                        self.iou_threshold, self.max_detections)
            boxes = det.boxes  # already in original RGB pixels
        else:
            pred = self.backend.run(x_rgb, x_th)  # (1, 4 + nc, A)
            t2 = time.perf_counter()
            det = nms(pred[0], self.conf_threshold, self.iou_threshold, self.max_detections)
            boxes = unletterbox_boxes(det.boxes, prep.letterbox)
        t3 = time.perf_counter()
        return Detections(
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            scores=det.scores,
            class_ids=det.class_ids,
            class_names=self.class_names,
            inference_ms=(t2 - t1) * 1e3,
            timings_ms={
                "preprocess": (t1 - t0) * 1e3,
                "inference": (t2 - t1) * 1e3,
                "postprocess": (t3 - t2) * 1e3,
                "total": (t3 - t0) * 1e3,
            },
            masks=inst,
        )

