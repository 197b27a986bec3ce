"""Split detection (flat folders are used whole) and the DroneVehicle YOLO export."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.data.readers import format_help, open_dataset, resolve_split
from dlrmamba_core.errors import DatasetError

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "real" / "dronevehicle6"


def _pair_folder(base: Path, stems: list[str], thermal: str = "thermal",
                 labels: dict[str, dict[str, str]] | None = None) -> None:
    for stem in stems:
        for sub in ("rgb", thermal):
            (base / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(base / sub / f"{stem}.jpg"), np.full((40, 80, 3), 90, np.uint8))
    for folder, rows in (labels or {}).items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        for stem, text in rows.items():
            (base / folder / f"{stem}.txt").write_text(text)


def test_flat_yolo_folder_is_used_whole_and_said_so(tmp_path: Path) -> None:
    _pair_folder(tmp_path, ["a", "b", "c"])
    split, note = resolve_split("yolo", tmp_path, "test")
    assert split is None and note is not None
    assert "no 'test' split" in note and "whole folder" in note and "--split" in note
    assert len(open_dataset("yolo", tmp_path, split)) == 3
    with pytest.raises(DatasetError, match="test"):  # what happened before: the default failed
        open_dataset("yolo", tmp_path, "test")


def test_existing_splits_are_kept_and_a_missing_one_still_fails(tmp_path: Path) -> None:
    _pair_folder(tmp_path / "train", ["a"])
    _pair_folder(tmp_path / "test", ["b", "c"])
    assert resolve_split("yolo", tmp_path, "test") == ("test", None)
    assert resolve_split("yolo", tmp_path, "val") == ("val", None)  # reader error names it
    with pytest.raises(DatasetError, match="val"):
        open_dataset("yolo", tmp_path, "val")
    assert resolve_split("yolo", tmp_path, None) == (None, None)


def test_split_files_formats(tmp_path: Path) -> None:
    kaist = tmp_path / "kaist"
    (kaist / "images" / "set00" / "V000").mkdir(parents=True)
    assert resolve_split("kaist", kaist, "test")[0] is None  # no imageSets/: all frames
    (kaist / "imageSets").mkdir()
    (kaist / "imageSets" / "train.txt").write_text("set00/V000/I00000\n")
    assert resolve_split("kaist", kaist, "test") == ("test", None)  # others exist: kept
    assert resolve_split("m3fd", tmp_path / "m3fd", "test") == ("test", None)
    assert resolve_split("llvip", tmp_path, "test") == ("test", None)


def test_dronevehicle_yolo_export_label_sets(tmp_path: Path) -> None:
    ir = {"1": "0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1\n"}
    rgb = {"1": "0 0.5 0.5 0.2 0.2\n"}
    _pair_folder(tmp_path, ["1"], thermal="ir", labels={"labels": ir, "labels_rgb": rgb})
    (tmp_path / "classes.txt").write_text("Car\nTruck\nBus\nVan\nFreight_Car\n")
    ds = open_dataset("dronevehicle", tmp_path, resolve_split("dronevehicle", tmp_path,
                                                               "test")[0])
    assert ds.class_names == ["car", "truck", "bus", "van", "freight car"]
    assert ds[0].labels.tolist() == [0, 1] and "ir labels (labels/)" in ds.notes[0]
    assert open_dataset("dronevehicle:labels=rgb", tmp_path)[0].labels.tolist() == [0]
    assert len(open_dataset("dronevehicle:labels=union", tmp_path)[0].boxes) == 3
    np.testing.assert_allclose(ds[0].boxes[0], [32, 16, 48, 24])
    (tmp_path / "classes.txt").write_text("person\n")
    with pytest.raises(DatasetError, match="not DroneVehicle's"):
        open_dataset("dronevehicle", tmp_path)


def test_dronevehicle_neither_layout_points_to_the_docs(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"YOLO export.*docs/data_formats\.md"):
        open_dataset("dronevehicle", tmp_path, "train")


def test_format_help_lists_every_format() -> None:
    from dlrmamba_core.data.readers import FORMATS

    text = format_help()
    assert all(f"{name}:" in text for name in FORMATS)


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/dronevehicle6 not present")
def test_real_dronevehicle_export() -> None:
    """The 6 real DroneVehicle pairs: 57 IR boxes, 47 RGB boxes (its SOURCE.md counts)."""
    split, note = resolve_split("dronevehicle", REAL, "test")
    assert split is None and note
    ir = open_dataset("dronevehicle", REAL, split)
    rgb = open_dataset("dronevehicle:labels=rgb", REAL, split)
    assert len(ir) == len(rgb) == 6
    assert sum(len(e.boxes) for e in ir.entries) == 57
    assert sum(len(e.boxes) for e in rgb.entries) == 47
    counts = np.bincount(np.concatenate([e.labels for e in ir.entries]), minlength=5)
    assert counts.tolist() == [51, 4, 0, 0, 2]
    s = ir[0]
    assert s.rgb.shape == (512, 640, 3) and s.thermal.shape == (512, 640)
    assert (s.boxes[:, 2] <= 640).all() and (s.boxes[:, 3] <= 512).all()
