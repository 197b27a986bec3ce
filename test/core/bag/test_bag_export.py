"""``bag-export``: a real bag's pairs as PNG folders, paired exactly as ``bag-eval`` pairs them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.bag.evaluate import EvalOptions, evaluate_bag
from dlrmamba_core.bag.export import export_pairs
from dlrmamba_core.bag.synth import RGB_TOPIC, THERMAL_TOPIC, StreamFrame, write_frames_bag
from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.errors import BagError, ConfigError

from .conftest import scene_frames

T0 = 1_700_000_000_000_000_000


def _png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def _jittered_bag(path: Path) -> tuple[Path, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """RGB at 30 Hz and thermal at 9 Hz with their own stamps (not a multiple of the RGB
    period), so which RGB frame a thermal frame pairs with is decided by the pairing."""
    rgb, th, frames = {}, {}, []
    for i in range(20):
        t = T0 + round(i * 1e9 / 30)
        img = np.full((48, 64, 3), 10 + 11 * i, np.uint8)
        img[:, :, 1] = i  # each frame differs in every channel
        rgb[t] = img
        frames.append(StreamFrame("rgb", t, img))
    for k in range(6):
        t = T0 + round(k * 1e9 / 9) + 7_000_000
        img = np.full((24, 32), 20_000 + 997 * k, np.uint16)  # 16-bit, beyond 8 bits
        img[3, 5] = 65_535
        th[t] = img
        frames.append(StreamFrame("thermal", t, img))
    write_frames_bag(path, sorted(frames, key=lambda f: f.stamp_ns), [], storage="mcap")
    return path, rgb, th


def test_export_pairs_are_bag_eval_pairs(tmp_path: Path, grid_model: Path) -> None:
    bag, rgb, th = _jittered_bag(tmp_path / "bag")
    res = export_pairs(bag, tmp_path / "out", RGB_TOPIC, THERMAL_TOPIC)
    ev = evaluate_bag(bag, tmp_path / "eval", EvalOptions(
        RGB_TOPIC, THERMAL_TOPIC, model=str(grid_model), video=False, progress=False))
    assert [int(s) for s in res.stems] == sorted(ev.detections)
    assert res.pairs_formed == len(res.stems) == 6
    for key in ("rgb", "thermal"):  # the same messages received, paired and dropped
        assert {k: res.pairing[key][k] for k in ("received", "paired", "dropped")} == {
            k: ev.metrics["pairing"][key][k] for k in ("received", "paired", "dropped")}
    with (tmp_path / "out" / "pairs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stem"] for r in rows] == res.stems
    for r in rows:
        rs, ts = int(r["rgb_stamp_ns"]), int(r["thermal_stamp_ns"])
        assert r["stem"] == f"{rs:019d}"
        assert float(r["skew_ms"]) == pytest.approx((rs - ts) / 1e6, abs=1e-3)
        # lossless: the PNGs hold exactly the pixels of the paired messages
        np.testing.assert_array_equal(_png(tmp_path / "out" / "rgb" / f"{r['stem']}.png"),
                                      rgb[rs][..., ::-1])
        t_png = _png(tmp_path / "out" / "thermal" / f"{r['stem']}.png")
        assert t_png.dtype == np.uint16 and t_png.shape == (24, 32)
        np.testing.assert_array_equal(t_png, th[ts])
    summary = json.loads((tmp_path / "out" / "export.json").read_text())
    assert summary["pairs_exported"] == 6 and summary["every"] == 1
    assert summary["images"] == {"rgb": "64x48 uint8 RGB", "thermal": "32x24 uint16"}


def test_cli_every_and_compressed_topics(scene_bag: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "every2"
    assert cli_main(["bag-export", str(scene_bag), "--rgb", RGB_TOPIC, "--thermal",
                     THERMAL_TOPIC, "--out", str(out), "--every", "2"]) == 0
    assert "exported 2 of 4 pairs (every 2)" in capsys.readouterr().out
    frames = scene_frames()
    th_stamps = [f.stamp_ns for f in frames if f.stream == "thermal"]
    # the scene's 4 pairs are the RGB frames 2 ms before each thermal frame: keep 1st and 3rd
    assert sorted(p.stem for p in (out / "rgb").glob("*.png")) == [
        f"{th_stamps[0] - 2_000_000:019d}", f"{th_stamps[2] - 2_000_000:019d}"]
    # CompressedImage topics (JPEG RGB, 16-bit PNG thermal) decode as bag-eval decodes them
    res = export_pairs(scene_bag, tmp_path / "comp", RGB_TOPIC + "/compressed",
                       THERMAL_TOPIC + "/compressed")
    by_stamp = {f.stamp_ns: f.image for f in frames}
    for stem in res.stems:
        th = _png(tmp_path / "comp" / "thermal" / f"{stem}.png")
        np.testing.assert_array_equal(th, by_stamp[int(stem) + 2_000_000])  # lossless PNG
        rgb = _png(tmp_path / "comp" / "rgb" / f"{stem}.png")[..., ::-1]
        diff = np.abs(rgb.astype(int) - by_stamp[int(stem)].astype(int))
        assert diff.mean() < 3  # JPEG


def test_errors_leave_no_output(scene_bag: Path, tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"no RGB/thermal pair.*slop 0\.001 s"):
        export_pairs(scene_bag, tmp_path / "none", RGB_TOPIC, THERMAL_TOPIC, slop_s=0.001)
    assert not (tmp_path / "none").exists() and not list(tmp_path.glob(".none*"))
    with pytest.raises(BagError, match="/camera/depth"):
        export_pairs(scene_bag, tmp_path / "x", "/camera/depth", THERMAL_TOPIC)
    with pytest.raises(ConfigError, match="--every 0"):
        export_pairs(scene_bag, tmp_path / "x", RGB_TOPIC, THERMAL_TOPIC, every=0)
    export_pairs(scene_bag, tmp_path / "done", RGB_TOPIC, THERMAL_TOPIC)
    with pytest.raises(BagError, match=r"exists already.*--overwrite"):
        export_pairs(scene_bag, tmp_path / "done", RGB_TOPIC, THERMAL_TOPIC)
    again = export_pairs(scene_bag, tmp_path / "done", RGB_TOPIC, THERMAL_TOPIC, every=4,
                         overwrite=True)
    assert len(list((tmp_path / "done" / "rgb").glob("*.png"))) == len(again.stems) == 1


def test_make_bag_then_export_gives_the_finetune_folders_back(tmp_path: Path,
                                                             grid_model: Path) -> None:
    """Folders -> make-bag -> bag-export: the same pixels (16-bit thermal kept), named by
    stamp, readable by the yolo reader that ``finetune`` uses once labels are added, and the
    labels usable as ``bag-eval --gt`` ground truth of the same bag (keyed by RGB stamp)."""
    src = tmp_path / "src"
    for d in ("rgb", "thermal"):
        (src / d).mkdir(parents=True)
    originals = {}
    for k in range(5):
        rgb = np.full((40, 60, 3), 30 * k, np.uint8)
        th = np.full((40, 60), 30_000 + 101 * k, np.uint16)
        cv2.imwrite(str(src / "rgb" / f"f{k}.png"), rgb)
        cv2.imwrite(str(src / "thermal" / f"f{k}.png"), th)
        originals[k] = (rgb, th)
    assert cli_main(["make-bag", str(tmp_path / "bag"), "--rgb", str(src / "rgb"),
                     "--thermal", str(src / "thermal"), "--rate", "10",
                     "--thermal-offset-ms", "5"]) == 0
    out = tmp_path / "pairs"
    assert cli_main(["bag-export", str(tmp_path / "bag"), "--rgb", RGB_TOPIC, "--thermal",
                     THERMAL_TOPIC, "--out", str(out)]) == 0
    stems = sorted(p.stem for p in (out / "thermal").glob("*.png"))
    assert len(stems) == 5 and int(stems[1]) - int(stems[0]) == 100_000_000  # 10 Hz
    for k, stem in enumerate(stems):
        np.testing.assert_array_equal(_png(out / "rgb" / f"{stem}.png"), originals[k][0])
        np.testing.assert_array_equal(_png(out / "thermal" / f"{stem}.png"), originals[k][1])
    (out / "labels").mkdir()
    for stem in stems[:2]:
        (out / "labels" / f"{stem}.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    for d in (out, out / "labels"):
        (d / "classes.txt").write_text("bright\n")
    from dlrmamba_core.data.readers import open_dataset

    ds = open_dataset("yolo:thermal_dir=thermal", out)
    assert len(ds) == 5 and ds.class_names == ["bright"]
    assert ds[0].thermal.dtype == np.uint16 and len(ds[0].boxes) == 1
    ev = evaluate_bag(tmp_path / "bag", tmp_path / "eval", EvalOptions(
        RGB_TOPIC, THERMAL_TOPIC, gt=str(out / "labels"), model=str(grid_model), video=False,
        progress=False))
    assert ev.metrics["coco"]["frames_evaluated"] == 2 and ev.metrics["coco"]["num_gt"] == 2


def test_a_repeated_rgb_stamp_is_skipped_and_counted_not_overwritten(tmp_path: Path) -> None:
    """A driver that repeats an RGB stamp gives two pairs with one file name: the first pair's
    PNGs stay, the second is skipped and counted."""
    first = np.full((48, 64, 3), 40, np.uint8)
    second = np.full((48, 64, 3), 200, np.uint8)
    th = np.full((24, 32), 30_000, np.uint16)
    ms = 1_000_000
    frames = [StreamFrame("rgb", T0, first, log_ns=T0),
              StreamFrame("thermal", T0 + ms, th, log_ns=T0 + 2 * ms),
              StreamFrame("rgb", T0, second, log_ns=T0 + 10 * ms),  # stamp repeated
              StreamFrame("thermal", T0 + 2 * ms, th, log_ns=T0 + 12 * ms),
              StreamFrame("rgb", T0 + 33 * ms, first, log_ns=T0 + 33 * ms),
              StreamFrame("thermal", T0 + 34 * ms, th, log_ns=T0 + 35 * ms)]
    s = write_frames_bag(tmp_path / "b", frames, [], storage="mcap")
    res = export_pairs(s.path, tmp_path / "out", RGB_TOPIC, THERMAL_TOPIC)
    assert res.pairs_formed == 3 and res.duplicates == 1
    assert res.stems == [f"{T0:019d}", f"{T0 + 33_000_000:019d}"]
    assert int(_png(tmp_path / "out" / "rgb" / f"{T0:019d}.png").max()) == 40  # the first
    summary = json.loads((tmp_path / "out" / "export.json").read_text())
    assert summary["skipped_duplicate_rgb_stamps"] == 1 and summary["pairs_exported"] == 2
