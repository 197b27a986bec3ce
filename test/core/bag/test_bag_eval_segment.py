"""``bag-eval`` with a segment model: masks drawn in the video, segm mAP only where the ground
truth has masks (a COCO JSON with ``segmentation``), and said so where it has none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlrmamba_core.bag import annotate
from dlrmamba_core.bag import evaluate as ev
from dlrmamba_core.bag.evaluate import EvalOptions, evaluate_bag
from dlrmamba_core.bag.synth import GT_TOPIC, RGB_TOPIC, THERMAL_TOPIC, write_frames_bag
from dlrmamba_core.data.masks import mask_boxes, rle_encode
from dlrmamba_core.runtime import Detector

from .conftest import GRID_CLASSES, scene_frames

CONF = 0.001  # an untrained model's scores sit near the class prior


def _opts(model: Path, **kw: Any) -> EvalOptions:
    base: dict[str, Any] = {"rgb_topic": RGB_TOPIC, "thermal_topic": THERMAL_TOPIC,
                            "gt": GT_TOPIC, "model": str(model), "progress": False,
                            "conf_threshold": CONF}
    base.update(kw)
    return EvalOptions(**base)


def _pairs() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(rgb, thermal) of each pair bag-eval makes of :func:`scene_frames`, by RGB stamp."""
    frames = scene_frames()
    thermal = {f.stamp_ns - 2_000_000: f.image for f in frames if f.stream == "thermal"}
    return {f.stamp_ns: (f.image, thermal[f.stamp_ns]) for f in frames
            if f.stream == "rgb" and f.stamp_ns in thermal}


