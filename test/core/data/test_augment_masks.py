"""Instance masks through letterbox, augmentation, the torch dataset and collate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dlrmamba_core.data.augment import (
    NO_AUGMENT,
    AugmentConfig,
    augment_pair,
    augment_sample,
    mosaic,
    mosaic_samples,
    train_augment,
)
from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_masks, letterbox_params
from dlrmamba_core.data.masks import mask_boxes, polygons_to_mask
from dlrmamba_core.errors import ConfigError, DatasetError

H, W = 96, 128


def _scene(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bright ellipses inscribed in the boxes, in both cameras, and their masks."""
    rgb = np.full((3, H, W), 0.1, np.float32)
    th = np.full((1, H, W), 0.2, np.float32)
    masks = np.zeros((len(boxes), H, W), np.uint8)
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        masks[k] = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        rgb[:, masks[k] > 0] = 0.9
        th[:, masks[k] > 0] = 0.8
    return rgb, th, masks


def _only(**on: float) -> AugmentConfig:
    return dataclasses.replace(NO_AUGMENT, **on)


BOXES = np.array([[10, 20, 40, 50], [70, 30, 110, 80], [50, 60, 66, 90]], np.float32)
LABELS = np.array([3, 5, 1])


def test_flip_moves_masks_exactly() -> None:
    rgb, th, masks = _scene(BOXES)
    np.random.seed(0)
    r, _, b, lab, m = augment_sample((rgb, th, BOXES, LABELS, masks), _only(hflip=1.0))
    assert m is not None and m.shape == (3, H, W) and m.dtype == np.uint8
    np.testing.assert_array_equal(m, masks[:, :, ::-1])
    np.testing.assert_array_equal(lab, LABELS)
    np.testing.assert_allclose(mask_boxes(m), b, atol=1.0)
    np.testing.assert_array_equal(r[0] > 0.5, m.any(0))  # the mask is where the object is


def test_affine_keeps_masks_on_their_boxes_and_drops_them_together() -> None:
    rgb, th, masks = _scene(BOXES)
    cfg = _only(hflip=0.5, affine=1.0, scale=(0.7, 1.3), translate=0.1, min_visibility=0.3)
    seen = 0
    for seed in range(12):
        np.random.seed(seed)
        r, _, b, lab, m = augment_sample((rgb, th, BOXES, LABELS, masks), cfg)
        assert m is not None and len(m) == len(b) == len(lab)
        for box, mk in zip(b, m, strict=True):
            inside = np.zeros((H, W), bool)
            x1, y1, x2, y2 = np.round(box).astype(int)
            inside[y1:y2, x1:x2] = True
            assert (mk.astype(bool) & ~inside).sum() <= 0.03 * mk.sum() + 2  # mask in its box
            # The box of a mask cut by the border stays the clipped box of the whole ellipse,
            # so compare only boxes clear of the border.
            if x1 > 1 and y1 > 1 and x2 < W - 1 and y2 < H - 1:
                np.testing.assert_allclose(mask_boxes(mk[None])[0], box, atol=1.5)
                ellipse = polygons_to_mask([np.stack(
                    [(box[0] + box[2]) / 2 + (box[2] - box[0]) / 2 * np.cos(t),
                     (box[1] + box[3]) / 2 + (box[3] - box[1]) / 2 * np.sin(t)], 1)
                    for t in [np.linspace(0, 2 * np.pi, 64, endpoint=False)]], (H, W))
                iou = (ellipse & mk).sum() / (ellipse | mk).sum()
                assert iou > 0.85, iou
                seen += 1
        # Bilinear images, nearest-neighbour masks: they may differ along the outlines only.
        bright, covered = r[0] > 0.5, m.any(0)
        assert (bright ^ covered).sum() <= 0.05 * max(1, (bright | covered).sum())
    assert seen > 10
    # A 1.3x zoom about the centre keeps ~12 % of the corner object: box, label, mask go.
    corner = np.array([[0, 0, 20, 20], [54, 38, 74, 58]], np.float32)
    rgb, th, masks = _scene(corner)
    np.random.seed(0)
    _, _, b, lab, m = augment_sample((rgb, th, corner, np.array([7, 8]), masks),
                                     _only(affine=1.0, scale=(1.3, 1.3), translate=0.0))
    assert lab.tolist() == [8] and m is not None and len(m) == 1
    np.testing.assert_allclose(mask_boxes(m), b, atol=1.5)


