"""The paired-YOLO reader: layout, refused out-of-range / pixel-unit rows, ``clip=1``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.data.readers import open_dataset
from dlrmamba_core.errors import BagError, DatasetError


def yolo_folder(root: Path, rows: dict[str, str], classes: list[str] | None = None,
                h: int = 40, w: int = 80) -> Path:
    """``root/{rgb,thermal,labels}`` with one pair per entry of ``rows`` (stem -> label text)."""
    for stem, text in rows.items():
        for sub, img in (("rgb", np.full((h, w, 3), 90, np.uint8)),
                         ("thermal", np.full((h, w), 1000, np.uint16))):
            (root / sub).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / sub / f"{stem}.png"), img)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"{stem}.txt").write_text(text)
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def test_reads_normalized_rows_as_pixels(tmp_path: Path) -> None:
    yolo_folder(tmp_path, {"a": "1 0.5 0.5 0.25 0.5\n\n", "b": ""}, ["x", "y"])
    ds = open_dataset("yolo", tmp_path)
    assert ds.class_names == ["x", "y"] and len(ds) == 2 and ds.notes == []
    np.testing.assert_allclose(ds[0].boxes, [[30, 10, 50, 30]])
    assert ds[0].labels.tolist() == [1] and len(ds[1].boxes) == 0


def test_rounding_at_the_border_is_clipped_silently(tmp_path: Path) -> None:
    # An exporter's 1.004 edge is rounding: clipped to the image, no error, not counted.
    yolo_folder(tmp_path, {"a": "0 0.9 0.5 0.208 0.5\n"}, ["x"])
    ds = open_dataset("yolo", tmp_path)
    assert ds[0].boxes[0, 2] == pytest.approx(80.0) and ds.notes == []


@pytest.mark.parametrize(("row", "match"), [
    ("0 0.95 0.5 0.3 0.2", r"b\.txt, line 2: box edges x 0\.8\.\.1\.1"),
    ("0 -0.2 0.5 0.1 0.2", r"b\.txt, line 2: box edges"),
    ("0 40 20 16 8", r"b\.txt, line 2: values above 1 look like pixel units"),
])
def test_out_of_range_and_pixel_rows_are_refused(tmp_path: Path, row: str, match: str) -> None:
    yolo_folder(tmp_path, {"a": "0 0.5 0.5 0.1 0.1\n", "b": f"0 0.5 0.5 0.1 0.1\n{row}\n"},
                ["x"])
    with pytest.raises(DatasetError, match=match) as exc:
        open_dataset("yolo", tmp_path)
    assert "yolo:clip=1" in str(exc.value)


def test_clip_option_clips_and_counts(tmp_path: Path) -> None:
    yolo_folder(tmp_path, {"a": "0 0.95 0.5 0.3 0.5\n0 2.0 0.5 0.1 0.1\n", "b": ""}, ["x"])
    ds = open_dataset("yolo:clip=1", tmp_path)
    # the first box is clipped to the right edge, the second lies wholly outside: dropped
    np.testing.assert_allclose(ds[0].boxes, [[64, 10, 80, 30]])
    assert ds.notes and "clipped 2 boxes" in ds.notes[0] and "1 label files" in ds.notes[0]
    with pytest.raises(DatasetError, match="clip='maybe'"):
        open_dataset("yolo:clip=maybe", tmp_path)


def test_class_range_message_names_the_last_valid_id(tmp_path: Path) -> None:
    names = [f"c{i}" for i in range(7)]
    yolo_folder(tmp_path, {"a": "7 0.5 0.5 0.1 0.1\n"}, names)
    with pytest.raises(DatasetError, match=r"a\.txt, line 1: class 7 outside 0\.\.6 \(7 classes"):
        open_dataset("yolo", tmp_path)


def test_bag_ground_truth_refuses_out_of_range_rows(tmp_path: Path) -> None:
    from dlrmamba_core.bag.groundtruth import GroundTruth

    (tmp_path / "100.txt").write_text("0 0.5 0.5 0.1 0.1\n0 64 48 16 16\n")
    with pytest.raises(BagError, match=r"100\.txt:2: values above 1 look like pixel units"):
        GroundTruth.from_file(str(tmp_path), ["x"])
    (tmp_path / "100.txt").write_text("-1 0.5 0.5 0.1 0.1\n")
    with pytest.raises(BagError, match=r"100\.txt:1: .*class in 0\.\.0"):
        GroundTruth.from_file(str(tmp_path), ["x"])
