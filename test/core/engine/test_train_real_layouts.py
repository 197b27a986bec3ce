"""`dlrmamba train` / `eval` on the published dataset layouts (tiny fixtures written here).

The readers' own tests check parsing; these check that a user can train and evaluate on such a
dataset end to end, with reader options in the format string.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from dlrmamba_core.cli import main as cli_main


def _pair(rgb_path: Path, ir_path: Path, boxes: list[tuple[int, int, int, int]],
          h: int, w: int, seed: int, border: int = 0) -> None:
    """An RGB + IR pair with bright rectangles at ``boxes`` (visible in both)."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    ir = rng.integers(0, 60, (h, w), dtype=np.uint8)
    if border:
        rgb[:border], rgb[-border:], rgb[:, :border], rgb[:, -border:] = 255, 255, 255, 255
    for x1, y1, x2, y2 in boxes:
        rgb[y1:y2, x1:x2] = (30, 200, 230)
        ir[y1:y2, x1:x2] = 240
    for p, img in ((rgb_path, rgb), (ir_path, ir)):
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img)


def _voc(path: Path, objs: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                   f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objs)
    path.write_text(f"<annotation>{body}</annotation>")


def test_train_and_eval_on_an_llvip_layout(tmp_path: Path) -> None:
    root = tmp_path / "LLVIP"
    for split, n in (("train", 8), ("test", 4)):
        for i in range(n):
            stem = f"{split}{i:03d}"
            box = (10 + 4 * i, 12, 40 + 4 * i, 60)
            _pair(root / "visible" / split / f"{stem}.jpg",
                  root / "infrared" / split / f"{stem}.jpg", [box], 96, 128, i)
            _voc(root / "Annotations" / f"{stem}.xml", [("person", box)])
    out = tmp_path / "run"
    assert cli_main(["train", "--variant", "nano", "--data-format", "llvip", "--data", str(root),
                     "--train-split", "train", "--val-split", "test", "--epochs", "2",
                     "--batch-size", "4", "--workers", "0", "--device", "cpu", "--no-progress",
                     "--input-size", "96", "128", "--out", str(out)]) == 0
    assert (out / "best.pt").is_file()
    ev = tmp_path / "ev"
    assert cli_main(["eval", str(out / "best.pt"), "--data-format", "llvip", "--data", str(root),
                     "--split", "test", "--out", str(ev)]) == 0
    met = json.loads((ev / "metrics.json").read_text())
    assert met["num_images"] == 4 and met["num_gt"] == 4
    assert list(met["per_class"]) == ["person"]


def test_train_on_dronevehicle_with_the_ir_label_set(tmp_path: Path) -> None:
    root = tmp_path / "DroneVehicle"
    base = root / "train"
    for i in range(8):
        stem = f"{i:05d}"
        # 100-px white borders around a 128x96 image, as the dataset ships them.
        box = (110 + 3 * i, 120, 150 + 3 * i, 150)
        _pair(base / "trainimg" / f"{stem}.jpg", base / "trainimgr" / f"{stem}.jpg", [box],
              296, 328, i, border=100)
        poly = (f"<object><name>car</name><polygon><x1>{box[0]}</x1><y1>{box[1]}</y1>"
                f"<x2>{box[2]}</x2><y2>{box[1]}</y2><x3>{box[2]}</x3><y3>{box[3]}</y3>"
                f"<x4>{box[0]}</x4><y4>{box[3]}</y4></polygon></object>")
        (base / "trainlabelr").mkdir(parents=True, exist_ok=True)
        (base / "trainlabelr" / f"{stem}.xml").write_text(f"<annotation>{poly}</annotation>")
    out = tmp_path / "run"
    # Only the IR label set exists here: the default (RGB labels) would train on no boxes.
    assert cli_main(["train", "--variant", "nano", "--data-format", "dronevehicle:labels=ir",
                     "--data", str(root), "--train-split", "train", "--val-split", "train",
                     "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                     "--no-progress", "--input-size", "96", "128", "--cache",
                     str(tmp_path / "cache"), "--out", str(out)]) == 0
    assert (out / "best.pt").is_file()
    meta = json.loads((tmp_path / "cache" / "train_96x128" / "meta.json").read_text())
    assert meta["data_format"] == "dronevehicle:labels=ir"
    labels = json.loads((tmp_path / "cache" / "train_96x128" / "labels.json").read_text())
    assert sum(len(r["labels"]) for r in labels) == 8
