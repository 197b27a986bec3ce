"""The debug overlay: detection boxes over the RGB image, the thermal frame as an inset.

Drawing only (OpenCV primitives); built by the node only while someone subscribes.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# Fixed palette (RGB) so a class keeps its colour across frames and runs.
_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def render(rgb: np.ndarray, thermal: np.ndarray | None, dets: Any,
           inset_fraction: float = 0.25) -> np.ndarray:
    """Draw ``dets`` on a copy of ``rgb`` and paste the thermal frame top-right.

    Args:
        rgb: (H, W, 3) uint8 RGB.
        thermal: (Ht, Wt) uint8/uint16 raw thermal, or None (RGB-only mode).
        dets: Detections (boxes xyxy in RGB pixels, scores, class_ids, class_names).
        inset_fraction: inset width as a fraction of the RGB width.

    Returns:
        (H, W, 3) uint8 RGB image.
    """
    out = np.ascontiguousarray(rgb).copy()
    h, w = out.shape[:2]
    if thermal is not None and thermal.size:
        iw = max(8, int(w * inset_fraction))
        ih = max(8, int(iw * thermal.shape[0] / thermal.shape[1]))
        ih = min(ih, h)
        # Min-max stretch to 8 bit for display only (raw 16-bit counts are not viewable).
        t8 = cv2.normalize(
            thermal, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
        inset = cv2.applyColorMap(cv2.resize(t8, (iw, ih)), cv2.COLORMAP_INFERNO)
        out[:ih, w - iw:] = cv2.cvtColor(inset, cv2.COLOR_BGR2RGB)
        cv2.rectangle(out, (w - iw, 0), (w - 1, ih - 1), (255, 255, 255), 1)
    for box, score, cls in zip(dets.boxes.tolist(), dets.scores.tolist(),
                               dets.class_ids.tolist(), strict=True):
        color = _PALETTE[int(cls) % len(_PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        name = dets.class_names[int(cls)] if int(cls) < len(dets.class_names) else str(cls)
        cv2.putText(out, f"{name} {score:.2f}", (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out
