"""The one "detections of one image" type (numpy only).

Returned by the runtime ``Detector`` (boxes in original RGB pixels, with the model's class
map) and by ``postprocess.nms`` (boxes in network-input pixels, class map empty), and taken by
the COCO evaluation (``engine.evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Detections"]


@dataclass
class Detections:
    """Detections of one image (one RGB + thermal pair).

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` pixels: of the ORIGINAL RGB image when the
            runtime ``Detector`` returns them, of the network input straight from ``nms``.
        scores: (N,) float32 confidences in [0, 1], highest first.
        class_ids: (N,) int64 indices into ``class_names``.
        class_names: the model's whole class map (index -> name), not one name per box;
            empty where it is not known (``nms`` output, evaluation inputs).
        inference_ms: time of the network forward pass alone, milliseconds.
        timings_ms: ``preprocess``, ``inference``, ``postprocess`` and ``total``, milliseconds.
        masks: (N, H, W) uint8 {0, 1} instance masks in original RGB pixels, row i for
            detection i (a segment model through the runtime ``Detector``); None otherwise.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str] = field(default_factory=list)
    inference_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def labels(self) -> list[str]:
        """Class name of each detection, (N,) list."""
        return [self.class_names[int(c)] for c in self.class_ids]

    def to_list(self) -> list[dict[str, Any]]:
        """One plain dict per detection (JSON-serializable): box, score, class id and name."""
        return [
            {
                "box_xyxy": [round(float(v), 2) for v in box],
                "score": round(float(score), 4),
                "class_id": int(cls),
                "class_name": self.class_names[int(cls)],
            }
            for box, score, cls in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]

    @classmethod
    def of(cls, boxes: Any, scores: Any, class_ids: Any,
           class_names: list[str] | None = None) -> Detections:
        """Detections from array-likes, coerced to (N, 4) float32, (N,) float32, (N,) int64."""
        return cls(np.asarray(boxes, np.float32).reshape(-1, 4),
                   np.asarray(scores, np.float32).reshape(-1),
                   np.asarray(class_ids, np.int64).reshape(-1), list(class_names or []))

    @classmethod
    def empty(cls, class_names: list[str]) -> Detections:
        """No detections."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64),
            list(class_names),
        )
