"""Paired augmentation (data.augment) and the torch dataset (data.torch_dataset)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dlrmamba_core.data.augment import NO_AUGMENT, AugmentConfig, augment_pair, mosaic
from dlrmamba_core.errors import ConfigError

H, W = 96, 128


def _scene(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dark images with a bright filled rectangle under each box, in both cameras."""
    rgb = np.full((3, H, W), 0.1, np.float32)
    th = np.full((1, H, W), 0.2, np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        rgb[:, y1:y2, x1:x2] = 0.9
        th[:, y1:y2, x1:x2] = 0.8
    return rgb, th


def _only(**on: float) -> AugmentConfig:
    return dataclasses.replace(NO_AUGMENT, **on)


def _bright_inside(img: np.ndarray, box: np.ndarray, thr: float) -> float:
    x1, y1, x2, y2 = np.round(box).astype(int)
    return float((img[:, y1 + 1:y2 - 1, x1 + 1:x2 - 1] > thr).mean())


def test_boxes_follow_flip_and_affine_in_both_cameras() -> None:
    boxes = np.array([[10, 20, 40, 50], [70, 30, 110, 80]], np.float32)
    labels = np.array([3, 5])
    rgb, th = _scene(boxes)
    cfg = _only(hflip=1.0, affine=1.0, scale=(0.8, 1.2), translate=0.05, min_visibility=0.9)
    for seed in range(8):
        np.random.seed(seed)
        r, t, b, lab = augment_pair(rgb, th, boxes, labels, cfg)
        assert r.shape == (3, H, W) and t.shape == (1, H, W)
        assert r.dtype == np.float32 and t.dtype == np.float32
        assert len(b) == len(lab) >= 1
        for box, cls in zip(b, lab, strict=True):
            assert cls in (3, 5)
            assert _bright_inside(r, box, 0.5) > 0.9  # the object moved with its box, in RGB
            assert _bright_inside(t, box, 0.5) > 0.9  # ... and in thermal
    # A flip alone mirrors the boxes exactly.
    np.random.seed(0)
    _, _, b, _ = augment_pair(rgb, th, boxes, labels, _only(hflip=1.0))
    np.testing.assert_allclose(b, np.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0],
                                            boxes[:, 3]], 1), atol=1e-4)


def test_zoom_drops_a_box_cut_by_the_border_with_its_label() -> None:
    """A fixed 1.3x zoom about the centre: the corner box keeps ~12 % of its area (< 30 %)."""
    boxes = np.array([[0, 0, 20, 20], [54, 38, 74, 58]], np.float32)
    labels = np.array([3, 5])
    rgb, th = _scene(boxes)
    np.random.seed(0)
    r, t, b, lab = augment_pair(rgb, th, boxes, labels,
                                _only(affine=1.0, scale=(1.3, 1.3), translate=0.0))
    assert lab.tolist() == [5]  # the corner box went, together with its label
    cx, cy, s = W / 2, H / 2, 1.3
    np.testing.assert_allclose(b[0], [cx + s * (54 - cx), cy + s * (38 - cy),
                                      cx + s * (74 - cx), cy + s * (58 - cy)], atol=0.6)
    assert _bright_inside(r, b[0], 0.5) > 0.9 and _bright_inside(t, b[0], 0.5) > 0.9
    # The same zoom keeps a box that loses little: a lower bar keeps the corner box too.
    np.random.seed(0)
    _, _, _, lab = augment_pair(rgb, th, boxes, labels,
                                _only(affine=1.0, scale=(1.3, 1.3), translate=0.0,
                                      min_visibility=0.05, min_area=1.0))
    assert sorted(lab.tolist()) == [3, 5]


def test_photometric_jitter_touches_one_camera_only() -> None:
    boxes = np.array([[10, 20, 40, 50]], np.float32)
    rgb, th = _scene(boxes)
    np.random.seed(1)
    r, t, b, _ = augment_pair(rgb, th, boxes, np.array([0]),
                              _only(rgb_jitter=1.0, brightness=0.5))
    assert not np.allclose(r, rgb) and np.array_equal(t, th)
    np.testing.assert_array_equal(b, boxes)
    np.random.seed(1)
    r, t, _, _ = augment_pair(rgb, th, boxes, np.array([0]),
                              _only(thermal_jitter=1.0, thermal_gain=(1.1, 1.2)))
    assert np.array_equal(r, rgb) and not np.allclose(t, th)


def test_misregistration_moves_thermal_only() -> None:
    boxes = np.array([[40, 30, 70, 60]], np.float32)
    rgb, th = _scene(boxes)
    np.random.seed(2)
    r, t, b, _ = augment_pair(rgb, th, boxes, np.array([0]),
                              _only(misregistration=1.0, misregistration_px=3.0,
                                    misregistration_deg=0.0))
    assert np.array_equal(r, rgb)
    np.testing.assert_array_equal(b, boxes)  # labels stay in the RGB frame
    ys, xs = np.nonzero(t[0] > 0.5)
    shift = (xs.mean() - 54.5, ys.mean() - 44.5)  # centre of the bright block moved
    assert 0 < max(abs(shift[0]), abs(shift[1])) <= 3.5