def test_masks_drawn_and_segm_not_scored_without_mask_ground_truth(
        segment_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: dict[int, np.ndarray | None] = {}
    real_draw = ev.draw

    def spy(rgb, det, gt, names, caption="", thermal=None, masks=None):
        drawn[det.stamp_ns] = masks
        return real_draw(rgb, det, gt, names, caption, thermal, masks)

    monkeypatch.setattr(ev, "draw", spy)
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    res = evaluate_bag(s.path, tmp_path / "out", _opts(segment_model))
    met = res.metrics
    assert met["task"] == "segment" and met["segm"]["scored"] is False
    assert "no instance masks" in met["segm"]["reason"] and GT_TOPIC in met["segm"]["reason"]
    assert "not scored" in (tmp_path / "out" / "report.md").read_text()
    assert met["coco"]["frames_evaluated"] == 4  # boxes are still scored
    reference = Detector(str(segment_model), conf_threshold=CONF)
    pairs = _pairs()
    assert sorted(drawn) == sorted(pairs)
    for stamp, (rgb, thermal) in pairs.items():
        want = reference.detect(rgb, thermal)
        got = drawn[stamp]
        assert got is not None and want.masks is not None and want.masks.any()
        np.testing.assert_array_equal(got, want.masks)
        np.testing.assert_allclose(res.detections[stamp].boxes, want.boxes, atol=1e-4)


def test_detect_model_metrics_have_no_segm(grid_model: Path, tmp_path: Path) -> None:
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    met = evaluate_bag(s.path, tmp_path / "out", _opts(grid_model, video=False,
                                                        conf_threshold=None)).metrics
    assert met["task"] == "detect" and met["segm"] is None


def _coco_from_masks(path: Path, masks: dict[int, tuple[np.ndarray, str]]) -> Path:
    """A COCO JSON whose one object per frame has the given mask (RLE) and class name."""
    cats = {n: i + 1 for i, n in enumerate(GRID_CLASSES)}
    coco: dict[str, Any] = {"images": [], "annotations": [],
                            "categories": [{"id": i, "name": n} for n, i in cats.items()]}
    for k, (stamp, (mask, name)) in enumerate(sorted(masks.items())):
        coco["images"].append({"id": k, "stamp_ns": stamp, "width": mask.shape[1],
                               "height": mask.shape[0]})
        x1, y1, x2, y2 = (float(v) for v in mask_boxes(mask[None])[0])
        coco["annotations"].append({"id": k, "image_id": k, "category_id": cats[name],
                                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "segmentation": rle_encode(mask)})
    path.write_text(json.dumps(coco))
    return path


@pytest.mark.parametrize("shift", [0, 40])
def test_segm_scored_against_coco_masks(segment_model: Path, tmp_path: Path,
                                        shift: int) -> None:
    """Ground truth = the detector's own top mask on one frame: mask mAP 100; the same mask
    moved 40 px (off every predicted mask): 0."""
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    stamp, (rgb, thermal) = sorted(_pairs().items())[0]
    want = Detector(str(segment_model), conf_threshold=CONF).detect(rgb, thermal)
    assert want.masks is not None and want.masks[0].any()
    top = np.roll(want.masks[0], shift, axis=1)
    gt = _coco_from_masks(tmp_path / "gt.json", {stamp: (top, want.labels[0])})
    met = evaluate_bag(s.path, tmp_path / "out",
                       _opts(segment_model, gt=str(gt), video=False)).metrics
    segm = met["segm"]
    assert segm["scored"] is True and segm["frames_evaluated"] == 1 and segm["num_gt"] == 1
    assert segm["num_det"] == len(want)
    if shift == 0:
        assert segm["mAP50"] == pytest.approx(100.0) and segm["mAP50_95"] == pytest.approx(100.0)
    else:
        assert segm["mAP50"] == pytest.approx(0.0)
    assert "mask mAP50" in (tmp_path / "out" / "report.md").read_text()


def test_draw_paints_masks_in_the_box_colour() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    det = ev.m.FrameDetections(0, "", np.array([[10, 10, 30, 30]], np.float32),
                               np.array([0.9], np.float32), ["hot"])
    masks = np.zeros((1, 40, 60), np.uint8)
    masks[0, 15:25, 15:25] = 1
    plain = annotate.draw(rgb, det, None, GRID_CLASSES)
    painted = annotate.draw(rgb, det, None, GRID_CLASSES, masks=masks)
    inside = painted[20, 20].astype(int)
    assert plain[20, 20].tolist() == [0, 0, 0] and inside.sum() > 0
    colour = annotate._PALETTE[GRID_CLASSES.index("hot")].astype(int)
    assert np.argmax(inside) == np.argmax(colour)  # the class's colour, blended
    assert painted[5, 50].tolist() == [0, 0, 0]  # outside the mask and the box
    with pytest.raises(ValueError, match="do not fit"):
        annotate.draw(rgb, det, None, GRID_CLASSES, masks=np.zeros((2, 40, 60), np.uint8))


def test_instance_masks_written_as_the_node_publishes_them(segment_model: Path,
                                                          tmp_path: Path) -> None:
    """``--instance-masks``: one index image per pair on /dlrmamba/instance_masks, equal to the
    node's conversion of ``Detector.detect``'s masks; read back by read_instance_masks_bag."""
    from dlrmamba_core.bag.compare import compare_instance_masks
    from dlrmamba_core.runtime.segment import instance_index_image

    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    res = evaluate_bag(s.path, tmp_path / "out", _opts(segment_model, video=False,
                                                        instance_masks=True))
    assert res.metrics["outputs"]["instance_masks_topic"] == ev.MASK_TOPIC
    assert "instance masks: topic" in (tmp_path / "out" / "report.md").read_text()
    got = ev.read_instance_masks_bag(tmp_path / "out" / "detections")
    reference = Detector(str(segment_model), conf_threshold=CONF)
    pairs = _pairs()
    assert sorted(got) == sorted(pairs) == sorted(res.detections)
    want = {}
    for stamp, (rgb, thermal) in pairs.items():
        d = reference.detect(rgb, thermal)
        want[stamp] = instance_index_image(d.masks, d.scores, d.boxes, "mono8")
        assert got[stamp].dtype == np.uint8 and got[stamp].shape == rgb.shape[:2]
        assert 0 < got[stamp].max() <= len(d.scores)  # masks of some detections are painted
    cmp = compare_instance_masks(got, want)
    assert cmp["identical"] and cmp["frames_identical"] == len(pairs), cmp
    # One moved pixel is found and counted.
    moved = {k: v.copy() for k, v in want.items()}
    first = sorted(moved)[0]
    moved[first][0, 0] = 200 if moved[first][0, 0] != 200 else 0
    cmp = compare_instance_masks(got, moved)
    assert cmp["differing"] == [first] and cmp["max_pixels_differing"] == 1
    assert not cmp["identical"] and cmp["frames_identical"] == len(pairs) - 1
    # Nothing recorded live is not "identical".
    assert not compare_instance_masks({}, want)["identical"]


def test_instance_masks_need_a_segment_model(grid_model: Path, tmp_path: Path) -> None:
    from dlrmamba_core.errors import ConfigError

    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    with pytest.raises(ConfigError, match=r"detection model.*--task segment"):
        evaluate_bag(s.path, tmp_path / "out", _opts(grid_model, instance_masks=True))
    assert not (tmp_path / "out").exists()


def test_reading_masks_from_a_bag_without_them_names_the_topics(grid_model: Path,
                                                                 tmp_path: Path) -> None:
    from dlrmamba_core.errors import BagError

    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    evaluate_bag(s.path, tmp_path / "out", _opts(grid_model, video=False))
    with pytest.raises(BagError, match="/dlrmamba/instance_masks"):
        ev.read_instance_masks_bag(tmp_path / "out" / "detections")
