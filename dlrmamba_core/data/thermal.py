"""Thermal image normalization: raw 8/16-bit counts -> float32 in [0, 1] (numpy only).

Two modes, shared by training and the runtime:

- ``"percentile"``: automatic gain control (AGC) per frame; the ``p_lo`` / ``p_hi`` percentiles
  of the frame's counts map to 0 / 1. Percentiles of integer images are computed exactly from
  a histogram (``np.bincount``), which is ~10x faster than ``np.percentile`` on 640x512.
- ``"fixed"``: a fixed count range ``[lo, hi]`` (radiometric cameras, or to keep absolute
  temperatures comparable across frames). Defaults to the full range of the dtype.

Streams use :class:`RunningAGC`, which smooths the percentile range over time so that the
image does not "breathe" when a hot object enters the view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dlrmamba_core.errors import ConfigError, InputError

__all__ = ["RunningAGC", "ThermalNorm", "normalize_thermal", "percentile_range"]

_MODES = ("percentile", "fixed")


@dataclass(frozen=True)
class ThermalNorm:
    """Thermal normalization settings (stored in model files as ``dlrmamba.normalization``).

    Attributes:
        mode: ``"percentile"`` (per-frame AGC) or ``"fixed"`` (fixed count range).
        p_lo: lower percentile (0..100) mapped to 0 in percentile mode.
        p_hi: upper percentile (0..100) mapped to 1 in percentile mode.
        lo: lower count mapped to 0 in fixed mode (None: 0).
        hi: upper count mapped to 1 in fixed mode (None: dtype max, 255 or 65535).
        min_span: smallest count range used, so a flat frame is not amplified into noise
            (counts; for uint8 input it is scaled by 1/256).
    """

    mode: str = "percentile"
    p_lo: float = 1.0
    p_hi: float = 99.0
    lo: float | None = None
    hi: float | None = None
    min_span: float = 64.0

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ConfigError(f"thermal normalization mode {self.mode!r}: use one of {_MODES}")
        if not 0.0 <= self.p_lo < self.p_hi <= 100.0:
            raise ConfigError(
                f"thermal percentiles p_lo={self.p_lo}, p_hi={self.p_hi}: need "
                "0 <= p_lo < p_hi <= 100"
            )
        if self.lo is not None and self.hi is not None and not self.hi > self.lo:
            raise ConfigError(f"thermal fixed range lo={self.lo}, hi={self.hi}: need hi > lo")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serializable) of the settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThermalNorm:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"unknown thermal normalization keys {sorted(unknown)}: known are {sorted(known)}"
            )
        return cls(**dict(d))


def _check_thermal(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim != 2:
        raise InputError(
            f"thermal image has shape {img.shape}: expected (H, W) single-channel counts"
        )
    if img.dtype not in (np.uint8, np.uint16) and not np.issubdtype(img.dtype, np.floating):
        raise InputError(
            f"thermal image has dtype {img.dtype}: expected uint8, uint16 (raw counts) or float"
        )
    if img.size == 0:
        raise InputError("thermal image is empty (0 pixels)")
    return img


def percentile_range(img: np.ndarray, p_lo: float, p_hi: float) -> tuple[float, float]:
    """Return the ``p_lo`` and ``p_hi`` percentiles of a thermal image's counts.

    Args:
        img: (H, W) uint8 / uint16 / float thermal image.
        p_lo: lower percentile, 0..100.
        p_hi: upper percentile, 0..100.

    Returns:
        (lo, hi) in counts (lower-nearest rank, exact for integer images).
    """
    img = _check_thermal(img)
    if img.dtype in (np.uint8, np.uint16):
        # Exact integer percentiles from a histogram: O(N + bins) instead of a sort.
        hist = np.bincount(img.ravel(), minlength=256 if img.dtype == np.uint8 else 0)
        cdf = np.cumsum(hist)
        n = cdf[-1]
        lo = int(np.searchsorted(cdf, max(1, int(np.ceil(n * p_lo / 100.0)))))
        hi = int(np.searchsorted(cdf, max(1, int(np.ceil(n * p_hi / 100.0)))))
        return float(lo), float(hi)
    lo_f, hi_f = np.percentile(img, [p_lo, p_hi])
    return float(lo_f), float(hi_f)


def _apply_range(img: np.ndarray, lo: float, hi: float, min_span: float) -> np.ndarray:
    if img.dtype == np.uint8:
        min_span = min_span / 256.0  # min_span is given in 16-bit counts
    elif np.issubdtype(img.dtype, np.floating):
        min_span = min_span / 65536.0
    if hi - lo < min_span:
        # Flat frame: centre a min_span window on it instead of amplifying noise.
        mid = 0.5 * (hi + lo)
        lo, hi = mid - 0.5 * min_span, mid + 0.5 * min_span
    out = (img.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def normalize_thermal(
    img: np.ndarray,
    mode: str = "percentile",
    lo: float | None = None,
    hi: float | None = None,
    p_lo: float = 1.0,
    p_hi: float = 99.0,
    min_span: float = 64.0,
) -> np.ndarray:
    """Normalize a thermal image to float32 in [0, 1].

    Args:
        img: (H, W) (or (H, W, 1)) uint16 raw counts, uint8, or float.
        mode: ``"percentile"`` (per-frame AGC between percentiles ``p_lo`` and ``p_hi``) or
            ``"fixed"`` (counts ``lo`` -> 0, ``hi`` -> 1; defaults 0 and the dtype maximum).
        lo: fixed-mode lower count.
        hi: fixed-mode upper count.
        p_lo: percentile-mode lower percentile (0..100).
        p_hi: percentile-mode upper percentile (0..100).
        min_span: smallest range in 16-bit counts (flat frames are not stretched into noise).

    Returns:
        (H, W) float32 in [0, 1].

    Raises:
        InputError: the image is not a 2-D uint8/uint16/float array.
        ConfigError: an invalid mode or range.
    """
    spec = ThermalNorm(mode=mode, p_lo=p_lo, p_hi=p_hi, lo=lo, hi=hi, min_span=min_span)
    return apply_norm(img, spec)


def _fixed_range(img: np.ndarray, spec: ThermalNorm) -> tuple[float, float]:
    is_float = np.issubdtype(img.dtype, np.floating)
    default_hi = 1.0 if is_float else float(np.iinfo(img.dtype).max)
    lo = 0.0 if spec.lo is None else float(spec.lo)
    hi = default_hi if spec.hi is None else float(spec.hi)
    if not hi > lo:
        raise ConfigError(f"thermal fixed range lo={lo}, hi={hi}: need hi > lo")
    return lo, hi


def apply_norm(img: np.ndarray, spec: ThermalNorm) -> np.ndarray:
    """Normalize ``img`` with the settings ``spec`` (see :func:`normalize_thermal`)."""
    img = _check_thermal(img)
    if spec.mode == "fixed":
        lo, hi = _fixed_range(img, spec)
    else:
        lo, hi = percentile_range(img, spec.p_lo, spec.p_hi)
    return _apply_range(img, lo, hi, spec.min_span)


class RunningAGC:
    """Percentile AGC for a stream: the range is an exponential moving average over frames.

    Args:
        p_lo: lower percentile (0..100).
        p_hi: upper percentile (0..100).
        alpha: weight of the newest frame in the moving average (0 < alpha <= 1);
            ``alpha=1`` is per-frame AGC.
        min_span: smallest range in 16-bit counts.

    Example:
        >>> agc = RunningAGC(alpha=0.2)
        >>> out = agc(np.full((4, 4), 3000, np.uint16))  # float32 (4, 4) in [0, 1]
    """

    def __init__(
        self, p_lo: float = 1.0, p_hi: float = 99.0, alpha: float = 0.1, min_span: float = 64.0
    ) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"RunningAGC alpha={alpha}: need 0 < alpha <= 1")
        self.spec = ThermalNorm(mode="percentile", p_lo=p_lo, p_hi=p_hi, min_span=min_span)
        self.alpha = alpha
        self.lo: float | None = None
        self.hi: float | None = None

    def reset(self) -> None:
        """Forget the running range (e.g. after a camera restart or a gain change)."""
        self.lo = None
        self.hi = None

    def __call__(self, img: np.ndarray) -> np.ndarray:
        """Update the running range with ``img`` and return it normalized, (H, W) float32."""
        img = _check_thermal(img)
        lo, hi = percentile_range(img, self.spec.p_lo, self.spec.p_hi)
        if self.lo is None or self.hi is None:
            self.lo, self.hi = lo, hi
        else:
            self.lo += self.alpha * (lo - self.lo)
            self.hi += self.alpha * (hi - self.hi)
        return _apply_range(img, self.lo, self.hi, self.spec.min_span)
