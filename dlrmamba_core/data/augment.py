"""Paired training augmentation: RGB, thermal and boxes stay consistent.

Works on network-ready arrays (the output of ``preprocess.prepare_inputs``: the thermal image
already warped into the RGB frame and both letterboxed to the network input):

- rgb ``(3, h, w)`` float32 in [0, 1], thermal ``(1, h, w)`` float32 in [0, 1],
- boxes ``(N, 4)`` float32 ``x1, y1, x2, y2`` in network-input pixels, labels ``(N,)`` int64,
- optionally instance masks ``(N, h, w)`` uint8 {0, 1} at the network input size, row ``i``
  for box ``i`` (:data:`MaskSample`; ``augment_sample`` / ``mosaic_samples``). Every
  geometric operation moves them with the images (nearest-neighbour resampling); a box
  dropped by a crop takes its mask with it, and an object whose mask is left empty is dropped
  with its box. The photometric operations and the thermal misregistration leave them alone
  (labels stay in the RGB frame).

Operations, each with its own probability in :class:`AugmentConfig` (0 turns it off):

- **geometric, both cameras and the boxes** (albumentations with the thermal image as an
  additional ``image`` target, so both get the same parameters): horizontal flip; random
  scale / translation (``Affine``; the canvas keeps the input size, the border is black).
  Boxes are clipped to the image; a box that keeps less than ``min_visibility`` of its area,
  or less than ``min_area`` pixels, is dropped together with its label.
- **RGB only**: colour jitter (brightness, contrast, saturation, hue).
- **thermal only**: gain and offset jitter (another camera, another AGC), and a small
  misregistration: a random shift and rotation of the thermal image alone, as left by an
  imperfect calibration (boxes stay in the RGB frame, as the labels do).
- **mosaic** (:func:`mosaic`): four samples cut around a random centre into one canvas at
  their original scale (used by ``torch_dataset.DetectionDataset``). Written here rather than
  with albumentations 2.0.8's ``A.Mosaic``: that transform takes the other cells' data as
  ``mosaic_metadata`` dicts of image / mask / bboxes / keypoints only, so a second image target
  (the thermal image of the three other samples) would not be placed, and it picks the extra
  items itself and resizes every cell to ``cell_shape``.

Every random draw comes from numpy's global RNG (albumentations is re-seeded from it on each
call), so seeding ``np.random`` per sample, as the trainer does, makes batches reproducible,
including after a resume. Needs the ``train`` extra (``pip install -e .[train]``); the edge
runtime never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import functools
from typing import Any, cast

import cv2
import numpy as np

from dlrmamba_core.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the paired augmentation (see the module docstring).

    Attributes:
        hflip: probability of a horizontal flip.
        affine: probability of a random scale / translation.
        scale: scale range of ``affine``.
        translate: largest shift of ``affine``, as a fraction of the image size.
        rgb_jitter: probability of RGB colour jitter.
        brightness, contrast, saturation: RGB jitter strengths (factor 1 +- value).
        hue: RGB hue jitter (fraction of the hue circle).
        thermal_jitter: probability of thermal gain / offset jitter.
        thermal_gain: gain range of the thermal jitter.
        thermal_offset: offset range (in normalized units) of the thermal jitter.
        misregistration: probability of shifting / rotating the thermal image alone.
        misregistration_px: largest shift (network-input pixels) of the misregistration.
        misregistration_deg: largest rotation (degrees) of the misregistration.
        mosaic: probability that ``DetectionDataset`` builds a 4-sample mosaic.
        min_visibility: a box keeping less of its area after a crop is dropped.
        min_area: a box smaller than this many pixels after a crop is dropped.
    """

    hflip: float = 0.5
    affine: float = 0.5
    scale: tuple[float, float] = (0.7, 1.3)
    translate: float = 0.1
    rgb_jitter: float = 0.8
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.4
    hue: float = 0.02
    thermal_jitter: float = 0.8
    thermal_gain: tuple[float, float] = (0.8, 1.25)
    thermal_offset: tuple[float, float] = (-0.08, 0.08)
    misregistration: float = 0.5
    misregistration_px: float = 2.0
    misregistration_deg: float = 0.5
    mosaic: float = 0.5
    min_visibility: float = 0.3
    min_area: float = 9.0

    def validate(self) -> None:
        """Raise ConfigError on a probability outside [0, 1] or an empty range."""
        for name in ("hflip", "affine", "rgb_jitter", "thermal_jitter", "misregistration",
                     "mosaic", "min_visibility"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"augmentation {name}={v}: must be a probability in [0, 1]")
        for name in ("scale", "thermal_gain", "thermal_offset"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ConfigError(f"augmentation {name}=({lo}, {hi}): low end above high end")
        if self.scale[0] <= 0:
            raise ConfigError(f"augmentation scale={self.scale}: must be positive")


#: One network-ready sample: (rgb (3, h, w), thermal (1, h, w), boxes (N, 4), labels (N,)).
Sample = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
#: A sample with instance masks: ``Sample`` + masks (N, h, w) uint8 {0, 1}, or None.
MaskSample = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]

