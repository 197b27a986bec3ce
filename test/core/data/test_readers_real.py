"""Readers of the published RGB-thermal layouts, on tiny fixtures built in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dlrmamba_core.data.readers import open_dataset
from dlrmamba_core.errors import DatasetError


def _img(path: Path, h: int = 32, w: int = 48) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 100, np.uint8))


def _voc(path: Path, objs: list[tuple[str, int, int, int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objs)
    path.write_text(f"<annotation>{body}</annotation>")


def _llvip(root: Path) -> None:
    for s in ("010001", "010002"):
        _img(root / "visible" / "train" / f"{s}.jpg")
        _img(root / "infrared" / "train" / f"{s}.jpg")
    _img(root / "visible" / "train" / "010003.jpg")  # no infrared partner
    _voc(root / "Annotations" / "010001.xml", [("person", 2, 3, 12, 20)])


def test_llvip_pairs_boxes_unpaired(tmp_path: Path) -> None:
    _llvip(tmp_path)
    ds = open_dataset("llvip", tmp_path, "train")
    assert len(ds) == 2 and ds.class_names == ["person"]
    assert ds.unpaired == [str(tmp_path / "visible" / "train" / "010003.jpg")]
    s = ds[0]
    np.testing.assert_array_equal(s.boxes, [[2, 3, 12, 20]])
    assert s.labels.tolist() == [0] and s.rgb.shape == (32, 48, 3)
    assert len(ds[1].boxes) == 0


def test_llvip_errors(tmp_path: Path) -> None:
    _llvip(tmp_path)
    bad = tmp_path / "Annotations" / "010002.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(DatasetError, match=r"010002\.xml"):
        open_dataset("llvip", tmp_path, "train")
    with pytest.raises(DatasetError, match="visible/test"):
        open_dataset("llvip", tmp_path, "test")


def test_llvip_stats_json_cli(tmp_path: Path) -> None:
    _llvip(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.cli", "data", "stats", "--format", "llvip",
         "--root", str(tmp_path), "--split", "train", "--json"],
        capture_output=True, text=True, check=True)
    st = json.loads(out.stdout)
    assert st["pairs"] == 2 and st["unpaired"] == 1 and st["boxes"] == 1
    assert st["boxes_per_class"] == {"person": 1}


def _m3fd(root: Path) -> None:
    for i in range(5):
        _img(root / "Vis" / f"{i:05d}.png")
        _img(root / "Ir" / f"{i:05d}.png")
    _img(root / "Ir" / "99999.png")
    _voc(root / "Annotations" / "00004.xml", [("car", 1, 2, 30, 25), ("People", 5, 5, 9, 20)])


def test_m3fd_split_boxes_classes(tmp_path: Path) -> None:
    _m3fd(tmp_path)
    assert len(open_dataset("m3fd", tmp_path)) == 5
    assert len(open_dataset("m3fd", tmp_path, "train")) == 4
    ds = open_dataset("m3fd", tmp_path, "test")
    assert [e.image_id for e in ds.entries] == ["00004"]
    assert ds.unpaired == [str(tmp_path / "Ir" / "99999.png")]
    np.testing.assert_array_equal(ds[0].boxes, [[1, 2, 30, 25], [5, 5, 9, 20]])
    assert [ds.class_names[k] for k in ds[0].labels] == ["Car", "People"]
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("00001\n99999\n")
    with pytest.raises(DatasetError, match=r"val\.txt, line 2"):
        open_dataset("m3fd", tmp_path, "val")


def test_m3fd_show_writes_png(tmp_path: Path) -> None:
    _m3fd(tmp_path / "d")
    out = tmp_path / "sheet.png"
    subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.cli", "data", "show", "--format", "m3fd",
         "--root", str(tmp_path / "d"), "--out", str(out), "--num", "2"],
        capture_output=True, text=True, check=True)
    assert cv2.imread(str(out)) is not None


def test_flir_aligned(tmp_path: Path) -> None:
    j = tmp_path / "JPEGImages"
    for n in ("FLIR_00002", "FLIR_00003"):
        _img(j / f"{n}_RGB.jpg")
        _img(j / f"{n}_PreviewData.jpeg")
    _img(j / "FLIR_00009_RGB.jpg")
    _voc(tmp_path / "Annotations" / "FLIR_00003_PreviewData.xml", [("bicycle", 4, 4, 8, 9)])
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "align_validation.txt").write_text("FLIR_00003_PreviewData\n")
    (tmp_path / "ImageSets" / "bad.txt").write_text("FLIR_00002\nFLIR_00009\n")
    ds = open_dataset("flir", tmp_path, "align_validation")
    assert len(ds) == 1 and ds.unpaired == [str(j / "FLIR_00009_RGB.jpg")]
    np.testing.assert_array_equal(ds[0].boxes, [[4, 4, 8, 9]])
    assert ds.class_names[int(ds[0].labels[0])] == "bicycle"
    assert len(open_dataset("flir", tmp_path)) == 2
    with pytest.raises(DatasetError, match=r"bad\.txt, line 2"):
        open_dataset("flir", tmp_path, "bad")


def test_kaist(tmp_path: Path) -> None:
    v = tmp_path / "images" / "set00" / "V000"
    for s in ("I00000", "I00001"):
        _img(v / "visible" / f"{s}.jpg")
        _img(v / "lwir" / f"{s}.jpg")
    _img(v / "lwir" / "I00002.jpg")
    a = tmp_path / "annotations" / "set00" / "V000"
    a.mkdir(parents=True)
    (a / "I00000.txt").write_text("% bbGt version=3\nperson 3 4 10 20 0 0 0 0 0 0 0\n"
                                  "person? 1 1 5 5 0 0 0 0 0 0 0\ncyclist 5 6 7 8 1\n")
    (a / "I00001.txt").write_text("% bbGt version=3\nperson 3 x 10 20 0\n")
    (tmp_path / "imageSets").mkdir()
    (tmp_path / "imageSets" / "train.txt").write_text("set00/V000/I00000\n")
    ds = open_dataset("kaist", tmp_path, "train")
    assert len(ds) == 1 and ds.unpaired == [str(v / "lwir" / "I00002.jpg")]
    np.testing.assert_array_equal(ds[0].boxes, [[3, 4, 13, 24], [5, 6, 12, 14]])
    assert [ds.class_names[k] for k in ds[0].labels] == ["person", "cyclist"]
    with pytest.raises(DatasetError, match=r"I00001\.txt, line 2"):
        open_dataset("kaist", tmp_path)


def test_vedai(tmp_path: Path) -> None:
    v = tmp_path / "Vehicules512"
    for s in ("00000000", "00000001"):
        _img(v / f"{s}_co.png")
        _img(v / f"{s}_ir.png")
    _img(v / "00000005_co.png")
    a = tmp_path / "Annotations512"
    a.mkdir()
    (a / "annotation512.txt").write_text("1 10 10 0.5 5 15 15 5 4 4 16 16 1 1 0\n")
    (a / "fold01.txt").write_text("00000001\n")
    (a / "fold02.txt").write_text("1\nabc\n")
    ds = open_dataset("vedai", tmp_path, "fold01")
    assert len(ds) == 1 and ds.unpaired == [str(v / "00000005_co.png")]
    np.testing.assert_array_equal(ds[0].boxes, [[5, 4, 15, 16]])
    assert ds.class_names[int(ds[0].labels[0])] == "car"
    with pytest.raises(DatasetError, match=r"fold02\.txt, line 2"):
        open_dataset("vedai", tmp_path, "fold02")
    (a / "annotation512.txt").write_text("1 10 10 0.5 5 15 15 5 4 4 16 16 1 1 0\n2 3\n")
    with pytest.raises(DatasetError, match=r"annotation512\.txt, line 2"):
        open_dataset("vedai", tmp_path)


def test_dronevehicle(tmp_path: Path) -> None:
    b = tmp_path / "val"
    _img(b / "valimg" / "00001.jpg", 260, 280)
    _img(b / "valimgr" / "00001.jpg", 260, 280)
    _img(b / "valimgr" / "00002.jpg", 260, 280)
    (b / "vallabel").mkdir()
    (b / "vallabel" / "00001.xml").write_text(
        "<annotation><object><name>feright car</name><polygon><x1>110</x1><y1>120</y1>"
        "<x2>150</x2><y2>120</y2><x3>150</x3><y3>140</y3><x4>110</x4><y4>140</y4></polygon>"
        "</object></annotation>")
    ds = open_dataset("dronevehicle", tmp_path, "val")
    assert len(ds) == 1 and ds.unpaired == [str(b / "valimgr" / "00002.jpg")]
    np.testing.assert_array_equal(ds[0].boxes, [[10, 20, 50, 40]])
    assert ds.class_names[int(ds[0].labels[0])] == "freight car"
    assert ds[0].rgb.shape == (60, 80, 3)
    (b / "vallabel" / "00001.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match=r"00001\.xml"):
        open_dataset("dronevehicle", tmp_path, "val")


@pytest.mark.parametrize("fmt", ["llvip", "m3fd", "flir", "vedai", "dronevehicle", "kaist"])
def test_missing_layout_names_the_folder(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(DatasetError, match=str(tmp_path)):
        open_dataset(fmt, tmp_path)


def test_m3fd_stats_json_cli(tmp_path: Path) -> None:
    _m3fd(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.cli", "data", "stats", "--format", "m3fd",
         "--root", str(tmp_path), "--json"], capture_output=True, text=True, check=True)
    st = json.loads(out.stdout)
    assert st["pairs"] == 5 and st["unpaired"] == 1 and st["boxes"] == 2
    assert st["boxes_per_class"]["Car"] == 1 and st["boxes_per_class"]["People"] == 1


def _stats(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    from dlrmamba_core.cli import main as cli_main

    capsys.readouterr()
    assert cli_main(["data", "stats", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_stats_json_cli_flir_kaist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "flir"
    j = f / "JPEGImages"
    for n in ("FLIR_00002", "FLIR_00003"):
        _img(j / f"{n}_RGB.jpg")
        _img(j / f"{n}_PreviewData.jpeg")
    _img(j / "FLIR_00009_RGB.jpg")
    _voc(f / "Annotations" / "FLIR_00003_PreviewData.xml",
         [("bicycle", 4, 4, 8, 9), ("person", 1, 1, 5, 5)])
    st = _stats(capsys, "--format", "flir", "--root", str(f))
    assert (st["pairs"], st["unpaired"], st["boxes"]) == (2, 1, 2)
    assert st["boxes_per_class"]["bicycle"] == 1 and st["boxes_per_class"]["person"] == 1

    k = tmp_path / "kaist"
    v = k / "images" / "set00" / "V000"
    for s in ("I00000", "I00001"):
        _img(v / "visible" / f"{s}.jpg")
        _img(v / "lwir" / f"{s}.jpg")
    a = k / "annotations" / "set00" / "V000"
    a.mkdir(parents=True)
    (a / "I00000.txt").write_text("% bbGt version=3\nperson 3 4 10 20 0 0 0 0 0 0 0\n"
                                  "people 5 6 7 8 0\n")
    st = _stats(capsys, "--format", "kaist", "--root", str(k))
    assert (st["pairs"], st["unpaired"], st["boxes"]) == (2, 0, 2)
    assert st["boxes_per_class"]["person"] == 1 and st["boxes_per_class"]["people"] == 1


def test_stats_json_cli_vedai_sizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for size, n in ((512, 2), (1024, 1)):
        v = tmp_path / f"Vehicules{size}"
        for i in range(n):
            _img(v / f"0000000{i}_co.png")
            _img(v / f"0000000{i}_ir.png")
        a = tmp_path / f"Annotations{size}"
        a.mkdir()
        (a / f"annotation{size}.txt").write_text(
            "0 10 10 0.5 5 15 15 5 4 4 16 16 1 1 0\n" * n)
    st = _stats(capsys, "--format", "vedai", "--root", str(tmp_path))
    assert (st["pairs"], st["boxes"]) == (2, 2) and st["boxes_per_class"]["car"] == 2
    st = _stats(capsys, "--format", "vedai", "--root", str(tmp_path), "--reader-opt",
                "size=1024")
    assert (st["pairs"], st["boxes"]) == (1, 1)
    with pytest.raises(DatasetError, match="has no option colour; its options: size"):
        open_dataset("vedai", tmp_path, colour=1)
    # The same options in one format string, as train / distill / eval take --data-format.
    assert len(open_dataset("vedai:size=1024", tmp_path)) == 1
    from dlrmamba_core.engine.runs import open_pairs

    assert len(open_pairs("vedai: size=1024", tmp_path, None)) == 1
    with pytest.raises(DatasetError, match="KEY=VALUE"):
        open_dataset("vedai:1024", tmp_path)


def test_stats_json_cli_dronevehicle_label_sets(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    b = tmp_path / "val"
    _img(b / "valimg" / "00001.jpg", 260, 280)
    _img(b / "valimgr" / "00001.jpg", 260, 280)

    def poly(name: str, x: int) -> str:
        return (f"<object><name>{name}</name><polygon><x1>{x}</x1><y1>120</y1><x2>{x + 30}"
                f"</x2><y2>120</y2><x3>{x + 30}</x3><y3>140</y3><x4>{x}</x4><y4>140</y4>"
                "</polygon></object>")

    (b / "vallabel").mkdir()
    (b / "vallabel" / "00001.xml").write_text(f"<annotation>{poly('car', 110)}</annotation>")
    (b / "vallabelr").mkdir()
    (b / "vallabelr" / "00001.xml").write_text(
        f"<annotation>{poly('car', 112)}{poly('truck', 130)}</annotation>")
    common = ["--format", "dronevehicle", "--root", str(tmp_path), "--split", "val"]
    assert _stats(capsys, *common)["boxes"] == 1  # RGB labels by default
    st = _stats(capsys, *common, "--reader-opt", "labels=ir")
    assert st["boxes"] == 2 and st["boxes_per_class"]["truck"] == 1
    assert _stats(capsys, *common, "--reader-opt", "labels=union")["boxes"] == 3
    from dlrmamba_core.cli import main as cli_main

    assert cli_main(["data", "stats", *common, "--reader-opt", "labels=both"]) == 2
    assert "labels='both'" in capsys.readouterr().err