def test_masks_do_not_change_the_random_draws() -> None:
    rgb, th, masks = _scene(BOXES)
    for seed in range(4):
        np.random.seed(seed)
        a = augment_pair(rgb, th, BOXES, LABELS)
        np.random.seed(seed)
        b = augment_sample((rgb, th, BOXES, LABELS, masks))
        for x, y in zip(a, b[:4], strict=True):
            np.testing.assert_array_equal(x, y)


def test_mosaic_cuts_masks_with_their_quadrant() -> None:
    parts = [(*_scene(BOXES + k)[:2], BOXES + k, LABELS, _scene(BOXES + k)[2]) for k in range(4)]
    cfg = AugmentConfig(min_visibility=0.0, min_area=1.0)
    for seed in range(6):
        np.random.seed(seed)
        r, _, b, lab, m = mosaic_samples(parts, cfg)
        np.random.seed(seed)
        r4, _, b4, _ = mosaic([p[:4] for p in parts], cfg)
        np.testing.assert_array_equal(r, r4)  # same cut with and without masks
        assert m is not None and len(m) == len(b) == len(lab) > 0
        np.testing.assert_array_equal(r[0] > 0.5, m.any(0))
        # Each mask lies in its (quadrant-clipped) box and fills it as an ellipse does.
        mb = mask_boxes(m)
        assert (mb[:, :2] >= np.floor(b[:, :2]) - 1).all() and (mb[:, 2:] <= b[:, 2:] + 1).all()
        assert len(b) <= len(b4)  # an object whose mask was cut away is dropped with its box
    with pytest.raises(ConfigError, match="all 4 samples or on none"):
        mosaic_samples([parts[0], parts[1], parts[2], (*parts[3][:4], None)], cfg)


def test_letterbox_masks_follow_the_boxes() -> None:
    m = np.zeros((2, 120, 160), np.uint8)
    m[0, 10:50, 20:60] = 1
    m[1, 100:120, 150:160] = 1
    boxes = mask_boxes(m)
    for dst in ((96, 128), (256, 320), (120, 160)):
        lb = letterbox_params((120, 160), dst)
        out = letterbox_masks(m, lb)
        assert out.shape == (2, *dst) and out.dtype == np.uint8
        np.testing.assert_allclose(mask_boxes(out), letterbox_boxes(boxes, lb), atol=1.0)
    with pytest.raises(Exception, match="letterbox src"):
        letterbox_masks(m[:, :100], letterbox_params((120, 160), (96, 128)))


def test_train_augment_keeps_the_layout_it_is_given() -> None:
    rgb, th, masks = _scene(BOXES)
    full = (rgb, th, BOXES, LABELS, masks)
    np.random.seed(3)
    out5, parts5 = train_augment(0, 4, full, lambda j: full, AugmentConfig(mosaic=1.0))
    np.random.seed(3)
    out4, parts4 = train_augment(0, 4, full[:4], lambda j: full[:4], AugmentConfig(mosaic=1.0))
    assert len(out5) == 5 and len(out4) == 4 and parts5 == parts4
    np.testing.assert_array_equal(out5[0], out4[0])
    assert len(out5[4]) == len(out5[2])


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset

    root = tmp_path_factory.mktemp("synth")
    write_frame_dataset(root, 6, (("train", 1.0),), seed=4,
                        cfg=SynthConfig(rgb_size=(160, 120), thermal_size=(80, 64)))
    return root


