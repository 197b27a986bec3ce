"""``dlrmamba make-bag``: image folders -> rosbag2 (read back with rosbags), then bag-eval on
the real LLVIP pairs (skips when ../shared/real is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.errors import ConfigError, DatasetError

REPO = Path(__file__).resolve().parents[3]
LLVIP = REPO.parent / "shared" / "real" / "llvip_train50"


def _folders(root: Path, stems: list[str], extra_rgb: str | None = None) -> None:
    for d in ("rgb", "ir", "labels"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(stems):
        cv2.imwrite(str(root / "rgb" / f"{s}.png"), np.full((40, 60, 3), 50 + k, np.uint8))
        cv2.imwrite(str(root / "ir" / f"{s}.png"), np.full((40, 60, 3), 90 + k, np.uint8))
        (root / "labels" / f"{s}.txt").write_text("0 0.5 0.5 0.2 0.5\n")
    if extra_rgb:
        cv2.imwrite(str(root / "rgb" / f"{extra_rgb}.png"), np.zeros((40, 60, 3), np.uint8))
    (root / "classes.txt").write_text("person\n")


def _read(bag: Path) -> dict[str, list[tuple[int, object]]]:
    from dlrmamba_core.bag.reader import BagReader

    out: dict[str, list[tuple[int, object]]] = {}
    topics = ["/camera/rgb/image_raw", "/camera/thermal/image_raw", "/ground_truth/detections"]
    with BagReader(bag) as r:
        for msg in r.messages(topics):
            out.setdefault(msg.topic, []).append((msg.log_ns, msg.decode()))
    return out


def test_make_bag_from_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.cli import main

    _folders(tmp_path / "d", ["b", "a", "c"], extra_rgb="z")
    bag = tmp_path / "bag"
    d = tmp_path / "d"
    assert main(["make-bag", str(bag), "--rgb", str(d / "rgb"), "--thermal", str(d / "ir"),
                 "--labels", str(d / "labels"), "--rate", "5", "--thermal-offset-ms",
                 "7"]) == 0
    assert "1 images without a partner" in capsys.readouterr().out
    msgs = _read(bag)
    rgb = msgs["/camera/rgb/image_raw"]
    th = msgs["/camera/thermal/image_raw"]
    gt = msgs["/ground_truth/detections"]
    assert len(rgb) == len(th) == len(gt) == 3
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in rgb]
    assert np.diff(stamps).tolist() == [200_000_000, 200_000_000]  # 5 Hz
    th_stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in th]
    assert [t - s for s, t in zip(stamps, th_stamps, strict=True)] == [7_000_000] * 3
    assert th[0][1].encoding == "mono8" and rgb[0][1].encoding == "rgb8"
    # stem order a, b, c: the first RGB frame is a's (value 51), equal channels for thermal
    assert rgb[0][1].data[0] == 51 and th[0][1].data[0] == 91
    det = gt[0][1].detections[0]
    assert det.results[0].hypothesis.class_id == "person"
    assert det.bbox.center.position.x == pytest.approx(30.0)
    assert det.bbox.size_y == pytest.approx(20.0)
    from dlrmamba_core.bag.reader import BagReader

    with BagReader(bag) as r:
        assert r.custom["dlrmamba.synthetic"] == "false"
        assert json.loads(r.custom["dlrmamba.source"])["rate_hz"] == 5.0


def test_make_bag_errors(tmp_path: Path) -> None:
    from dlrmamba_core.bag.from_images import make_bag, pairs_from_folders

    _folders(tmp_path, ["a"])
    names, _, pairs = pairs_from_folders(tmp_path / "rgb", tmp_path / "ir")
    assert names == []
    with pytest.raises(ConfigError, match="half a frame"):
        make_bag(tmp_path / "b1", names, pairs, rate_hz=10, thermal_offset_ms=60)
    with pytest.raises(ConfigError, match="must be > 0"):
        make_bag(tmp_path / "b2", names, pairs, rate_hz=0)
    with pytest.raises(DatasetError, match="no file stem is in both"):
        pairs_from_folders(tmp_path / "rgb", tmp_path / "labels")
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DatasetError, match="no class names"):
        pairs_from_folders(tmp_path / "rgb", tmp_path / "ir", tmp_path / "labels")


@pytest.mark.skipif(not LLVIP.is_dir(), reason="../shared/real/llvip_train50 not present")
def test_llvip_bag_through_bag_eval(tmp_path: Path) -> None:
    """Real LLVIP pairs -> bag (half size, 10 Hz, 5 ms thermal offset) -> bag-eval with the
    shipped model: every pair is formed and scored against its labels."""
    from dlrmamba_core.bag.evaluate import EvalOptions, evaluate_bag
    from dlrmamba_core.bag.from_images import make_bag, pairs_from_dataset

    names, _, pairs = pairs_from_dataset("yolo:thermal_dir=ir", LLVIP)
    import itertools

    s = make_bag(tmp_path / "llvip", names, itertools.islice(pairs, 4), rate_hz=10,
                 thermal_offset_ms=5, scale=0.5)
    assert s.counts["/camera/rgb/image_raw"] == 4
    res = evaluate_bag(s.path, tmp_path / "eval",
                       EvalOptions("/camera/rgb/image_raw", "/camera/thermal/image_raw",
                                   gt="/ground_truth/detections", video=False))
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert m["pairing"]["pairs"] == 4
    expected = sum(len((LLVIP / "labels" / f"01000{i}.txt").read_text().split())
                   for i in range(1, 5)) // 5  # 5 numbers per YOLO row
    assert m["coco"]["num_gt"] == expected and m["coco"]["frames_evaluated"] == 4
    assert res.metrics["pairing"]["pairs"] == 4
