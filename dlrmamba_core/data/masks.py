"""Instance masks: COCO RLE, polygons, rasterization and resampling (numpy/OpenCV only).

Conventions used everywhere in ``dlrmamba_core.data``:

- A **mask** is an ``(H, W)`` uint8 array with values {0, 1}; a stack of masks is
  ``(N, H, W)`` uint8, row ``i`` belonging to box ``i`` of the same sample.
- **Continuous pixel coordinates**, as in COCO: pixel ``(row r, column c)`` covers
  ``[c, c + 1) x [r, r + 1)``, so its centre is ``(c + 0.5, r + 0.5)``, and a box ``x1, y1, x2,
  y2`` around a mask spans whole pixels (``mask_boxes``). Polygons are ``(K, 2)`` float32
  ``x, y`` in these coordinates; a pixel belongs to a polygon when its centre lies inside
  (even-odd rule), which is what pycocotools' rasterizer approximates.
- **COCO RLE** ``{"size": [H, W], "counts": ...}``: run lengths of the column-major (Fortran
  order) flattened mask, starting with a run of zeros. ``counts`` is either a list of ints
  (uncompressed, as COCO uses for ``iscrowd`` regions) or the compressed ASCII string of
  pycocotools (written by :func:`rle_encode`). Both are read by :func:`rle_decode`.

These are written here rather than taken from pycocotools so that the readers and the edge
runtime need only numpy and OpenCV; the tests check them against pycocotools.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.errors import InputError

__all__ = [
    "MaskSource",
    "decode_segmentation",
    "downsample_masks",
    "join_polygons",
    "mask_boxes",
    "mask_to_polygons",
    "polygons_to_mask",
    "render_masks",
    "resize_masks",
    "rle_counts_from_string",
    "rle_counts_to_string",
    "rle_decode",
    "rle_encode",
]

#: Where a mask comes from before it is rasterized: a list of polygons (each (K, 2) float32
#: x, y in continuous pixel coordinates; their union) or a COCO RLE dict.
MaskSource = list[np.ndarray] | dict[str, Any]


# --------------------------------------------------------------------------------------------
# COCO RLE
# --------------------------------------------------------------------------------------------


def rle_counts_to_string(counts: Sequence[int]) -> str:
    """Compress RLE run lengths into the ASCII string of COCO / pycocotools.

    Each count (from the third on, as the difference to the count two places before) is
    written in 5-bit groups, low bits first, with 0x20 marking "more groups follow" and 0x10
    of the last group carrying the sign; each group is offset by 48 into printable ASCII.
    """
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift: a negative x ends at -1
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def rle_counts_from_string(text: str) -> list[int]:
    """Inverse of :func:`rle_counts_to_string`.

    Raises:
        InputError: a character outside the encoding's range, or a string that ends inside
            a count.
    """
    counts: list[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise InputError(f"compressed RLE {text[:40]!r}...: ends inside a run length")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise InputError(f"compressed RLE has character {text[p]!r} at {p}: not a "
                                 "COCO RLE string (characters '0'..'o')")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of one mask.

    Args:
        mask: (H, W) array, non-zero = object.

    Returns:
        ``{"size": [H, W], "counts": str}`` (JSON-ready; pycocotools reads it as is).
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InputError(f"rle_encode needs one (H, W) mask, got shape {m.shape}")
    flat = m.ravel(order="F") != 0
    n = flat.size
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [n]])
    runs = np.diff(edges).tolist()
    if n and flat[0]:
        runs = [0, *runs]  # counts always start with a run of zeros
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": rle_counts_to_string(runs)}


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """(H, W) uint8 mask of a COCO RLE (compressed string or uncompressed list counts).

    Raises:
        InputError: not an RLE dict, or run lengths that do not add up to H * W.
    """
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"RLE {str(rle)[:80]}: needs 'size': [height, width] and "
                         "'counts' (string or list of ints)") from exc
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        runs = rle_counts_from_string(counts)
    elif isinstance(counts, (list, tuple)) and all(
            isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
        runs = [int(c) for c in counts]
    else:
        raise InputError(f"RLE counts of type {type(counts).__name__}: use a compressed "
                         "string or a list of ints")
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise InputError(f"RLE run lengths add up to {sum(runs)} (or are negative) but size "
                         f"{h}x{w} needs {h * w}; the mask does not belong to this image size")
    values = (np.arange(len(runs)) % 2).astype(np.uint8)  # 0-run, 1-run, 0-run, ...
    flat = np.repeat(values, runs)
    return flat.reshape((h, w), order="F")


# --------------------------------------------------------------------------------------------
# Polygons
# --------------------------------------------------------------------------------------------


def polygons_to_mask(polygons: Sequence[np.ndarray], hw: tuple[int, int]) -> np.ndarray:
    """Rasterize the union of polygons: a pixel is set when its centre lies inside one.

    Args:
        polygons: each (K, 2) x, y in continuous pixel coordinates (K >= 3; smaller ones are
            ignored); inside = even-odd rule.
        hw: (H, W) of the mask, pixels.

    Returns:
        (H, W) uint8 {0, 1}.
    """
    h, w = int(hw[0]), int(hw[1])
    out = np.zeros((h, w), np.uint8)
    for poly in polygons:
        p = np.asarray(poly, np.float64).reshape(-1, 2)
        if len(p) < 3 or not np.all(np.isfinite(p)):
            continue
        r0 = max(0, math.floor(p[:, 1].min() - 0.5))
        r1 = min(h, math.ceil(p[:, 1].max() + 0.5))
        if r1 <= r0:
            continue
        yc = np.arange(r0, r1, dtype=np.float64) + 0.5  # row centres
        x0, y0 = p[:, 0], p[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        # Edge e crosses the row centre yc when yc is in [min y, max y) (half-open, so a
        # vertex on the line is counted once).
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        cross = (yc[:, None] >= lo[None]) & (yc[:, None] < hi[None])  # (R, E)
        dy = np.where(y1 != y0, y1 - y0, 1.0)
        xs = x0[None] + (yc[:, None] - y0[None]) * ((x1 - x0) / dy)[None]  # (R, E)
        xs = np.sort(np.where(cross, xs, np.inf), axis=1)  # crossings first, inf after
        # A closed polygon crosses every row an even number of times, so with an odd edge
        # count the last column is always inf: pair the crossings (0, 1), (2, 3), ...
        xs = xs[:, : xs.shape[1] // 2 * 2]
        a, b = xs[:, 0::2], xs[:, 1::2]
        ok = np.isfinite(a) & np.isfinite(b)
        rr, kk = np.nonzero(ok)
        # Pixel c is inside the span [a, b) when a <= c + 0.5 < b.
        start = np.clip(np.ceil(a[rr, kk] - 0.5), 0, w).astype(np.int64)
        stop = np.clip(np.ceil(b[rr, kk] - 0.5), 0, w).astype(np.int64)
        diff = np.zeros((r1 - r0, w + 1), np.int32)
        np.add.at(diff, (rr, start), 1)
        np.add.at(diff, (rr, stop), -1)
        out[r0:r1] |= (np.cumsum(diff[:, :w], axis=1) > 0).astype(np.uint8)
    return out


def mask_to_polygons(mask: np.ndarray, tolerance: float = 0.3) -> list[np.ndarray]:
    """Outer outline of each connected part of a mask, as polygons (holes are not kept).

    The outline is traced on a 4x nearest-upsampled copy, so it runs 1/8 pixel inside the
    pixel edges instead of through the boundary pixels' centres; then simplified by at most
    ``tolerance`` pixels. With ``tolerance < 0.375`` every pixel centre stays on its side, so
    :func:`polygons_to_mask` gives back the mask (up to holes).

    Args:
        mask: (H, W), non-zero = object.
        tolerance: largest distance (pixels) of the simplified outline from the traced one.

    Returns:
        Polygons, each (K, 2) float32 x, y in continuous pixel coordinates, largest first;
        empty list for an empty mask.
    """
    m = np.asarray(mask) != 0
    if m.ndim != 2:
        raise InputError(f"mask_to_polygons needs one (H, W) mask, got shape {m.shape}")
    if not m.any():
        return []
    rows, cols = np.nonzero(m)
    r0, c0 = int(rows.min()), int(cols.min())
    crop = m[r0:int(rows.max()) + 1, c0:int(cols.max()) + 1].astype(np.uint8)
    up = np.pad(np.repeat(np.repeat(crop, 4, 0), 4, 1), 1)  # 1-px border for findContours
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        c = cv2.approxPolyDP(c, 4 * tolerance, True) if len(c) > 4 else c
        pts = c.reshape(-1, 2).astype(np.float32)
        # upsampled pixel centre (u + 0.5), minus the pad, back to original pixels
        pts = (pts - 1 + 0.5) / 4 + np.float32([c0, r0])
        if len(pts) >= 3:
            polys.append(pts)
    polys.sort(key=lambda p: -abs(float(cv2.contourArea(p))))
    return polys


def join_polygons(polygons: Sequence[np.ndarray]) -> np.ndarray:
    """One polygon from several (for formats with one polygon per object, like YOLO-seg).

    Each further polygon is attached to the path by a zero-width bridge from the nearest
    vertex of the path so far, walked there and back, so the area does not change.

    Returns:
        (K, 2) float32; (0, 2) when ``polygons`` is empty.
    """
    polys = [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons if len(p)]
    if not polys:
        return np.zeros((0, 2), np.float32)
    path = polys[0]
    for q in polys[1:]:
        d = ((path[:, None, :] - q[None, :, :]) ** 2).sum(-1)  # (len(path), len(q))
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        q_loop = np.concatenate([q[j:], q[: j + 1]])  # starts and ends at q[j]
        path = np.concatenate([path[: i + 1], q_loop, path[i:]])
    return path


# --------------------------------------------------------------------------------------------
# Stacks of masks
# --------------------------------------------------------------------------------------------


def decode_segmentation(seg: Any, hw: tuple[int, int] | None) -> MaskSource:
    """A COCO annotation's ``segmentation`` as a :data:`MaskSource` (checked, not rasterized).

    Args:
        seg: a list of flat polygons ``[[x1, y1, x2, y2, ...], ...]`` or an RLE dict.
        hw: (H, W) of the image, which an RLE must have; None: not checked here.

    Raises:
        InputError: neither form, a polygon with fewer than 3 points or an odd number of
            values, or an RLE of another size.
    """
    if isinstance(seg, Mapping):
        try:
            size = [int(v) for v in seg["size"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError("RLE segmentation needs 'size': [height, width] and "
                             "'counts'") from exc
        if "counts" not in seg:
            raise InputError("RLE segmentation has no 'counts'")
        if hw is not None and size != [int(hw[0]), int(hw[1])]:
            raise InputError(f"RLE size {size} differs from the image's [height, width] "
                             f"{[int(hw[0]), int(hw[1])]}")
        counts = seg["counts"]
        if isinstance(counts, (str, bytes)):
            text = counts.decode("ascii") if isinstance(counts, bytes) else counts
            total = sum(rle_counts_from_string(text))  # the runs only, not the mask
        elif isinstance(counts, list) and all(isinstance(c, int) for c in counts):
            total = sum(counts)
        else:
            raise InputError("RLE counts must be a compressed string or a list of ints")
        if total != size[0] * size[1]:
            raise InputError(f"RLE run lengths add up to {total}, but its size {size} needs "
                             f"{size[0] * size[1]}")
        return dict(seg)
    if isinstance(seg, list):
        polys = []
        for k, poly in enumerate(seg):
            try:
                arr = np.asarray(poly, np.float64)
            except (TypeError, ValueError) as exc:
                raise InputError(f"polygon {k} is not a list of numbers") from exc
            if arr.ndim != 1 or arr.size < 6 or arr.size % 2 or not np.all(np.isfinite(arr)):
                raise InputError(f"polygon {k} has {arr.size} values: needs x, y pairs of at "
                                 "least 3 points ([x1, y1, x2, y2, x3, y3, ...])")
            polys.append(arr.reshape(-1, 2).astype(np.float32))
        return polys
    raise InputError(f"segmentation of type {type(seg).__name__}: use a list of polygons "
                     "[[x1, y1, ...], ...] or an RLE {'size': [h, w], 'counts': ...}")


def render_masks(sources: Sequence[MaskSource], hw: tuple[int, int]) -> np.ndarray:
    """Rasterize one :data:`MaskSource` per object into an (N, H, W) uint8 stack.

    Raises:
        InputError: an RLE whose size is not ``hw``.
    """
    h, w = int(hw[0]), int(hw[1])
    out = np.zeros((len(sources), h, w), np.uint8)
    for i, src in enumerate(sources):
        if isinstance(src, Mapping):
            m = rle_decode(src)
            if m.shape != (h, w):
                raise InputError(f"RLE mask of size {m.shape} for an image of {(h, w)}")
            out[i] = m
        else:
            out[i] = polygons_to_mask(src, (h, w))
    return out


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes (pixel edges) of an (N, H, W) stack; an empty mask gives zeros.

    Returns:
        (N, 4) float32 ``x1, y1, x2, y2`` (``x2 = last column + 1``).
    """
    m = np.asarray(masks) != 0
    out = np.zeros((m.shape[0], 4), np.float32)
    if m.shape[0] == 0:
        return out
    cols, rows = m.any(1), m.any(2)  # (N, W), (N, H)
    has = cols.any(1)
    out[has, 0] = cols[has].argmax(1)
    out[has, 2] = m.shape[2] - cols[has][:, ::-1].argmax(1)
    out[has, 1] = rows[has].argmax(1)
    out[has, 3] = m.shape[1] - rows[has][:, ::-1].argmax(1)
    return out


