"""Compare two sets of detections frame by frame (live node vs offline ``bag-eval``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlrmamba_core.bag.messages import FrameDetections


def compare_detections(live: dict[int, FrameDetections], offline: dict[int, FrameDetections],
                       box_tol_px: float = 1e-3, score_tol: float = 1e-4) -> dict[str, Any]:
    """Frame-by-frame agreement of two detection sets keyed by RGB stamp (ns).

    Two frames agree when they have the same number of detections and, in score order, the
    same class names, boxes within ``box_tol_px`` and scores within ``score_tol``.

    Returns:
        ``live_frames``, ``offline_frames``, ``common_frames``, ``only_live`` and
        ``only_offline`` (stamp lists), ``frames_agreeing``, ``disagreeing`` (stamps),
        ``max_box_diff_px``, ``max_score_diff`` (over common frames with equal counts),
        ``detections_compared``, ``coverage`` (common / offline frames) and ``identical_pairs``
        (every live frame is an offline pair, no frame disagrees).
    """
    common = sorted(set(live) & set(offline))
    max_box = 0.0
    max_score = 0.0
    agree = 0
    compared = 0
    disagree: list[int] = []
    for s in common:
        a, b = _sorted(live[s]), _sorted(offline[s])
        if len(a) != len(b) or a.class_names != b.class_names:
            disagree.append(s)
            continue
        if len(a):
            db = float(np.abs(a.boxes - b.boxes).max())
            ds = float(np.abs(a.scores - b.scores).max())
            max_box, max_score = max(max_box, db), max(max_score, ds)
            compared += len(a)
            if db > box_tol_px or ds > score_tol:
                disagree.append(s)
                continue
        agree += 1
    only_live = sorted(set(live) - set(offline))
    return {
        **_frame_sets(live, offline),
        "frames_agreeing": agree,
        "disagreeing": disagree,
        "max_box_diff_px": max_box,
        "max_score_diff": max_score,
        "detections_compared": compared,
        "coverage": round(len(common) / max(len(offline), 1), 4),
        "identical_pairs": not only_live and not disagree,
        "box_tol_px": box_tol_px,
        "score_tol": score_tol,
    }


def _frame_sets(live: dict[int, Any], offline: dict[int, Any]) -> dict[str, Any]:
    """Frame counts of both sides, and the stamps only one side has."""
    return {"live_frames": len(live), "offline_frames": len(offline),
            "common_frames": len(set(live) & set(offline)),
            "only_live": sorted(set(live) - set(offline)),
            "only_offline": sorted(set(offline) - set(live))}


def _sorted(f: FrameDetections) -> FrameDetections:
    """Detections ordered by (score desc, x1, y1) so equal sets compare equal."""
    order: np.ndarray = (np.lexsort((f.boxes[:, 1], f.boxes[:, 0], -f.scores)) if len(f)
                         else np.zeros(0, np.int64))
    return FrameDetections(f.stamp_ns, f.frame_id, f.boxes[order], f.scores[order],
                           [f.class_names[i] for i in order])


def compare_instance_masks(live: dict[int, np.ndarray],
                           offline: dict[int, np.ndarray]) -> dict[str, Any]:
    """Frame-by-frame agreement of two sets of instance-mask index images keyed by RGB stamp
    (the node's recorded ``~/instance_masks`` vs ``bag-eval --instance-masks``).

    The index values are compared (mono8 and mono16 images of the same values agree): pixel
    = 1 + the detection's index in its frame's ``Detection2DArray``, so two frames agree
    where the detections are in the same order and every mask covers the same pixels.

    Returns:
        ``live_frames``, ``offline_frames``, ``common_frames``, ``only_live``,
        ``only_offline``, ``frames_identical``, ``differing`` (stamps), ``max_pixels_differing``
        (over common frames of one size), ``size_mismatch`` (stamps) and ``identical``
        (at least one common frame, and every live frame is an offline frame, pixel
        for pixel).
    """
    common = sorted(set(live) & set(offline))
    same, differing, size_mismatch = 0, [], []
    max_diff = 0
    for s in common:
        a, b = np.asarray(live[s]), np.asarray(offline[s])
        if a.shape != b.shape:
            size_mismatch.append(s)
            differing.append(s)
            continue
        n = int(np.count_nonzero(a.astype(np.int64) != b.astype(np.int64)))
        max_diff = max(max_diff, n)
        if n:
            differing.append(s)
        else:
            same += 1
    only_live = sorted(set(live) - set(offline))
    return {
        **_frame_sets(live, offline),
        "frames_identical": same,
        "differing": differing,
        "max_pixels_differing": max_diff,
        "size_mismatch": size_mismatch,
        "identical": bool(common) and not only_live and not differing,
    }