#: Everything off: the identity (for evaluation-like inputs or ablations).
NO_AUGMENT = AugmentConfig(hflip=0, affine=0, rgb_jitter=0, thermal_jitter=0,
                           misregistration=0, mosaic=0)


def _albumentations() -> Any:
    try:
        import albumentations as A
    except ImportError as exc:
        raise ConfigError("training augmentation needs albumentations: install the train "
                          "extra (`pip install -e .[train]`)") from exc
    return A


@functools.lru_cache(maxsize=8)
def _pipelines(cfg: AugmentConfig) -> tuple[Any, Any]:
    """(joint geometric Compose, RGB-only Compose; None when off), built once per process."""
    A = _albumentations()
    geo = []
    if cfg.hflip > 0:
        geo.append(A.HorizontalFlip(p=cfg.hflip))
    if cfg.affine > 0:
        geo.append(A.Affine(scale=cfg.scale, translate_percent=(-cfg.translate, cfg.translate),
                            border_mode=cv2.BORDER_CONSTANT, fill=0, p=cfg.affine))
    # "idx" follows each box through the filtering, to drop its mask with it.
    joint = A.Compose(
        geo, additional_targets={"thermal": "image"},
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels", "idx"],
                                 min_visibility=cfg.min_visibility, min_area=cfg.min_area,
                                 clip=True)) if geo else None
    rgb_only = A.Compose([A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast,
                                        saturation=cfg.saturation, hue=cfg.hue,
                                        p=cfg.rgb_jitter)]) if cfg.rgb_jitter > 0 else None
    return joint, rgb_only


def _seed(compose: Any) -> None:
    compose.set_random_seed(int(np.random.randint(0, 2**31 - 1)))


