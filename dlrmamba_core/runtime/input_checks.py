"""Plausibility checks of an RGB + thermal pair that are warnings, not errors (torch-free).

The detector accepts a thermal image of any size: without a homography it is resized onto the
RGB frame. That is right for a registered rig with a lower-resolution thermal camera, and
silently wrong when the thermal view has another shape (a portrait image, an 8x6 thumbnail) or
when the "thermal" image is really a colour photo. :func:`check_pair` names both cases; the
runtime ``Detector`` logs each kind once and counts them (``Detector.input_warnings``), the
``detect`` command prints them and the ROS node reports them in its diagnostics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import logging

import numpy as np

__all__ = [
    "THERMAL_ASPECT",
    "THERMAL_COLOUR",
    "InputWarning",
    "InputWarningCounter",
    "check_pair",
    "is_colour",
]

log = logging.getLogger(__name__)

#: the thermal aspect ratio differs from the RGB one and no homography maps it.
THERMAL_ASPECT = "thermal_aspect"
#: the "thermal" image has colour (its channels differ).
THERMAL_COLOUR = "thermal_colour"

#: mean absolute difference between channels, as a fraction of the dtype's range, above which a
#: 3-channel image counts as colour (grey JPEGs differ by about 1/255 from chroma rounding).
COLOUR_TOLERANCE = 4.0 / 255.0


@dataclass(frozen=True)
class InputWarning:
    """One suspicious property of an input pair.

    Attributes:
        code: stable identifier (:data:`THERMAL_ASPECT`, :data:`THERMAL_COLOUR`).
        message: what is wrong and what to do.
    """

    code: str
    message: str


def is_colour(img: np.ndarray) -> bool:
    """Whether a (H, W, 3|4) image has channels that differ (colour, not grey saved as RGB).

    Looks at every 4th pixel of each axis (enough for a photo, cheap for a frame stream).
    """
    if img.ndim != 3 or img.shape[2] < 3:
        return False
    sub = img[::4, ::4, :3].astype(np.float32)  # (H/4, W/4, 3)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    diff = (np.abs(sub[..., 0] - sub[..., 1]) + np.abs(sub[..., 1] - sub[..., 2])) / 2
    return bool(diff.mean() / scale > COLOUR_TOLERANCE)


def check_pair(rgb_hw: Sequence[int], thermal: np.ndarray, homography: np.ndarray | None,
               tol: float = 0.1) -> list[InputWarning]:
    """Warnings about an RGB + thermal pair (empty when it looks plausible).

    Args:
        rgb_hw: RGB (height, width), pixels.
        thermal: the thermal image as received: (Ht, Wt), (Ht, Wt, 1) or (Ht, Wt, 3).
        homography: (3, 3) thermal -> RGB, or None (the thermal image is resized onto RGB).
        tol: relative aspect-ratio difference tolerated without a homography (0.1 = 10 %).

    Returns:
        :class:`InputWarning` list: :data:`THERMAL_ASPECT` when the aspect ratios differ by
        more than ``tol`` and no homography is given; :data:`THERMAL_COLOUR` when a 3-channel
        thermal image has channels that differ.
    """
    out: list[InputWarning] = []
    h, w = int(rgb_hw[0]), int(rgb_hw[1])
    th, tw = int(thermal.shape[0]), int(thermal.shape[1])
    if homography is None and min(h, w, th, tw) > 0:
        rgb_ar, th_ar = w / h, tw / th
        if abs(th_ar / rgb_ar - 1.0) > tol:
            out.append(InputWarning(THERMAL_ASPECT, (
                f"thermal image {tw}x{th} (aspect {th_ar:.2f}) does not have the RGB image's "
                f"shape {w}x{h} (aspect {rgb_ar:.2f}) and no homography is given, so it is "
                "stretched onto the RGB view; pass the rig's thermal->RGB homography "
                "(--homography, or the node's homography parameter) or check that the two "
                "images belong together")))
    if is_colour(thermal):
        out.append(InputWarning(THERMAL_COLOUR, (
            f"the thermal image ({tw}x{th}, {thermal.shape[2]} channels) has colour: its "
            "channels differ, so it looks like an RGB photo or a false-colour rendering, not "
            "raw thermal counts; pass the thermal camera's grey (mono8/mono16) image")))
    return out


class InputWarningCounter:
    """Counts :class:`InputWarning` by code and logs the first of each code (once).

    Attributes:
        counts: code -> number of pairs that had it.
        messages: code -> the first message of that code.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.counts: dict[str, int] = {}
        self.messages: dict[str, str] = {}
        self._log = logger or log

    def record(self, warnings: Iterable[InputWarning]) -> list[InputWarning]:
        """Count ``warnings``; log and return those whose code is new."""
        new = []
        for wng in warnings:
            if wng.code not in self.counts:
                self.counts[wng.code] = 0
                self.messages[wng.code] = wng.message
                self._log.warning("%s (logged once; counted in input_warnings[%r])",
                                  wng.message, wng.code)
                new.append(wng)
            self.counts[wng.code] += 1
        return new
