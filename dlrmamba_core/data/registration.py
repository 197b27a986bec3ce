"""Thermal -> RGB registration with a 3x3 homography (numpy/OpenCV).

Convention everywhere in dlrmamba: ``H`` maps thermal pixels to RGB pixels,
``p_rgb ~ H @ [x_t, y_t, 1]``. A calibration gives it once per rig;
:func:`estimate_homography` estimates it from image pairs by maximizing the enhanced
correlation coefficient (ECC) between edge maps (edges are where RGB and thermal agree best:
object outlines, the horizon, roads), coarse to fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from dlrmamba_core.data.thermal import normalize_thermal
from dlrmamba_core.errors import InputError

__all__ = [
    "RegistrationResult",
    "corner_error",
    "estimate_homography",
    "scale_homography",
    "warp_thermal",
]


def scale_homography(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """(3, 3) homography that stretches an image of ``src_hw`` onto ``dst_hw`` (same FOV)."""
    sy = dst_hw[0] / src_hw[0]
    sx = dst_hw[1] / src_hw[1]
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def _check_h(homography: np.ndarray) -> np.ndarray:
    h = np.asarray(homography, dtype=np.float64)
    if h.shape != (3, 3) or not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-12:
        raise InputError(
            f"homography must be a finite, invertible 3x3 matrix (thermal -> RGB), got {h!r}"
        )
    return h


def warp_thermal(
    thermal: np.ndarray,
    homography: np.ndarray | None,
    rgb_hw: tuple[int, int],
    border_value: float = 0.0,
) -> np.ndarray:
    """Warp a thermal image into the RGB frame.

    Args:
        thermal: (Ht, Wt) thermal image (any dtype OpenCV can warp: uint8, uint16, float32).
        homography: (3, 3) thermal -> RGB homography, or None when the thermal image already
            covers the RGB field of view (it is then only resized).
        rgb_hw: (height, width) of the RGB image, pixels.
        border_value: value of RGB pixels that the thermal camera does not see.

    Returns:
        (H, W) thermal image in the RGB frame, same dtype as ``thermal``.
    """
    if thermal.ndim == 3 and thermal.shape[2] == 1:
        thermal = thermal[:, :, 0]
    if thermal.ndim != 2:
        raise InputError(f"thermal image has shape {thermal.shape}: expected (H, W)")
    h, w = int(rgb_hw[0]), int(rgb_hw[1])
    if homography is None:
        return cv2.resize(thermal, (w, h), interpolation=cv2.INTER_LINEAR)
    hm = _check_h(homography)
    return cv2.warpPerspective(
        thermal, hm, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def corner_error(h_est: np.ndarray, h_true: np.ndarray, thermal_hw: tuple[int, int]) -> float:
    """Mean distance (RGB pixels) between the thermal image corners mapped by two homographies."""
    th, tw = thermal_hw
    pts = np.array([[0, 0], [tw, 0], [tw, th], [0, th]], np.float64).reshape(-1, 1, 2)
    a = cv2.perspectiveTransform(pts, np.asarray(h_est, np.float64))
    b = cv2.perspectiveTransform(pts, np.asarray(h_true, np.float64))
    return float(np.linalg.norm(a - b, axis=-1).mean())


@dataclass
class RegistrationResult:
    """Result of :func:`estimate_homography`.

    Attributes:
        homography: (3, 3) thermal -> RGB.
        residual: mean over pairs of ``1 - ECC`` between the RGB edge map and the warped
            thermal edge map (0 = perfect match, 1 = uncorrelated).
        per_pair: the residual of each pair.
        converged: per pair, whether ECC converged (False: the pair kept the previous estimate).
    """

    homography: np.ndarray
    residual: float
    per_pair: list[float] = field(default_factory=list)
    converged: list[bool] = field(default_factory=list)


def _edges(img: np.ndarray) -> np.ndarray:
    """Gradient-magnitude edge map, float32, zero-mean-ish and unit-max (blurred for ECC)."""
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    mag = cv2.GaussianBlur(mag, (0, 0), 2.0)  # wider basin of attraction for ECC
    m = float(mag.max())
    return mag / m if m > 0 else mag


def _gray(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"RGB image has shape {rgb.shape}: expected (H, W, 3)")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def estimate_homography(
    rgb_images: Sequence[np.ndarray],
    thermal_images: Sequence[np.ndarray],
    init: np.ndarray | None = None,
    motion: str = "homography",
    work_width: int = 320,
    levels: int = 3,
    iterations: int = 100,
    eps: float = 1e-5,
) -> RegistrationResult:
    """Estimate the thermal -> RGB homography from image pairs (ECC on edge maps).

    Pairs are processed in order, each refining the previous estimate, coarse to fine over an
    image pyramid. The residual is then measured on every pair with the final homography.

    Args:
        rgb_images: RGB images, (H, W, 3) uint8, all the same size.
        thermal_images: thermal images (raw uint16/uint8), all the same size.
        init: initial thermal -> RGB homography (None: same field of view, a plain scale).
        motion: ``"homography"`` (8 dof) or ``"affine"`` (6 dof; more robust with few edges).
        work_width: RGB width (pixels) of the finest pyramid level.
        levels: pyramid levels (each halves the size).
        iterations: ECC iterations per level.
        eps: ECC convergence threshold.

    Returns:
        A :class:`RegistrationResult`.
    """
    if len(rgb_images) == 0 or len(rgb_images) != len(thermal_images):
        raise InputError(
            f"need the same positive number of RGB and thermal images, got {len(rgb_images)} "
            f"and {len(thermal_images)}"
        )
    if motion not in ("homography", "affine"):
        raise InputError(f"motion {motion!r}: use 'homography' or 'affine'")
    rgb_hw = rgb_images[0].shape[:2]
    t_hw = thermal_images[0].shape[:2]
    h_cur = scale_homography(t_hw, rgb_hw) if init is None else _check_h(init).copy()
    # Work in a scaled RGB frame: S maps RGB pixels to work pixels.
    s = work_width / rgb_hw[1]
    warp_mode = cv2.MOTION_HOMOGRAPHY if motion == "homography" else cv2.MOTION_AFFINE

    def edges_pair(rgb: np.ndarray, th: np.ndarray, scale: float) -> tuple[np.ndarray, ...]:
        hw = (max(8, round(rgb_hw[0] * scale)), max(8, round(rgb_hw[1] * scale)))
        g = cv2.resize(_gray(rgb), (hw[1], hw[0]), interpolation=cv2.INTER_AREA)
        t = normalize_thermal(th)
        return _edges(g), _edges(t), np.diag([scale, scale, 1.0])

    converged: list[bool] = []
    for rgb, th in zip(rgb_images, thermal_images, strict=True):
        if rgb.shape[:2] != rgb_hw or th.shape[:2] != t_hw:
            raise InputError("all RGB images (and all thermal images) must have the same size")
        ok = True
        for level in reversed(range(levels)):
            scale = s / (2**level)
            e_rgb, e_t, sm = edges_pair(rgb, th, scale)
            # ECC's warp maps template (work RGB) coords to input (thermal) coords:
            # W = inv(S @ H), and H = inv(S) @ inv(W).
            w0 = np.linalg.inv(sm @ h_cur)
            w0 = (w0 / w0[2, 2]).astype(np.float32)
            if motion == "affine":
                w0 = w0[:2]
            crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
            try:
                _, w = cv2.findTransformECC(e_rgb, e_t, w0, warp_mode, crit, None, 5)
            except cv2.error:
                # ECC raises when it diverges / the images have no texture: keep the estimate.
                ok = False
                break
            w3 = np.vstack([w, [0, 0, 1]]) if motion == "affine" else w
            h_cur = np.linalg.inv(sm) @ np.linalg.inv(w3.astype(np.float64))
            h_cur /= h_cur[2, 2]
        converged.append(ok)

    per_pair = []
    for rgb, th in zip(rgb_images, thermal_images, strict=True):
        e_rgb, e_t, sm = edges_pair(rgb, th, s)
        warped = cv2.warpPerspective(e_t, sm @ h_cur, (e_rgb.shape[1], e_rgb.shape[0]))
        mask = cv2.warpPerspective(
            np.ones_like(e_t), sm @ h_cur, (e_rgb.shape[1], e_rgb.shape[0])
        ) > 0.5
        per_pair.append(1.0 - _ecc(e_rgb[mask], warped[mask]))
    return RegistrationResult(h_cur, float(np.mean(per_pair)), per_pair, converged)


def _ecc(a: np.ndarray, b: np.ndarray) -> float:
    """Enhanced correlation coefficient (zero-mean normalized correlation) of two vectors."""
    if a.size < 16:
        return 0.0
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / den) if den > 0 else 0.0
