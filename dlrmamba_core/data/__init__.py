"""Multispectral (RGB + thermal) data: sample type, pre-processing, generator, readers.

This package init and its numpy/OpenCV modules import without torch (the edge runtime uses
them); only :mod:`dlrmamba_core.data.torch_dataset` needs torch.
"""

from __future__ import annotations

from dlrmamba_core.data.letterbox import Letterbox, letterbox_params, unletterbox_boxes
from dlrmamba_core.data.preprocess import Prepared, prepare_inputs
from dlrmamba_core.data.registration import estimate_homography, warp_thermal
from dlrmamba_core.data.thermal import RunningAGC, ThermalNorm, normalize_thermal
from dlrmamba_core.data.types import PairSample

__all__ = [
    "Letterbox",
    "PairSample",
    "Prepared",
    "RunningAGC",
    "ThermalNorm",
    "estimate_homography",
    "letterbox_params",
    "normalize_thermal",
    "prepare_inputs",
    "unletterbox_boxes",
    "warp_thermal",
]
