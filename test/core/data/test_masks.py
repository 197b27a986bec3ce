"""Instance masks: RLE and polygons against pycocotools, and the generator's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlrmamba_core.data.masks import (
    decode_segmentation,
    downsample_masks,
    join_polygons,
    mask_boxes,
    mask_to_polygons,
    polygons_to_mask,
    render_masks,
    resize_masks,
    rle_decode,
    rle_encode,
)
from dlrmamba_core.data.synthetic import (
    SynthConfig,
    generate_frame,
    with_sizes,
    write_frame_dataset,
)
from dlrmamba_core.errors import InputError

SMALL = with_sizes(SynthConfig(), rgb_size=(320, 192), thermal_size=(160, 128))
# pycocotools 2.0 against numpy 2 warns about `copy=`; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _star(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random star-shaped polygon (K, 2) somewhere in an h x w image."""
    k = int(rng.integers(3, 12))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    r = rng.uniform(3, 25, k)
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    return np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1)


def test_rle_matches_pycocotools_both_ways() -> None:
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(0)
    masks = [np.zeros((7, 5), np.uint8), np.ones((4, 6), np.uint8)]
    masks += [(rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < p)
              .astype(np.uint8) for p in (0.02, 0.5, 0.98) for _ in range(10)]
    for m in masks:
        ours = rle_encode(m)
        ref = coco_mask.encode(np.asfortranarray(m))
        assert ours["size"] == list(ref["size"])
        assert ours["counts"] == ref["counts"].decode("ascii")  # identical compressed string
        np.testing.assert_array_equal(rle_decode(ref), m)  # pycocotools -> ours
        assert coco_mask.area(ref) == int(m.sum())
    # Uncompressed RLE (what COCO uses for iscrowd regions) decodes too.
    np.testing.assert_array_equal(rle_decode({"size": [2, 3], "counts": [1, 2, 3]}),
                                  [[0, 1, 0], [1, 0, 0]])


def test_malformed_rle_is_refused() -> None:
    with pytest.raises(InputError, match="add up to 5"):
        rle_decode({"size": [2, 3], "counts": [1, 4]})
    with pytest.raises(InputError, match="needs 'size'"):
        rle_decode({"counts": "abc"})
    with pytest.raises(InputError, match="character"):
        rle_decode({"size": [2, 3], "counts": "\x7f"})


def test_polygon_rasterization_agrees_with_pycocotools() -> None:
    from pycocotools import mask as coco_mask

    rng = np.random.default_rng(1)
    ious = []
    for _ in range(60):
        h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        poly = _star(rng, h, w)
        ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([poly.ravel().tolist()],
                                                                     h, w)))
        ours = polygons_to_mask([poly], (h, w))
        if ref.sum() < 50:
            continue
        ious.append((ref & ours).sum() / (ref | ours).sum())
    assert len(ious) > 20 and min(ious) > 0.9 and np.mean(ious) > 0.97, ious
    # An axis-aligned square on pixel edges covers exactly its pixels.
    sq = polygons_to_mask([np.float32([[2, 1], [6, 1], [6, 4], [2, 4]])], (6, 8))
    assert sq.sum() == 12 and sq[1:4, 2:6].all()


def test_mask_to_polygons_round_trips_and_joins_parts() -> None:
    m = np.zeros((30, 40), np.uint8)
    m[3:12, 4:15] = 1
    m[15:25, 20:37] = 1  # a second part
    m[14, 30] = 1  # touching the second part diagonally
    polys = mask_to_polygons(m)
    assert len(polys) == 2
    np.testing.assert_array_equal(polygons_to_mask(polys, m.shape), m)
    joined = join_polygons(polys)  # YOLO-seg: one polygon per object
    np.testing.assert_array_equal(polygons_to_mask([joined], m.shape), m)
    assert mask_to_polygons(np.zeros((4, 4))) == [] and join_polygons([]).shape == (0, 2)


def test_mask_boxes_resize_and_downsample() -> None:
    m = np.zeros((3, 16, 24), np.uint8)
    m[0, 4:8, 2:10] = 1
    m[1, 0:16, 20:24] = 1
    np.testing.assert_array_equal(mask_boxes(m), [[2, 4, 10, 8], [20, 0, 24, 16], [0, 0, 0, 0]])
    d = downsample_masks(m, 4)
    assert d.shape == (3, 4, 6) and d.dtype == np.uint8
    np.testing.assert_array_equal(mask_boxes(d) * 4, [[0, 4, 12, 8], [20, 0, 24, 16],
                                                      [0, 0, 0, 0]])  # half-covered cells kept
    assert resize_masks(m, (32, 48))[0].sum() == 4 * m[0].sum()
    with pytest.raises(InputError, match="not divisible"):
        downsample_masks(m, 5)


def test_coco_segmentation_field_is_checked() -> None:
    polys = decode_segmentation([[1, 1, 5, 1, 5, 4]], (8, 8))
    assert isinstance(polys, list) and polys[0].shape == (3, 2)
    assert render_masks([polys], (8, 8)).shape == (1, 8, 8)
    with pytest.raises(InputError, match="at least 3 points"):
        decode_segmentation([[1, 1, 5, 1]], (8, 8))
    with pytest.raises(InputError, match="differs from the image"):
        decode_segmentation({"size": [4, 4], "counts": [16]}, (8, 8))
    with pytest.raises(InputError, match="list of polygons"):
        decode_segmentation("abc", (8, 8))


