"""Torch backend of the Detector: runs a ``.pt`` checkpoint in eager mode (development only).

Imports torch when used; ``runtime.Detector`` imports this module only for ``backend="torch"``,
so the robot path (``dlrmamba_core.runtime``) never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from dlrmamba_core import __version__
from dlrmamba_core.errors import ModelFileError
from dlrmamba_core.runtime.metadata import ModelInfo, sha256_file

__all__ = ["TorchBackend", "info_from_checkpoint", "load_checkpoint", "set_scan"]


def info_from_checkpoint(meta: Mapping[str, Any], weights_sha256: str) -> ModelInfo:
    """The runtime metadata of a checkpoint (what the exporter writes into the ONNX file).

    Args:
        meta: the dict returned by ``models.io.load_model`` (``variant``, ``class_names``,
            ``input_hw``, ``extra``; ``extra["normalization"]`` holds the thermal
            normalization used in training, default settings when absent).
        weights_sha256: sha256 of the checkpoint file.
    """
    from dlrmamba_core.data.thermal import ThermalNorm

    extra = meta.get("extra") or {}
    norm = ThermalNorm.from_dict(extra.get("normalization") or {}).to_dict()
    hw = meta["input_hw"]
    return ModelInfo(
        class_names=[str(n) for n in meta["class_names"]],
        input_hw=(int(hw[0]), int(hw[1])),
        variant=str(meta["variant"]),
        version=__version__,
        weights_sha256=weights_sha256,
        normalization=norm,
    )


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], ModelInfo]:
    """Load a checkpoint in eval mode on the CPU.

    Returns:
        (model, checkpoint meta, :class:`ModelInfo`).

    Raises:
        ModelFileError: missing file or not a dlrmamba checkpoint.
    """
    from dlrmamba_core.models.io import load_model

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(
            f"{p}: no such checkpoint; pass the best.pt that `dlrmamba train` or "
            "`dlrmamba distill` wrote"
        )
    model, meta = load_model(p, map_location="cpu")
    model.eval()
    return model, meta, info_from_checkpoint(meta, sha256_file(p))


def set_scan(model: Any, scan: Literal["chunked", "ref"]) -> int:
    """Switch every SS2D block of ``model`` to the ``"ref"`` or ``"chunked"`` selective scan.

    Returns:
        How many blocks were switched (0 for models without SS2D, e.g. ``cnn``).
    """
    from dlrmamba_core.layers.ss2d import SS2D

    n = 0
    for m in model.modules():
        if isinstance(m, SS2D):
            m.scan = scan
            n += 1
    return n


class TorchBackend:
    """Eager PyTorch execution of a checkpoint.

    Args:
        path: ``.pt`` checkpoint (``models.io.save_model``).
        threads: ``torch.set_num_threads`` (process-wide).
        scan: selective-scan implementation, ``"chunked"`` (default) or ``"ref"``.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int = 2,
                 scan: Literal["chunked", "ref"] = "chunked") -> None:
        import torch

        torch.set_num_threads(int(threads))
        self.model, self.meta, self.info = load_checkpoint(path)
        set_scan(self.model, scan)
        cfg = self.model.cfg
        self.num_protos = int(cfg.num_protos) if cfg.task == "segment" else 0

    def run(self, rgb: np.ndarray, thermal: np.ndarray) -> np.ndarray:
        """(1, 3, h, w), (1, 1, h, w) float32 -> (1, 4 + nc, A) float32 (a segment model:
        its box and class rows)."""
        if self.num_protos:
            return self.run_segment(rgb, thermal)[0][:, : 4 + self.info.num_classes]
        import torch

        with torch.inference_mode():
            out = self.model(torch.from_numpy(rgb), torch.from_numpy(thermal))
        return out.float().numpy()

    def run_segment(self, rgb: np.ndarray, thermal: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Segment models: -> (predictions (1, 4 + nc + K, A), protos (1, K, h/4, w/4))."""
        import torch

        with torch.inference_mode():
            pred, protos = self.model(torch.from_numpy(rgb), torch.from_numpy(thermal))
        return pred.float().numpy(), protos.float().numpy()