def test_same_numpy_seed_same_output_and_different_seed_differs() -> None:
    boxes = np.array([[10, 20, 40, 50], [70, 30, 110, 80]], np.float32)
    rgb, th = _scene(boxes)
    outs = []
    for seed in (5, 5, 6):
        np.random.seed(seed)
        outs.append(augment_pair(rgb, th, boxes, np.array([1, 2])))
    assert all(np.array_equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(outs[0], outs[2], strict=True)
                   if a.shape == b.shape)


def test_mosaic_cuts_four_samples_at_their_scale() -> None:
    parts = []
    for k in range(4):
        boxes = np.array([[50, 40, 80, 60]], np.float32)  # near the image centre
        rgb, th = _scene(boxes)
        parts.append((rgb * (0.5 + 0.1 * k), th, boxes, np.array([k])))
    np.random.seed(3)
    r, t, b, lab = mosaic(parts, AugmentConfig(min_visibility=0.0, min_area=1.0))
    assert r.shape == (3, H, W) and t.shape == (1, H, W)
    assert len(b) == len(lab) and set(lab.tolist()) <= {0, 1, 2, 3} and len(b) >= 1
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert (b[:, [0, 2]] <= W).all() and (b[:, [1, 3]] <= H).all()
    for box in b:  # every kept box still covers its object
        assert _bright_inside(t, box, 0.5) > 0.9
    with pytest.raises(ConfigError, match="4 samples"):
        mosaic(parts[:3])


def test_bad_config_and_shapes_are_named() -> None:
    with pytest.raises(ConfigError, match=r"hflip=1\.5"):
        AugmentConfig(hflip=1.5).validate()
    with pytest.raises(ConfigError, match="thermal_gain"):
        AugmentConfig(thermal_gain=(1.2, 0.8)).validate()
    with pytest.raises(ConfigError, match=r"rgb \(3, h, w\)"):
        augment_pair(np.zeros((H, W, 3), np.float32), np.zeros((1, H, W), np.float32),
                     np.zeros((0, 4)), np.zeros(0))


def test_detection_dataset_and_collate_on_synthetic_data(tmp_path: Path) -> None:
    import torch

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset
    from dlrmamba_core.data.torch_dataset import DetectionDataset, collate

    write_frame_dataset(tmp_path, 6, (("train", 1.0),), seed=4,
                        cfg=SynthConfig(rgb_size=(160, 120), thermal_size=(80, 64)))
    pairs = open_dataset("synth", tmp_path, "train")
    plain = DetectionDataset(pairs, (96, 128), augment=False)
    aug = DetectionDataset(pairs, (96, 128), augment=True, config=AugmentConfig(mosaic=1.0))
    items = [plain[0], plain[1]]
    batch = collate(items)
    assert batch["rgb"].shape == (2, 3, 96, 128) and batch["thermal"].shape == (2, 1, 96, 128)
    assert batch["rgb"].dtype == torch.float32
    n0, n1 = len(items[0]["labels"]), len(items[1]["labels"])
    assert batch["targets"].shape == (n0 + n1, 6)
    assert batch["targets"][:n0, 0].eq(0).all() and batch["targets"][n0:, 0].eq(1).all()
    np.random.seed(0)
    a = aug[2]
    np.random.seed(0)
    b = aug[2]
    assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["boxes"], b["boxes"])
    assert len(a["meta"]["mosaic"]) == 4 and a["meta"]["mosaic"][0] == 2
    assert float(a["rgb"].min()) >= 0 and float(a["rgb"].max()) <= 1
    # The engine picks this dataset up for training.
    from dlrmamba_core.engine.datasets import detection_dataset

    assert isinstance(detection_dataset(pairs, (96, 128), augment=True), DetectionDataset)


def test_missing_albumentations_names_the_train_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from dlrmamba_core.data import augment

    monkeypatch.setitem(sys.modules, "albumentations", None)  # import now raises ImportError
    augment._pipelines.cache_clear()  # built pipelines would not import it again
    with pytest.raises(ConfigError, match=r"pip install -e \.\[train\]"):
        augment.augment_pair(*_scene(np.zeros((0, 4), np.float32)), np.zeros((0, 4)),
                             np.zeros(0), _only(hflip=0.5))


def test_augmented_batches_do_not_depend_on_the_worker_count(tmp_path: Path) -> None:
    """Under the trainer's per-sample seeding, 0 and 2 DataLoader workers give equal batches."""
    import torch
    from torch.utils.data import DataLoader

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset
    from dlrmamba_core.data.torch_dataset import DetectionDataset, collate
    from dlrmamba_core.engine.sampling import SeededDataset

    write_frame_dataset(tmp_path, 6, (("train", 1.0),), seed=9,
                        cfg=SynthConfig(rgb_size=(160, 120), thermal_size=(80, 64)))
    ds = SeededDataset(DetectionDataset(open_dataset("synth", tmp_path, "train"), (64, 96),
                                        augment=True), seed=11)
    keys = [(1, i) for i in (4, 0, 5, 2, 1, 3)]
    # The workers receive the (epoch, index) keys and load them, as the trainer's loader does.
    runs = [list(DataLoader(keys, batch_size=3, num_workers=w,
                            collate_fn=lambda ks: collate([ds[k] for k in ks])))
            for w in (0, 2)]
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a["rgb"], b["rgb"]) and torch.equal(a["thermal"], b["thermal"])
        assert torch.equal(a["targets"], b["targets"])
    assert any("mosaic" in m for batch in runs[0] for m in batch["meta"])  # augmentation ran
