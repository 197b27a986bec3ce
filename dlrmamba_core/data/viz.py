"""Contact sheets: RGB | thermal | overlay with boxes and masks, one row per pair."""

from __future__ import annotations

from collections.abc import Sequence
import os
from pathlib import Path

import cv2
import numpy as np

from dlrmamba_core.data.registration import warp_thermal
from dlrmamba_core.data.thermal import normalize_thermal
from dlrmamba_core.data.types import PairSample
from dlrmamba_core.engine.fileio import temp_file_for
from dlrmamba_core.errors import InputError

__all__ = ["contact_sheet", "draw_boxes", "draw_masks", "write_image_atomic"]

_PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_boxes(img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, names: Sequence[str],
               visible: np.ndarray | None = None, scale: float = 1.0) -> np.ndarray:
    """Draw xyxy boxes (scaled by ``scale``) with class names on an RGB uint8 copy of ``img``.

    Objects not visible in RGB get a dashed-looking thin box and ``[T]``; not visible in
    thermal get ``[C]`` (colour only).
    """
    out = np.ascontiguousarray(img.copy())
    for i, (b, lab) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), labels, strict=True)):
        col = _PALETTE[int(lab) % len(_PALETTE)]
        p0 = (round(b[0] * scale), round(b[1] * scale))
        p1 = (round(b[2] * scale), round(b[3] * scale))
        name = names[int(lab)] if 0 <= int(lab) < len(names) else str(int(lab))
        tag = ""
        if visible is not None:
            vr, vt = bool(visible[i][0]), bool(visible[i][1])
            tag = "" if (vr and vt) else "[T]" if vt else "[C]" if vr else "[-]"
        cv2.rectangle(out, p0, p1, col, 1, cv2.LINE_AA)
        cv2.putText(out, name + tag, (p0[0], max(8, p0[1] - 2)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.3, col, 1, cv2.LINE_AA)
    return out


def draw_masks(img: np.ndarray, masks: np.ndarray, labels: np.ndarray, scale: float = 1.0,
               alpha: float = 0.45,
               palette: Sequence[Sequence[int]] | np.ndarray | None = None) -> np.ndarray:
    """Draw instance masks on an RGB uint8 copy of ``img``: translucent fill and outline.

    Args:
        img: (h, w, 3) uint8 RGB, the image the masks were scaled onto.
        masks: (N, H, W) {0, 1} in the original pixels (``scale`` maps them to ``img``).
        labels: (N,) class indices (they pick the colour, as in :func:`draw_boxes`).
        scale: ``img`` pixels per mask pixel.
        alpha: opacity of the fill.
        palette: RGB colours indexed by label (cycled); None = this module's palette (as
            :func:`draw_boxes`). A caller drawing its own boxes passes its palette so that a
            mask and its box share a colour.

    Returns:
        (h, w, 3) uint8 RGB.
    """
    out = np.ascontiguousarray(img.copy())
    fill = out.copy()
    outlines = []
    for m, lab in zip(np.asarray(masks), np.asarray(labels).reshape(-1), strict=True):
        contours, _ = cv2.findContours((m != 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                       cv2.CHAIN_APPROX_SIMPLE)
        # Pixel centres (c + 0.5) scaled, back to OpenCV's pixel-centre-at-integer convention.
        pts = [np.round((c.reshape(-1, 2) + 0.5) * scale - 0.5).astype(np.int32)
               for c in contours]
        if not pts:
            continue
        colors = _PALETTE if palette is None else palette
        col = tuple(int(v) for v in colors[int(lab) % len(colors)])
        cv2.fillPoly(fill, pts, col)
        outlines.append((pts, col))
    out = cv2.addWeighted(fill, alpha, out, 1.0 - alpha, 0.0)
    for pts, col in outlines:
        cv2.polylines(out, pts, True, col, 1, cv2.LINE_AA)
    return out


def contact_sheet(samples: Sequence[PairSample], class_names: Sequence[str],
                  width: int = 320, titles: Sequence[str] | None = None) -> np.ndarray:
    """Build a contact sheet: per sample one row of RGB | thermal (own frame) | overlay.

    The overlay blends the RGB image with the thermal image warped into the RGB frame (red)
    and draws the instance masks (translucent, when the sample has them) and the boxes; a box
    tag says which modality cannot see the object
    (``[T]`` thermal only, ``[C]`` colour only, ``[-]`` neither).

    Args:
        samples: the pairs.
        class_names: class names for the labels.
        width: width of each panel, pixels.
        titles: optional text per row.

    Returns:
        (rows * panel_h, 3 * width, 3) uint8 RGB image.
    """
    if not samples:
        raise InputError("contact sheet needs at least one sample")
    rows = []
    for i, s in enumerate(samples):
        h, w = s.rgb.shape[:2]
        scale = width / w
        ph = max(1, round(h * scale))
        rgb = cv2.resize(s.rgb, (width, ph), interpolation=cv2.INTER_AREA)
        t01 = normalize_thermal(s.thermal)
        t8 = (t01 * 255).astype(np.uint8)
        th_h, th_w = t8.shape
        tpanel = np.zeros((ph, width, 3), np.uint8)
        ts = min(width / th_w, ph / th_h)
        tr = cv2.resize(t8, (max(1, round(th_w * ts)), max(1, round(th_h * ts))),
                        interpolation=cv2.INTER_AREA)
        tpanel[: tr.shape[0], : tr.shape[1]] = cv2.applyColorMap(tr, cv2.COLORMAP_INFERNO)[
            ..., ::-1]
        warped = warp_thermal(t8, s.homography, (h, w))
        wr = cv2.resize(warped, (width, ph), interpolation=cv2.INTER_AREA)
        over = rgb.astype(np.float32) * 0.55
        over[..., 0] += wr.astype(np.float32) * 0.45
        over[..., 1:] += (wr.astype(np.float32) * 0.15)[..., None]
        over = np.clip(over, 0, 255).astype(np.uint8)
        if s.masks is not None and len(s.masks):
            over = draw_masks(over, s.masks, s.labels, scale)
        over = draw_boxes(over, s.boxes, s.labels, class_names, s.visible, scale)
        row = np.concatenate([rgb, tpanel, over], 1)
        title = titles[i] if titles else s.image_id
        cv2.putText(row, title, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        rows.append(row)
    wmax = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, wmax - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, 0)


def write_image_atomic(path: str | os.PathLike[str], img: np.ndarray, rgb: bool = True,
                       params: Sequence[int] = ()) -> None:
    """Write an image with OpenCV via a temporary file + rename (never a half-written file).

    Args:
        path: destination; the extension picks the format (.png keeps uint16).
        img: (H, W, 3) uint8 RGB (converted to BGR for OpenCV) or (H, W) uint8/uint16.
        rgb: whether a 3-channel ``img`` is in RGB order.
        params: OpenCV imwrite parameters.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = img[..., ::-1] if (rgb and img.ndim == 3) else img
    tmp = temp_file_for(path, suffix=path.suffix)  # the umask's mode, not mkstemp's 0600
    try:
        if not cv2.imwrite(tmp, np.ascontiguousarray(data), list(params)):
            raise OSError(f"OpenCV could not write {path} (unsupported format or dtype?)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
