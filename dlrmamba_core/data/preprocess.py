"""Network-input preparation shared by training (val/test) and the runtime (numpy/OpenCV).

``prepare_inputs`` letterboxes the RGB image to the network input and warps the normalized
thermal image straight into the same letterboxed canvas with one ``warpPerspective``
(homography composed with the letterbox affine), so thermal is resampled once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.data.letterbox import (
    Letterbox,
    area_resize,
    letterbox_image,
    letterbox_params,
)
from dlrmamba_core.data.registration import scale_homography
from dlrmamba_core.data.thermal import RunningAGC, ThermalNorm, apply_norm
from dlrmamba_core.errors import InputError

__all__ = ["RGB_PAD", "THERMAL_PAD", "Prepared", "prepare_inputs", "thermal_to_canvas"]

RGB_PAD = 114  # uint8 grey of the letterbox padding (RGB)
THERMAL_PAD = 0.0  # normalized thermal where the thermal camera sees nothing / padding

ThermalNormArg = ThermalNorm | RunningAGC | Mapping[str, Any] | None


@dataclass
class Prepared:
    """Network inputs of one pair.

    Attributes:
        rgb: (3, h, w) float32 in [0, 1], RGB order.
        thermal: (1, h, w) float32 in [0, 1], registered to the RGB frame.
        letterbox: how the RGB image was placed into the (h, w) input.
    """

    rgb: np.ndarray
    thermal: np.ndarray
    letterbox: Letterbox


def _normalize(thermal: np.ndarray, thermal_norm: ThermalNormArg) -> np.ndarray:
    if isinstance(thermal_norm, RunningAGC):
        return thermal_norm(thermal)
    if thermal_norm is None:
        spec = ThermalNorm()
    elif isinstance(thermal_norm, ThermalNorm):
        spec = thermal_norm
    else:
        spec = ThermalNorm.from_dict(thermal_norm)
    return apply_norm(thermal, spec)


def thermal_to_canvas(
    thermal01: np.ndarray,
    homography: np.ndarray | None,
    rgb_hw: tuple[int, int],
    lb: Letterbox,
) -> np.ndarray:
    """Warp a normalized thermal image (its own frame) into the letterboxed network canvas.

    Args:
        thermal01: (Ht, Wt) float32 in [0, 1].
        homography: (3, 3) thermal -> RGB, or None (same field of view as RGB).
        rgb_hw: (H, W) of the RGB image.
        lb: the RGB letterbox.

    Returns:
        (h, w) float32 in the network-input frame; ``THERMAL_PAD`` outside the thermal view.
    """
    th_hw = thermal01.shape[:2]
    h_t2rgb = scale_homography(th_hw, rgb_hw) if homography is None else np.asarray(
        homography, np.float64
    )
    if h_t2rgb.shape != (3, 3) or not np.all(np.isfinite(h_t2rgb)):
        raise InputError(f"homography must be a finite 3x3 matrix, got {h_t2rgb!r}")
    m = lb.matrix() @ h_t2rgb
    # Area pre-shrink when the warp minifies strongly: bilinear warping alone would alias.
    lin = m[:2, :2] / m[2, 2]
    zoom = float(np.sqrt(abs(np.linalg.det(lin))))
    if zoom < 0.75:
        f = max(zoom, 1e-3)
        nw, nh = max(1, round(th_hw[1] * f)), max(1, round(th_hw[0] * f))
        thermal01 = area_resize(thermal01, nh, nw)
        m = m @ np.diag([th_hw[1] / nw, th_hw[0] / nh, 1.0])
    dh, dw = lb.dst_hw
    if np.abs(m / m[2, 2] - np.eye(3)).max() < 1e-9:
        # Identity warp (e.g. 640x512 thermal for 1280x1024 RGB and a 512x640 input, or any
        # same-aspect pair after the area pre-shrink): the bilinear warp samples pixel
        # centres exactly, so it is a copy into the padded canvas (warpPerspective: ~10x).
        out = np.full((dh, dw), THERMAL_PAD, np.float32)
        h, w = min(dh, thermal01.shape[0]), min(dw, thermal01.shape[1])
        out[:h, :w] = thermal01[:h, :w]
        return out
    return cv2.warpPerspective(
        thermal01, m, (dw, dh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=THERMAL_PAD,
    )


def prepare_inputs(
    rgb: np.ndarray,
    thermal: np.ndarray,
    homography: np.ndarray | None,
    input_hw: tuple[int, int],
    thermal_norm: ThermalNormArg = None,
) -> Prepared:
    """Turn one raw RGB + thermal pair into network inputs.

    Args:
        rgb: (H, W, 3) uint8, RGB order.
        thermal: (Ht, Wt) uint16 / uint8 raw counts (or float in [0, 1] with
            ``ThermalNorm(mode="fixed")``) in the thermal camera's own frame.
        homography: (3, 3) thermal -> RGB, or None when thermal has the RGB field of view.
        input_hw: (h, w) network input size, pixels.
        thermal_norm: :class:`ThermalNorm` (or its dict), a :class:`RunningAGC` for streams,
            or None (per-frame percentile AGC 1..99 %).

    Returns:
        :class:`Prepared` with rgb (3, h, w) and thermal (1, h, w), float32 in [0, 1].

    Raises:
        InputError: wrong shapes or dtypes.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(
            f"RGB image has shape {rgb.shape} dtype {rgb.dtype}: expected (H, W, 3) uint8"
        )
    lb = letterbox_params(rgb.shape[:2], input_hw)
    rgb_in = letterbox_image(rgb, lb, RGB_PAD)
    # (h, w, 3) uint8 -> (3, h, w) float32 in [0, 1]
    rgb_t = np.ascontiguousarray(rgb_in.transpose(2, 0, 1), dtype=np.float32)
    rgb_t *= np.float32(1.0 / 255.0)
    t01 = _normalize(thermal, thermal_norm)
    th = thermal_to_canvas(t01, homography, rgb.shape[:2], lb)
    return Prepared(rgb_t, th[None], lb)
