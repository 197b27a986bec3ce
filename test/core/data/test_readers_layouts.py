"""Split detection (flat folders are used whole), the DroneVehicle YOLO export and LLVIP's flat
layout, on tmp_path fixtures and on the real pairs of ../shared/real (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.data.readers import format_help, open_dataset, resolve_split
from dlrmamba_core.errors import DatasetError

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "real" / "dronevehicle6"
REAL_LLVIP = REAL.parent / "llvip_train50"


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


def _llvip_xml(path: Path, boxes: list[tuple[int, int, int, int]]) -> None:
    """A VOC XML as LLVIP publishes it (header, <size>, pose / truncated / difficult)."""
    objs = "".join(
        "\n\t<object>\n\t\t<name>person</name>\n\t\t<pose>Unspecified</pose>\n"
        "\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>"
        f"<xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox>"
        "\n\t</object>" for a, b, c, d in boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<?xml version="1.0" ?><annotation>\n\t<folder>JPEGImages</folder>\n'
                    f"\t<filename>{path.stem}.jpg</filename>\n\t<size><width>80</width>"
                    f"<height>40</height><depth>1</depth></size>{objs}\n</annotation>")


def _llvip_flat(root: Path, ann: str = "orig_annotations") -> None:
    _pair_folder(root, ["010001", "010002", "010003"], thermal="ir",
                 labels={"labels": {"010001": "0 0.5 0.5 0.1 0.1\n"}})  # YOLO: not read
    cv2.imwrite(str(root / "ir" / "010009.jpg"), np.zeros((40, 80, 3), np.uint8))
    _llvip_xml(root / ann / "010001.xml", [(2, 3, 12, 20), (30, 5, 41, 39)])
    _llvip_xml(root / ann / "010002.xml", [])  # published with no object
    # 010003 has no XML: no objects


def test_llvip_flat_layout_reads_the_voc_xml(tmp_path: Path) -> None:
    _llvip_flat(tmp_path)
    split, note = resolve_split("llvip", tmp_path, "train")
    assert split is None and note is not None and "whole folder" in note
    for fmt in ("llvip", "llvip:layout=flat", "llvip:layout=auto"):
        ds = open_dataset(fmt, tmp_path, split)
        assert [e.image_id for e in ds.entries] == ["010001", "010002", "010003"]
        assert ds.class_names == ["person"]
        assert ds.unpaired == [str(tmp_path / "ir" / "010009.jpg")]
        np.testing.assert_array_equal(ds.entries[0].boxes, [[2, 3, 12, 20], [30, 5, 41, 39]])
        assert [len(e.boxes) for e in ds.entries] == [2, 0, 0]
        assert "orig_annotations/" in ds.notes[0]
    s = ds[0]
    assert s.rgb.shape == (40, 80, 3) and s.thermal.shape == (40, 80)
    assert s.labels.tolist() == [0, 0] and s.homography is None
    # a split given on a folder without split folders reads the whole folder, and says so
    ds = open_dataset("llvip", tmp_path, "train")
    assert len(ds) == 3 and "no 'train' split folder" in ds.notes[-1]


def test_llvip_flat_layout_variants_and_errors(tmp_path: Path) -> None:
    _llvip_flat(tmp_path / "a", ann="Annotations")
    assert len(open_dataset("llvip", tmp_path / "a")[0].boxes) == 2  # Annotations/ accepted
    _llvip_flat(tmp_path / "b" / "test")  # a split folder holding the flat layout
    assert resolve_split("llvip", tmp_path / "b", "test") == ("test", None)
    assert len(open_dataset("llvip", tmp_path / "b", "test")) == 3
    with pytest.raises(DatasetError, match="layout='voc'"):
        open_dataset("llvip:layout=voc", tmp_path / "a")
    with pytest.raises(DatasetError, match="visible/train"):
        open_dataset("llvip:layout=official", tmp_path / "a")
    _pair_folder(tmp_path / "c", ["1"], thermal="ir")  # no annotation folder at all
    with pytest.raises(DatasetError, match="orig_annotations/, Annotations/"):
        open_dataset("llvip", tmp_path / "c")
    bad = tmp_path / "a" / "Annotations" / "010002.xml"
    bad.write_text("<annotation><object><name>person</name></object></annotation>")
    with pytest.raises(DatasetError, match=r"010002\.xml, object 0: <bndbox> missing"):
        open_dataset("llvip", tmp_path / "a")
    (tmp_path / "d").mkdir()
    with pytest.raises(DatasetError, match="neither the official layout"):
        open_dataset("llvip", tmp_path / "d")


@pytest.mark.skipif(not REAL_LLVIP.is_dir(), reason="../shared/real/llvip_train50 not present")
def test_real_llvip_flat_layout() -> None:
    """The 50 real LLVIP pairs from their published VOC XML: 222 person boxes (SOURCE.md),
    the same boxes as the YOLO conversion beside them (to its 6-decimal rounding)."""
    split, note = resolve_split("llvip", REAL_LLVIP, "train")
    assert split is None and note
    ds = open_dataset("llvip", REAL_LLVIP, split)
    assert len(ds) == 50 and not ds.unpaired
    assert [e.image_id for e in ds.entries][::49] == ["010001", "010050"]
    boxes = np.concatenate([e.boxes for e in ds.entries])
    assert boxes.shape == (222, 4)
    assert np.concatenate([e.labels for e in ds.entries]).tolist() == [0] * 222
    assert (boxes[:, 2] <= 1280).all() and (boxes[:, 3] <= 1024).all() and (boxes >= 0).all()
    yolo = open_dataset("yolo:thermal_dir=ir", REAL_LLVIP)
    for a, b in zip(ds.entries, yolo.entries, strict=True):
        assert a.image_id == b.image_id
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
    s = ds[49]
    assert s.rgb.shape == (1024, 1280, 3) and s.thermal.shape == (1024, 1280)


def test_dronevehicle_oriented_boxes(tmp_path: Path) -> None:
    # 80x40 images; a square rotated by 45 degrees, corners (40,10) (50,20) (40,30) (30,20) px,
    # and an axis-aligned box that leaves the image on the left.
    diamond = "1 0.5 0.25 0.625 0.5 0.5 0.75 0.375 0.5\n"
    edge = "0 -0.05 0.1 0.2 0.1 0.2 0.3 -0.05 0.3\n"
    _pair_folder(tmp_path, ["1", "2"], thermal="ir", labels={
        "labels": {"1": "0 0.5 0.5 0.2 0.2\n"},
        "labels_obb_ir": {"1": diamond + edge},  # "2" has no file: no objects
        "labels_obb_rgb": {"1": diamond}})
    ds = open_dataset("dronevehicle:boxes=obb", tmp_path)
    np.testing.assert_allclose(ds[0].boxes, [[30, 10, 50, 30], [0, 4, 16, 12]], atol=1e-4)
    assert ds[0].labels.tolist() == [1, 0] and len(ds[1].boxes) == 0
    assert "labels_obb_ir/) as oriented boxes" in ds.notes[0]
    assert "1 oriented boxes have corners outside the image" in ds.notes[1]
    assert open_dataset("dronevehicle:boxes=obb,labels=rgb", tmp_path)[0].labels.tolist() == [1]
    assert len(open_dataset("dronevehicle:boxes=obb,labels=union", tmp_path)[0].boxes) == 3
    assert open_dataset("dronevehicle:boxes=hbb", tmp_path)[0].labels.tolist() == [0]
    # the original repository's nested folders: ir/images, ir/labels, ir/obb_labels
    nested = tmp_path / "nested"
    for mod in ("rgb", "ir"):
        _pair_folder(nested / mod, ["7"], thermal="images", labels={
            "obb_labels": {"7": diamond}, "labels": {"7": "0 0.5 0.5 0.2 0.2\n"}})
        (nested / mod / "rgb" / "7.jpg").unlink()
        (nested / mod / "rgb").rmdir()
    np.testing.assert_allclose(open_dataset("dronevehicle:boxes=obb", nested)[0].boxes,
                               [[30, 10, 50, 30]], atol=1e-4)


@pytest.mark.parametrize(("row", "message"), [
    ("1 0.5 0.25 0.625 0.5 0.5 0.75", r"got 7 values.*'class x1 y1 x2 y2 x3 y3 x4 y4'"),
    ("1 0.5 0.25 0.625 0.5 0.5 0.75 0.375 nan", "non-finite"),
    ("5 0.5 0.25 0.625 0.5 0.5 0.75 0.375 0.5", r"class 5 outside 0\.\.4"),
    ("0 40 10 50 20 40 30 30 20", "pixel units"),
    ("0 0.5 0.2 0.6 0.2 0.6 0.2 0.5 0.2", "zero width or height"),
])
def test_dronevehicle_oriented_box_errors_name_file_and_line(tmp_path: Path, row: str,
                                                             message: str) -> None:
    _pair_folder(tmp_path, ["1"], thermal="ir", labels={
        "labels_obb_ir": {"1": "0 0.1 0.1 0.2 0.1 0.2 0.2 0.1 0.2\n" + row + "\n"}})
    with pytest.raises(DatasetError, match=rf"1\.txt, line 2: .*{message}"):
        open_dataset("dronevehicle:boxes=obb", tmp_path)


def test_dronevehicle_boxes_option_checked(tmp_path: Path) -> None:
    _pair_folder(tmp_path, ["1"], thermal="ir", labels={"labels": {"1": "0 0.5 0.5 0.2 0.2\n"}})
    with pytest.raises(DatasetError, match=r"labels_obb_ir not found .*boxes=hbb\|obb"):
        open_dataset("dronevehicle:boxes=obb", tmp_path)
    with pytest.raises(DatasetError, match="boxes='rotated'"):
        open_dataset("dronevehicle:boxes=rotated", tmp_path)
    xml = tmp_path / "xml" / "val"
    for sub in ("valimg", "valimgr"):
        (xml / sub).mkdir(parents=True)
        cv2.imwrite(str(xml / sub / "1.jpg"), np.full((240, 280, 3), 90, np.uint8))
    ds = open_dataset("dronevehicle:boxes=obb", tmp_path / "xml", "val")
    assert len(ds) == 1 and "boxes=obb changes nothing" in ds.notes[0]


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/dronevehicle6 not present")
def test_real_dronevehicle_oriented_boxes() -> None:
    """The 6 real pairs from their YOLO-OBB files: 57 IR / 47 RGB boxes, 51 car, 4 truck,
    2 freight car (IR), whose bounds are the published HBB rows (SOURCE.md: deviation 0)."""
    for labels, total, counts in (("ir", 57, [51, 4, 0, 0, 2]), ("rgb", 47, [41, 4, 0, 0, 2])):
        obb = open_dataset(f"dronevehicle:boxes=obb,labels={labels}", REAL)
        hbb = open_dataset(f"dronevehicle:labels={labels}", REAL)
        assert len(obb) == 6 and obb.class_names == hbb.class_names
        assert len(obb.class_names) == 5
        assert sum(len(e.boxes) for e in obb.entries) == total
        got = np.bincount(np.concatenate([e.labels for e in obb.entries]), minlength=5)
        assert got.tolist() == counts
        for a, b in zip(obb.entries, hbb.entries, strict=True):
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