def test_generator_masks_match_boxes_and_are_deterministic() -> None:
    n = 0
    for seed in range(10):
        a = generate_frame(SMALL, seed)
        assert a.masks is not None and a.masks.dtype == np.uint8
        assert a.masks.shape == (len(a.boxes), *a.rgb.shape[:2])
        assert set(np.unique(a.masks)) <= {0, 1}
        areas = a.masks.reshape(len(a.boxes), -1).sum(1)
        assert (areas > 0).all()  # objects never overlap: none is hidden
        # The mask's tight box is the box up to the rounding of the polygon vertices.
        np.testing.assert_allclose(mask_boxes(a.masks), a.boxes, atol=1.5)
        assert a.masks.sum(0).max() <= 1  # one object per pixel
        n += len(a.boxes)
        if seed < 3:
            b = generate_frame(SMALL, seed)
            assert b.masks is not None and np.array_equal(a.masks, b.masks)
    assert n > 20


def test_dataset_writes_coco_rle_that_pycocotools_evaluates(tmp_path: Path) -> None:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    write_frame_dataset(tmp_path / "d", 6, (("train", 0.5), ("val", 0.5)), seed=3, cfg=SMALL)
    for split in ("train", "val"):
        path = tmp_path / "d" / split / "annotations.json"
        data = json.loads(path.read_text())
        seeds = {im["id"]: im["seed"] for im in data["images"]}
        by_image: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for iid, anns in by_image.items():
            s = generate_frame(SMALL, seeds[iid])
            assert s.masks is not None and len(anns) == len(s.masks)
            for a, m in zip(anns, s.masks, strict=True):
                np.testing.assert_array_equal(rle_decode(a["segmentation"]), m)
                assert a["area"] == int(m.sum())
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(path))
            dets = [{"image_id": a["image_id"], "category_id": a["category_id"],
                     "segmentation": a["segmentation"], "score": 1.0}
                    for a in data["annotations"]]
            ev = COCOeval(gt, gt.loadRes(dets), "segm")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0)  # the ground truth scores perfectly
    info = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert info["segmentation"] == "coco_rle" and info["yolo_labels"] == "detect"


def test_contact_sheet_and_data_show_draw_the_masks(tmp_path: Path) -> None:
    import cv2

    from dlrmamba_core.cli import main as cli_main
    from dlrmamba_core.data.viz import contact_sheet, draw_masks

    img = np.full((40, 60, 3), 50, np.uint8)
    m = np.zeros((1, 20, 30), np.uint8)
    m[0, 5:15, 10:20] = 1
    out = draw_masks(img, m, np.array([1]), scale=2.0)  # masks at half the image's size
    changed = (out != img).any(2)
    assert changed[12:28, 22:38].all()  # filled inside (rows 10..30, columns 20..40)
    assert not changed[:8].any() and not changed[:, :18].any()  # nothing far outside
    s = generate_frame(SMALL, 4)
    assert s.masks is not None
    with_m = contact_sheet([s], ["x"] * 7, width=160)
    s.masks = None
    without = contact_sheet([s], ["x"] * 7, width=160)
    assert with_m.shape == without.shape and (with_m != without).any()
    write_frame_dataset(tmp_path / "d", 2, (("val", 1.0),), seed=1, cfg=SMALL)
    assert cli_main(["data", "show", "--format", "synth", "--root", str(tmp_path / "d"),
                     "--split", "val", "--num", "2", "--out", str(tmp_path / "s.png")]) == 0
    assert cv2.imread(str(tmp_path / "s.png")) is not None


def test_sequence_rgb_frames_carry_masks_inside_their_boxes() -> None:
    from dlrmamba_core.data.synthetic import generate_sequence

    frames = list(generate_sequence(SMALL, 5, duration_s=0.4, scene="maritime"))
    again = list(generate_sequence(SMALL, 5, duration_s=0.4, scene="maritime"))
    rgb = [f for f in frames if f.stream == "rgb"]
    assert rgb and all(f.masks is None for f in frames if f.stream == "thermal")
    for f, g in zip(frames, again, strict=True):
        assert (f.masks is None) == (g.masks is None)
        if f.masks is not None:
            assert g.masks is not None and np.array_equal(f.masks, g.masks)
    for f in rgb:
        assert f.masks is not None and f.masks.shape == (len(f.boxes), 192, 320)
        mb = mask_boxes(f.masks)
        has = f.masks.reshape(len(f.boxes), -1).any(1)
        assert has.all()
        # Visible pixels lie in the box (an object passing behind another loses some).
        assert (mb[:, :2] >= f.boxes[:, :2] - 1.5).all()
        assert (mb[:, 2:] <= f.boxes[:, 2:] + 1.5).all()


def test_rle_with_wrong_run_total_is_refused_when_read() -> None:
    good = rle_encode(np.ones((4, 5), np.uint8))
    assert decode_segmentation(good, (4, 5)) == good
    with pytest.raises(InputError, match="add up to 20, but its size"):
        decode_segmentation({"size": [4, 6], "counts": good["counts"]}, None)
    with pytest.raises(InputError, match="add up to 3"):
        decode_segmentation({"size": [2, 2], "counts": [1, 2]}, (2, 2))
