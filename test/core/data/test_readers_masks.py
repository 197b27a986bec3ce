"""Readers with instance masks: synth, COCO (polygons, RLE, iscrowd) and YOLO-seg."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.data.masks import mask_boxes, rle_encode
from dlrmamba_core.data.readers import open_dataset
from dlrmamba_core.data.synthetic import (
    SynthConfig,
    frame_seed,
    generate_frame,
    with_sizes,
    write_frame_dataset,
)
from dlrmamba_core.errors import DatasetError

SMALL = with_sizes(SynthConfig(), rgb_size=(320, 192), thermal_size=(160, 128))
# pycocotools 2.0 against numpy 2 warns about `copy=`; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
H, W = 40, 60


def _images(base: Path, stems: list[str]) -> None:
    for stem in stems:
        for sub, img in (("rgb", np.full((H, W, 3), 90, np.uint8)),
                         ("thermal", np.full((H, W), 1000, np.uint16))):
            (base / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(base / sub / f"{stem}.png"), img)


def _coco(base: Path, anns: list[dict]) -> Path:
    _images(base, ["a"])
    data = {"images": [{"id": 1, "file_name": "rgb/a.png", "thermal_file": "thermal/a.png",
                        "width": W, "height": H}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **a}
                            for i, a in enumerate(anns)],
            "categories": [{"id": 1, "name": "boat"}]}
    (base / "annotations.json").write_text(json.dumps(data))
    return base / "annotations.json"


def test_synth_reader_gives_the_generator_masks(tmp_path: Path) -> None:
    write_frame_dataset(tmp_path, 4, (("train", 1.0),), seed=2, cfg=SMALL)
    ds = open_dataset("synth", tmp_path, "train")
    assert ds.has_masks
    for i in range(len(ds)):
        s = ds[i]
        ref = generate_frame(SMALL, frame_seed(2, i))
        assert s.masks is not None and ref.masks is not None
        np.testing.assert_array_equal(s.masks, ref.masks)
        np.testing.assert_allclose(mask_boxes(s.masks), s.boxes, atol=1.5)
    assert ds.load(0, masks=False).masks is None  # detection-only reads skip the decode


def test_coco_polygons_rle_and_crowd_round_trip_through_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    rle_mask = np.zeros((H, W), np.uint8)
    rle_mask[5:20, 30:50] = 1
    rle_mask[8:12, 35:40] = 0  # a hole: RLE keeps it
    rle = rle_encode(rle_mask)
    crowd_counts = [0, H * W]  # uncompressed RLE, as COCO writes crowd regions
    path = _coco(tmp_path, [
        {"bbox": [2, 3, 20, 15], "segmentation": [[2, 3, 22, 3, 22, 18], [2, 20, 8, 20, 5, 30]]},
        {"bbox": [30, 5, 20, 15], "segmentation": rle},
        {"bbox": [0, 0, W, H], "iscrowd": 1, "segmentation": {"size": [H, W],
                                                             "counts": crowd_counts}},
        {"bbox": [40, 25, 10, 10]},  # no segmentation: its box becomes its mask
    ])
    ds = open_dataset("coco", tmp_path)
    assert ds.has_masks and len(ds[0].boxes) == 3
    masks = ds[0].masks
    assert masks is not None and masks.shape == (3, H, W) and masks.dtype == np.uint8
    ref = COCO(str(path))
    for k, ann_id in enumerate((1, 2)):
        want = ref.annToMask(ref.loadAnns([ann_id])[0])
        iou = (want & masks[k]).sum() / (want | masks[k]).sum()
        assert iou > (0.999 if ann_id == 2 else 0.93), (ann_id, iou)
    np.testing.assert_array_equal(masks[1], rle_mask)  # RLE is exact, hole included
    np.testing.assert_array_equal(mask_boxes(masks[2:]), [[40, 25, 50, 35]])
    assert any("1 iscrowd" in n for n in ds.notes)
    assert any("1 annotations" in n and "box rectangle" in n for n in ds.notes)


def test_coco_malformed_segmentation_names_file_and_annotation(tmp_path: Path) -> None:
    _coco(tmp_path, [{"bbox": [2, 3, 20, 15], "segmentation": [[2, 3, 22, 3]]}])
    with pytest.raises(DatasetError, match=r"annotations.json: annotation id 1 .*3 points"):
        open_dataset("coco", tmp_path)
    _coco(tmp_path, [{"bbox": [2, 3, 20, 15], "segmentation": {"size": [10, 10],
                                                               "counts": [100]}}])
    with pytest.raises(DatasetError, match=r"annotation id 1 .*differs from the image"):
        open_dataset("coco", tmp_path)


def test_datasets_without_masks_say_so(tmp_path: Path) -> None:
    _coco(tmp_path / "c", [{"bbox": [2, 3, 20, 15]}, {"bbox": [1, 1, 5, 5], "segmentation": []}])
    ds = open_dataset("coco", tmp_path / "c")
    assert not ds.has_masks and ds[0].masks is None and len(ds[0].boxes) == 2
    assert ds.notes == []
    _images(tmp_path / "y", ["a"])
    (tmp_path / "y" / "labels").mkdir()
    (tmp_path / "y" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    ds = open_dataset("yolo", tmp_path / "y")
    assert not ds.has_masks and ds[0].masks is None and ds.notes == []
    from dlrmamba_core.data.cli import dataset_stats

    st = dataset_stats(ds, sizes=0)
    assert st["instance_masks"] is False and st["masks"] == 0 and st["boxes"] == 1


def _yolo(root: Path, text: str) -> Path:
    _images(root, ["a"])
    (root / "labels").mkdir(exist_ok=True)
    (root / "labels" / "a.txt").write_text(text)
    return root / "labels" / "a.txt"


def test_yolo_seg_rows_give_masks_and_their_bounds_as_boxes(tmp_path: Path) -> None:
    # A triangle, a square as a polygon, and a plain box row in the same file.
    _yolo(tmp_path, "1 0.1 0.1 0.5 0.1 0.1 0.6\n0 0.6 0.5 0.9 0.5 0.9 0.95 0.6 0.95\n"
                    "0 0.25 0.85 0.1 0.1\n")
    ds = open_dataset("yolo", tmp_path)
    s = ds[0]
    assert ds.has_masks and s.labels.tolist() == [1, 0, 0]
    np.testing.assert_allclose(s.boxes, [[6, 4, 30, 24], [36, 20, 54, 38], [12, 32, 18, 36]],
                               atol=1e-4)
    assert s.masks is not None and s.masks.shape == (3, H, W)
    np.testing.assert_allclose(mask_boxes(s.masks), s.boxes, atol=1.0)
    assert s.masks[1].sum() == 18 * 18  # the square covers exactly its pixels
    assert abs(int(s.masks[0].sum()) - 24 * 20 / 2) < 20  # the triangle: about half its box
    assert any("1 box rows" in n for n in ds.notes)


@pytest.mark.parametrize(("row", "match"), [
    ("0 0.1 0.1 0.5 0.1 0.1", "got 6 values"),
    ("0 0.1 0.1 0.5 0.1 0.1 0.6 0.3", "got 8 values"),
    ("0 0.1", "got 2 values"),
    ("0 0.1 0.1 0.5 zero 0.1 0.6", "malformed YOLO row"),
    ("0 12 8 30 8 12 30", "pixel units"),
    ("0 0.1 0.1 1.2 0.1 0.1 0.6", "outside the image"),
    ("0 0.1 0.1 0.5 0.1 0.9 0.1", "zero width or height"),
    ("3 0.1 0.1 0.5 0.1 0.1 0.6", r"class 3 outside 0\.\.1"),
])
def test_malformed_yolo_seg_rows_name_file_and_line(tmp_path: Path, row: str, match: str) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\n")
    _yolo(tmp_path, f"0 0.5 0.5 0.1 0.1\n{row}\n")
    with pytest.raises(DatasetError, match=rf"a\.txt, line 2: .*{match}"):
        open_dataset("yolo", tmp_path)


def test_yolo_seg_clip_keeps_the_part_inside(tmp_path: Path) -> None:
    # A rectangle reaching half an image beyond the left edge, and one wholly outside.
    _yolo(tmp_path, "0 -0.5 0.1 0.5 0.1 0.5 0.6 -0.5 0.6\n0 1.1 0.1 1.3 0.1 1.2 0.3\n")
    with pytest.raises(DatasetError, match=r"line 1: points .* outside the image"):
        open_dataset("yolo", tmp_path)
    ds = open_dataset("yolo:clip=1", tmp_path)
    s = ds[0]
    np.testing.assert_allclose(s.boxes, [[0, 4, 30, 24]], atol=1e-4)
    assert s.masks is not None and len(s.masks) == 1
    np.testing.assert_array_equal(mask_boxes(s.masks), [[0, 4, 30, 24]])
    assert s.masks.sum() == 30 * 20  # the inside part, unchanged by the clipping
    assert any("clipped 2" in n for n in ds.notes)


def test_synthetic_yolo_seg_export_reads_back(tmp_path: Path) -> None:
    write_frame_dataset(tmp_path, 3, (("train", 1.0),), seed=6, cfg=SMALL, yolo_seg=True)
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["yolo_labels"] == "segment"
    first = (tmp_path / "train" / "labels" / "000000.txt").read_text().splitlines()[0].split()
    assert len(first) >= 7 and len(first) % 2 == 1
    ys = open_dataset("yolo", tmp_path, "train")  # the synth layout is a YOLO layout too
    cs = open_dataset("synth", tmp_path, "train")
    assert ys.has_masks and ys.notes == []
    for i in range(len(cs)):
        a, b = ys[i], cs[i]
        assert a.masks is not None and b.masks is not None
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.6)
        inter = (a.masks & b.masks).reshape(len(a.masks), -1).sum(1)
        union = (a.masks | b.masks).reshape(len(a.masks), -1).sum(1)
        assert (inter / union > 0.97).all(), inter / union  # outlines lose only holes