def resize_masks(masks: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Resize an (N, H, W) stack to (N, h, w): a pixel is set when >= half of it is object.

    Area averaging when shrinking, bilinear when enlarging, then a 0.5 threshold.
    """
    m = np.asarray(masks, np.uint8)
    h, w = int(out_hw[0]), int(out_hw[1])
    if m.shape[1:] == (h, w):
        return m.copy()
    interp = cv2.INTER_AREA if h * w < m.shape[1] * m.shape[2] else cv2.INTER_LINEAR
    out = np.zeros((m.shape[0], h, w), np.uint8)
    for i in range(m.shape[0]):
        out[i] = cv2.resize(m[i] * np.uint8(255), (w, h), interpolation=interp) >= 128
    return out


def downsample_masks(masks: np.ndarray, stride: int) -> np.ndarray:
    """(N, H, W) -> (N, H / stride, W / stride): a cell is set when >= half its pixels are.

    Raises:
        InputError: H or W not divisible by ``stride``.
    """
    m = np.asarray(masks, np.uint8)
    n, h, w = m.shape
    if stride == 1:
        return m.copy()
    if stride < 1 or h % stride or w % stride:
        raise InputError(f"mask size {h}x{w} is not divisible by the mask stride {stride}: "
                         "use an input size that is a multiple of it")
    # (N, H, W) -> (N, H/s, s, W/s, s): count the object pixels of each s x s cell.
    cells = m.reshape(n, h // stride, stride, w // stride, stride).sum((2, 4), dtype=np.int32)
    return (2 * cells >= stride * stride).astype(np.uint8)
