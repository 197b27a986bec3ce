"""The sample type every dataset reader, the generator and the runtime agree on (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PairSample:
    """One RGB + thermal image pair with its labels.

    Attributes:
        rgb: (H, W, 3) uint8, **RGB** channel order.
        thermal: (Ht, Wt) uint16 raw counts or uint8, in the thermal camera's own frame
            (its own size and field of view).
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in RGB pixels.
        labels: (N,) int64 class indices into the dataset's class names.
        homography: (3, 3) float64 mapping thermal pixels to RGB pixels
            (``p_rgb ~ H @ p_thermal``), or None when the thermal image is already registered
            to the RGB frame (then it is only resized to the RGB size).
        image_id: a stable id (file stem, or ``seq/frame``).
        visible: (N, 2) bool, ``[visible_in_rgb, visible_in_thermal]`` per object, or None
            when the dataset does not say.
        meta: free-form extras (condition, scene, timestamps in ns, source paths, ...).
        masks: (N, H, W) uint8 instance masks in RGB pixels, values {0, 1}, row ``i`` for
            box ``i`` (the mask's tight box is about the box: within a pixel for the
            synthetic data), or None when the dataset has no masks. Conventions (continuous
            pixel coordinates, RLE, polygons) in :mod:`dlrmamba_core.data.masks`.
    """

    rgb: np.ndarray
    thermal: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    homography: np.ndarray | None = None
    image_id: str = ""
    visible: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    masks: np.ndarray | None = None