def _clean(boxes: np.ndarray, labels: np.ndarray, hw: tuple[int, int]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(clipped boxes, labels, (N,) bool of the objects kept)."""
    h, w = hw
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    lab = np.asarray(labels, np.int64).reshape(-1)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    keep = (b[:, 2] - b[:, 0] > 0.5) & (b[:, 3] - b[:, 1] > 0.5)
    return b[keep], lab[keep], keep


def clean_boxes(boxes: np.ndarray, labels: np.ndarray, hw: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes to the image and drop empty ones (with their labels)."""
    b, lab, _ = _clean(boxes, labels, hw)
    return b, lab


def _check_masks(masks: np.ndarray | None, n: int, hw: tuple[int, int]) -> np.ndarray | None:
    if masks is None:
        return None
    m = np.asarray(masks)
    if m.shape != (n, *hw) or m.dtype != np.uint8:
        raise ConfigError(f"instance masks must be (N, h, w) uint8 with one mask per box "
                          f"({n} boxes, input {hw}); got {m.shape} {m.dtype}")
    return m


def _drop_empty(sample: MaskSample) -> MaskSample:
    """Drop objects whose mask has no pixel left (with their boxes and labels)."""
    rgb, th, boxes, labels, masks = sample
    if masks is None or not len(masks):
        return sample
    keep = masks.reshape(len(masks), -1).any(1)
    return rgb, th, boxes[keep], labels[keep], masks[keep]


def _misregister(thermal_hw1: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    h, w = thermal_hw1.shape[:2]
    dx, dy = np.random.uniform(-cfg.misregistration_px, cfg.misregistration_px, 2)
    ang = np.random.uniform(-cfg.misregistration_deg, cfg.misregistration_deg)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(ang), 1.0)
    m[:, 2] += (dx, dy)
    out = cv2.warpAffine(thermal_hw1[..., 0], m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out[..., None]


def augment_pair(rgb: np.ndarray, thermal: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                 cfg: AugmentConfig | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Augment one network-ready pair (shapes in the module docstring).

    Returns:
        (rgb, thermal, boxes, labels) with the input shapes and dtypes; boxes dropped by a
        crop are removed together with their labels.
    """
    r, t, b, lab, _ = augment_sample((rgb, thermal, boxes, labels, None), cfg)
    return r, t, b, lab


def augment_sample(sample: MaskSample, cfg: AugmentConfig | None = None) -> MaskSample:
    """Augment one network-ready pair with optional instance masks.

    Args:
        sample: ``(rgb (3, h, w), thermal (1, h, w), boxes (N, 4), labels (N,), masks)``,
            ``masks`` (N, h, w) uint8 {0, 1} or None.
        cfg: settings (default :class:`AugmentConfig`).

    Returns:
        The same layout. Masks follow the flip and the affine exactly as the images do; an
        object whose box is dropped, or whose mask is left empty, is removed with all its
        fields. The random draws do not depend on whether masks are given.
    """
    rgb, thermal, boxes, labels, masks = sample
    cfg = cfg or AugmentConfig()
    if rgb.ndim != 3 or rgb.shape[0] != 3 or thermal.ndim != 3 or thermal.shape[0] != 1 \
            or rgb.shape[1:] != thermal.shape[1:]:
        raise ConfigError(f"augment_pair needs rgb (3, h, w) and thermal (1, h, w) of one size; "
                          f"got {rgb.shape} and {thermal.shape}")
    hw = (rgb.shape[1], rgb.shape[2])
    masks = _check_masks(masks, len(np.asarray(boxes).reshape(-1, 4)), hw)
    boxes, labels, keep = _clean(boxes, labels, hw)
    if masks is not None:
        masks = masks[keep]
    joint, rgb_only = _pipelines(cfg)
    img = np.ascontiguousarray(rgb.transpose(1, 2, 0), np.float32)
    th = np.ascontiguousarray(thermal.transpose(1, 2, 0), np.float32)
    if joint is not None:
        _seed(joint)
        targets: dict[str, Any] = {"image": img, "thermal": th, "bboxes": boxes,
                                   "labels": labels, "idx": np.arange(len(boxes))}
        if masks is not None and len(masks):
            targets["masks"] = np.ascontiguousarray(masks)
        out = joint(**targets)
        img, th = out["image"], out["thermal"]
        boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        labels = np.asarray(out["labels"], np.int64).reshape(-1)
        idx = np.asarray(out["idx"], np.int64).reshape(-1)
        if masks is not None and len(masks):
            masks = np.asarray(out["masks"], np.uint8).reshape(-1, *hw)[idx]
        elif masks is not None:
            masks = np.zeros((0, *hw), np.uint8)
    if rgb_only is not None:
        _seed(rgb_only)
        img = rgb_only(image=img)["image"]
    if th.ndim == 2:
        th = th[..., None]
    if cfg.thermal_jitter > 0 and np.random.rand() < cfg.thermal_jitter:
        gain = np.random.uniform(*cfg.thermal_gain)
        offset = np.random.uniform(*cfg.thermal_offset)
        th = th * np.float32(gain) + np.float32(offset)
    if cfg.misregistration > 0 and np.random.rand() < cfg.misregistration:
        th = _misregister(np.ascontiguousarray(th, np.float32), cfg)
    rgb_out = np.clip(img, 0, 1).transpose(2, 0, 1).astype(np.float32)
    th_out = np.clip(th, 0, 1).transpose(2, 0, 1).astype(np.float32)
    return _drop_empty((rgb_out, th_out, boxes, labels, masks))


def mosaic(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
           cfg: AugmentConfig | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Four network-ready samples -> one, cut around a random centre at their own scale.

    The centre ``(cx, cy)`` is drawn in the middle half of the canvas; quadrant ``k`` shows the
    part of sample ``k`` that lies on the far side of that centre (top-left quadrant: the
    bottom-right of sample 0, ...), so objects keep their size. Boxes are shifted, clipped to
    their quadrant, and dropped below ``min_visibility`` of their area or ``min_area`` pixels.

    Args:
        samples: four ``(rgb, thermal, boxes, labels)`` tuples of one size.
        cfg: for ``min_visibility`` / ``min_area``.

    Returns:
        (rgb, thermal, boxes, labels) of the same size.
    """
    r, t, b, lab, _ = mosaic_samples([(*s, None) for s in samples], cfg)
    return r, t, b, lab


def mosaic_samples(samples: list[MaskSample], cfg: AugmentConfig | None = None) -> MaskSample:
    """:func:`mosaic` of samples with optional instance masks (all four or none have them).

    Each quadrant's masks are cut like its images; an object dropped by the cut takes its
    mask with it, and an object whose mask has no pixel in the quadrant is dropped too.

    Returns:
        ``(rgb, thermal, boxes, labels, masks)``; masks (N, h, w) uint8 or None.
    """
    cfg = cfg or AugmentConfig()
    if len(samples) != 4:
        raise ConfigError(f"mosaic needs 4 samples, got {len(samples)}")
    _, h, w = samples[0][0].shape
    if any(s[0].shape != (3, h, w) or s[1].shape != (1, h, w) for s in samples):
        raise ConfigError("mosaic needs samples of one size: "
                          f"{[(s[0].shape, s[1].shape) for s in samples]}")
    has_masks = [s[4] is not None for s in samples]
    if any(has_masks) and not all(has_masks):
        raise ConfigError("mosaic needs instance masks on all 4 samples or on none; build "
                          "every sample from one dataset")
    for s in samples:
        _check_masks(s[4], len(np.asarray(s[2]).reshape(-1, 4)), (h, w))
    cx = int(np.random.uniform(0.25, 0.75) * w)
    cy = int(np.random.uniform(0.25, 0.75) * h)
    rgb = np.zeros((3, h, w), np.float32)
    th = np.zeros((1, h, w), np.float32)
    out_b, out_l, out_m = [], [], []
    # (destination x0, y0, x1, y1) of each quadrant; the source is the matching far corner.
    quads = [(0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h)]
    for (x0, y0, x1, y1), (s_rgb, s_th, s_b, s_l, s_m) in zip(quads, samples, strict=True):
        if x1 <= x0 or y1 <= y0:
            continue
        # Source window of the same size, taken from the side facing the centre.
        sx0 = w - (x1 - x0) if x0 == 0 else 0
        sy0 = h - (y1 - y0) if y0 == 0 else 0
        sx1, sy1 = sx0 + (x1 - x0), sy0 + (y1 - y0)
        rgb[:, y0:y1, x0:x1] = s_rgb[:, sy0:sy1, sx0:sx1]
        th[:, y0:y1, x0:x1] = s_th[:, sy0:sy1, sx0:sx1]
        b = np.asarray(s_b, np.float32).reshape(-1, 4)
        if not len(b):
            continue
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        c = b.copy()
        c[:, [0, 2]] = c[:, [0, 2]].clip(sx0, sx1) - sx0 + x0
        c[:, [1, 3]] = c[:, [1, 3]].clip(sy0, sy1) - sy0 + y0
        kept = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
        ok = (kept >= cfg.min_area) & (kept >= cfg.min_visibility * np.maximum(area, 1e-6))
        out_b.append(c[ok])
        out_l.append(np.asarray(s_l, np.int64).reshape(-1)[ok])
        if s_m is not None:
            m = np.zeros((int(ok.sum()), h, w), np.uint8)
            m[:, y0:y1, x0:x1] = s_m[ok][:, sy0:sy1, sx0:sx1]
            out_m.append(m)
    boxes = np.concatenate(out_b) if out_b else np.zeros((0, 4), np.float32)
    labels = np.concatenate(out_l) if out_l else np.zeros((0,), np.int64)
    masks = None
    if all(has_masks):
        masks = np.concatenate(out_m) if out_m else np.zeros((0, h, w), np.uint8)
    return _drop_empty((rgb, th, boxes.astype(np.float32), labels, masks))


def train_augment(i: int, n: int, sample: Sample | MaskSample,
                  get: Callable[[int], Any], cfg: AugmentConfig | None = None
                  ) -> tuple[Any, list[int] | None]:
    """The training augmentation of dataset item ``i`` of ``n``: mosaic, then augment_pair.

    Args:
        i: the item's index.
        n: the dataset's length.
        sample: item ``i`` as ``(rgb, thermal, boxes, labels)`` (network-ready), or with
            instance masks as a 5-tuple :data:`MaskSample`.
        get: returns another item in the same layout, for the mosaic's three other parts.
        cfg: settings (default :class:`AugmentConfig`).

    Returns:
        ``(augmented sample in the layout of sample, the mosaic's four dataset indices or
        None)``. The random draws are the same with and without masks.
    """
    cfg = cfg or AugmentConfig()
    with_masks = len(sample) == 5
    full = cast(MaskSample, sample if with_masks else (*sample, None))

    def part(j: int) -> MaskSample:
        got = get(j)
        return got if with_masks else (*got, None)

    parts_ids = None
    if n > 1 and cfg.mosaic > 0 and np.random.rand() < cfg.mosaic:
        others = [int(j) for j in np.random.randint(0, n, 3)]
        full = mosaic_samples([full] + [part(j) for j in others], cfg)
        parts_ids = [i, *others]
    out = augment_sample(full, cfg)
    return (out if with_masks else out[:4]), parts_ids