def test_detection_dataset_masks_and_collate(synth: Path) -> None:
    import torch

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.torch_dataset import DetectionDataset, collate

    pairs = open_dataset("synth", synth, "train")
    for augment in (False, True):
        ds = DetectionDataset(pairs, (96, 128), augment=augment, masks=True,
                              config=AugmentConfig(mosaic=0.5))
        np.random.seed(1)
        items = [ds[i] for i in range(4)]
        batch = collate(items)
        m, t = batch["masks"], batch["targets"]
        assert m.dtype == torch.uint8 and m.shape == (len(t), 96 // 4, 128 // 4)
        assert set(m.unique().tolist()) <= {0, 1}
        # Row j of masks is the object of targets[j]: its cells sit on the box / 4.
        for j in range(len(t)):
            x1, y1, x2, y2 = (t[j, 2:6] / 4).tolist()
            ys, xs = np.nonzero(m[j].numpy())
            if len(xs):  # a tiny object can have no half-covered 4x4 cell
                assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1
                assert ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1
        assert int(sum(int((m[j] > 0).any()) for j in range(len(t)))) >= 0.7 * len(t)
    # The same seed gives the same images and boxes with and without masks.
    plain = DetectionDataset(pairs, (96, 128), augment=True)
    with_m = DetectionDataset(pairs, (96, 128), augment=True, masks=True)
    for i in range(3):
        np.random.seed(10 + i)
        a = plain[i]
        np.random.seed(10 + i)
        b = with_m[i]
        assert torch.equal(a["rgb"], b["rgb"]) and "masks" not in a
        assert len(b["masks"]) == len(b["boxes"]) <= len(a["boxes"])
    stride8 = DetectionDataset(pairs, (96, 128), masks=True, mask_stride=8)
    assert stride8[0]["masks"].shape[1:] == (12, 16)
    with pytest.raises(ConfigError, match="does not divide"):
        DetectionDataset(pairs, (96, 128), masks=True, mask_stride=5)
    with pytest.raises(DatasetError, match="some items have instance masks"):
        collate([plain[0], with_m[0]])


def test_datasets_without_masks_are_unaffected(tmp_path: Path) -> None:
    import cv2

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.torch_dataset import DetectionDataset, collate

    for sub, img in (("rgb", np.full((40, 60, 3), 90, np.uint8)),
                     ("thermal", np.full((40, 60), 1000, np.uint16))):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "a.png"), img)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    pairs = open_dataset("yolo", tmp_path)
    batch = collate([DetectionDataset(pairs, (32, 64))[0]])
    assert "masks" not in batch and batch["targets"].shape == (1, 6)
    with pytest.raises(DatasetError, match="has no instance masks"):
        DetectionDataset(pairs, (32, 64), masks=True)


def test_unletterbox_masks_returns_to_rgb_pixels() -> None:
    from dlrmamba_core.data.letterbox import unletterbox_masks
    from dlrmamba_core.data.masks import downsample_masks
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    s = generate_frame(SynthConfig(rgb_size=(320, 240), thermal_size=(160, 128)), 3)
    assert s.masks is not None
    for dst in ((256, 320), (480, 640)):  # no shrinking: the full-input masks come back exact
        lb = letterbox_params((240, 320), dst)
        back = unletterbox_masks(letterbox_masks(s.masks, lb), lb)
        assert back.dtype == np.uint8
        np.testing.assert_array_equal(back, s.masks)
    # From the 1/4 grid of the batches: no shift, only the 4x4 cells' quantization.
    rng = np.random.default_rng(0)
    for dst in ((256, 320), (160, 256), (480, 640)):
        lb = letterbox_params((240, 320), dst)
        shifts = []
        for _ in range(20):
            m = np.zeros((1, 240, 320), np.uint8)
            x, y = int(rng.integers(0, 250)), int(rng.integers(0, 180))
            m[0, y:y + 50, x:x + 60] = 1
            back = unletterbox_masks(downsample_masks(letterbox_masks(m, lb), 4), lb)
            assert (back & m).sum() / (back | m).sum() > 0.85
            shifts.append(np.argwhere(back[0]).mean(0) - np.argwhere(m[0]).mean(0))
        assert np.abs(np.mean(shifts, 0)).max() < 0.3, (dst, np.mean(shifts, 0))
    soft = unletterbox_masks(np.full((1, 64, 80), 0.25, np.float32),
                             letterbox_params((240, 320), (256, 320)), threshold=None)
    assert soft.dtype == np.float32 and np.allclose(soft, 0.25)
    with pytest.raises(Exception, match="one stride"):
        unletterbox_masks(np.zeros((1, 64, 64)), letterbox_params((240, 320), (256, 320)))
