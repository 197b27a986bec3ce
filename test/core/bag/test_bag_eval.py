"""``bag-eval`` end to end on real bags (both storages) with a real ONNX Runtime detector."""

from __future__ import annotations

import json
from pathlib import Path
import signal

import numpy as np
import pytest

from dlrmamba_core.bag import messages as m
from dlrmamba_core.bag.evaluate import (
    LABEL_TOPIC,
    EvalOptions,
    evaluate_bag,
    read_detections_bag,
)
from dlrmamba_core.bag.reader import BagReader
from dlrmamba_core.bag.synth import GT_TOPIC, RGB_TOPIC, THERMAL_TOPIC, write_frames_bag
from dlrmamba_core.bag.typestore import get_bag_typestore
from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.errors import BagError
from dlrmamba_core.runtime import Detector

from .conftest import GRID_CLASSES, scene_frames


def _opts(model: Path, **kw: object) -> EvalOptions:
    base: dict = {"rgb_topic": RGB_TOPIC, "thermal_topic": THERMAL_TOPIC, "gt": GT_TOPIC,
                  "model": str(model), "progress": False}
    base.update(kw)
    return EvalOptions(**base)


def test_eval_outputs_match_the_detector(scene_bag: Path, grid_model: Path,
                                         tmp_path: Path) -> None:
    res = evaluate_bag(scene_bag, tmp_path / "out", _opts(grid_model))
    met = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert met == res.metrics and met["partial"] is False and met["synthetic_data"] is True
    # 12 RGB at 30 Hz, 4 thermal 2 ms after every third RGB: message_filters pairs 4.
    assert met["pairing"]["pairs"] == 4
    assert met["pairing"]["rgb"] == {"received": 12, "paired": 4, "dropped": 0,
                                        "pending": 8}
    assert met["pairing"]["skew_ms"]["max"] == pytest.approx(2.0)
    assert met["latency_ms"]["decode_and_detect"]["p50"] > 0
    # The detections bag holds exactly what the Detector returns on each pair, on the RGB
    # header, plus the LabelInfo class map.
    frames = {f.stamp_ns: f for f in scene_frames()}
    det = Detector(grid_model)
    bag_dets = read_detections_bag(tmp_path / "out" / "detections")
    assert sorted(bag_dets) == sorted(res.detections)
    for stamp, fd in bag_dets.items():
        thermal = next(f.image for f in frames.values()
                       if f.stream == "thermal" and f.stamp_ns == stamp + 2_000_000)
        ref = det.detect(frames[stamp].image, thermal)
        assert fd.frame_id == "rgb_camera" and len(fd) == len(ref) > 0
        np.testing.assert_allclose(fd.boxes, ref.boxes, atol=1e-4)
        np.testing.assert_allclose(fd.scores, ref.scores, atol=1e-6)
        assert fd.class_names == ref.labels
    with BagReader(tmp_path / "out" / "detections") as r:
        assert r.storage == "mcap"
        (label,) = [bm.decode() for bm in r.messages([LABEL_TOPIC])]
        assert [c.class_name for c in label.class_map] == GRID_CLASSES
    out = tmp_path / "out"
    assert (out / "annotated.mp4").stat().st_size > 0 and (out / "preview.png").is_file()
    assert "pairs: 4" in (out / "report.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_coco_metrics_from_topic_coco_and_yolo_agree(grid_model: Path, tmp_path: Path) -> None:
    """The grid model's 'bright' cells overlap the square exactly when it is cell-aligned."""
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage="mcap")
    by_topic = evaluate_bag(s.path, tmp_path / "t", _opts(grid_model, video=False)).metrics
    frames = [f for f in scene_frames() if f.stream == "rgb"]
    coco = {"images": [], "annotations": [], "categories": [{"id": 7, "name": "bright"}]}
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    for i, f in enumerate(frames):
        coco["images"].append({"id": i, "file_name": f"{f.stamp_ns}.png", "width": 128,
                               "height": 96})
        x1, y1, x2, y2 = (float(v) for v in f.boxes[0])
        coco["annotations"].append({"id": i, "image_id": i, "category_id": 7,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1]})
        (yolo / f"{f.stamp_ns}.txt").write_text(
            f"0 {(x1 + x2) / 256} {(y1 + y2) / 192} {(x2 - x1) / 128} {(y2 - y1) / 96}\n")
    # A crowd region (iscrowd 1) is not an object to find: left out, as the coco reader does.
    coco["annotations"].append({"id": 99, "image_id": 0, "category_id": 7, "iscrowd": 1,
                                "bbox": [0.0, 0.0, 60.0, 40.0],
                                "segmentation": {"size": [96, 128], "counts": [0, 12288]}})
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    from dlrmamba_core.bag.groundtruth import GroundTruth

    assert GroundTruth.from_file(tmp_path / "gt.json", list(GRID_CLASSES)).crowd_skipped == 1
    by_coco = evaluate_bag(s.path, tmp_path / "c",
                           _opts(grid_model, gt=str(tmp_path / "gt.json"), video=False)).metrics
    by_yolo = evaluate_bag(s.path, tmp_path / "y",
                           _opts(grid_model, gt=str(yolo), video=False)).metrics
    assert by_topic["coco"]["frames_evaluated"] == 4
    assert by_topic["coco"]["num_gt"] == 4
    assert by_topic["coco"]["mAP50"] > 0
    assert by_coco["coco"]["num_gt"] == 4
    for other in (by_coco, by_yolo):
        assert other["coco"]["mAP50"] == pytest.approx(by_topic["coco"]["mAP50"], abs=1e-6)
        assert other["coco"]["mAP50_95"] == pytest.approx(by_topic["coco"]["mAP50_95"],
                                                          abs=1e-6)


def test_compressed_topics_give_the_same_pairs(grid_model: Path, tmp_path: Path) -> None:
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, compressed=True)
    raw = evaluate_bag(s.path, tmp_path / "r", _opts(grid_model, video=False))
    comp = evaluate_bag(s.path, tmp_path / "c", _opts(
        grid_model, rgb_topic=RGB_TOPIC + "/compressed",
        thermal_topic=THERMAL_TOPIC + "/compressed", video=False))
    assert sorted(raw.detections) == sorted(comp.detections)
    assert comp.metrics["topics"]["rgb_type"] == m.COMPRESSED


def test_interrupt_leaves_a_closed_partial_output(grid_model: Path, tmp_path: Path) -> None:
    s = write_frames_bag(tmp_path / "b", scene_frames(30, thermal_every=1), GRID_CLASSES)

    def sigint_after_two(done: int) -> None:
        if done == 2:
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, raised in this (main) thread

    # Python's own handler, as in a terminal (a shell's background job, e.g. `make test &`,
    # starts with SIGINT ignored).
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate_bag(s.path, tmp_path / "out", _opts(grid_model, on_pair=sigint_after_two))
    finally:
        signal.signal(signal.SIGINT, old)
    met = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert met["partial"] is True
    assert 2 <= met["pairing"]["pairs"] < 30
    dets = read_detections_bag(tmp_path / "out" / "detections")  # closed, readable bag
    assert len(dets) == met["pairing"]["pairs"]
    assert "PARTIAL" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("phase", ["reading", "inference", "metrics", "video", "report"])
def test_interrupt_in_each_phase_leaves_a_closed_partial_output(
        grid_model: Path, tmp_path: Path, phase: str) -> None:
    """A real SIGINT at the start of each phase (the first pair for "inference")."""
    s = write_frames_bag(tmp_path / "b", scene_frames(12, thermal_every=1), GRID_CLASSES)
    seen: list[str] = []

    def sigint_at(name: str) -> None:
        seen.append(name)
        if name == phase:
            signal.raise_signal(signal.SIGINT)
            # a second Ctrl-C while the output is finished is held back, not fatal
            signal.raise_signal(signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt, match="partial output in"):
            evaluate_bag(s.path, tmp_path / "out", _opts(grid_model, on_phase=sigint_at))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, old)
    assert phase in seen
    out = tmp_path / "out"
    met = json.loads((out / "metrics.json").read_text())
    assert met["partial"] is True and met["interrupted_during"]
    assert "PARTIAL" in (out / "report.md").read_text()
    dets = read_detections_bag(out / "detections")  # a closed, readable bag
    assert len(dets) == met["pairing"]["pairs"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries
    after_reading = phase in ("metrics", "video", "report")
    assert met["pairing"]["pairs"] == (12 if after_reading else 0)
    if phase == "metrics":
        assert met["coco"] is None  # skipped, the rest is complete
    if phase in ("video", "report"):
        assert met["coco"]["frames_evaluated"] == 12
    if phase == "video":  # the MP4 was given up mid-encoding: the PNG strip instead
        assert met["outputs"]["video"] == "annotated_strip.png"
        assert (out / "annotated_strip.png").is_file() and not (out / "annotated.mp4").exists()
    if phase in ("metrics", "report"):
        assert met["outputs"]["video"] == "annotated.mp4"
        assert (out / "annotated.mp4").stat().st_size > 0


def test_cli_interrupt_prints_the_summary_and_exits_130(
        grid_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SIGINT to the `dlrmamba bag-eval` process itself, while it runs inference.

    The signal goes out once the progress bar has counted some frames (not after a sleep: a
    fast machine finished the whole bag within one), with most of the bag still to read.
    """
    import re
    import subprocess
    import sys
    import threading

    n = 1500
    s = write_frames_bag(tmp_path / "b", scene_frames(n, thermal_every=1), GRID_CLASSES)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlrmamba_core.cli", "bag-eval", str(s.path), "--model",
         str(grid_model), "--out", str(tmp_path / "out"), "--gt", GT_TOPIC],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    chunks: list[str] = []
    started = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        while chunk := proc.stderr.read(1):
            chunks.append(chunk)
            if chunk in "\r\n" and not started.is_set():  # text mode: \r reads as \n
                counts = [int(c) for c in re.findall(rf"(\d+)/{n} ", "".join(chunks[-200:]))]
                if counts and 20 <= max(counts) < n // 2:
                    started.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    assert started.wait(120), "".join(chunks)
    proc.send_signal(signal.SIGINT)
    out = proc.stdout.read() if proc.stdout is not None else ""
    proc.wait(timeout=120)
    reader.join(timeout=10)
    err = "".join(chunks)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "partial" in err
    assert "pairs:" in out
    met = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert met["partial"] is True
    assert 0 < met["pairing"]["pairs"] < n
    assert len(read_detections_bag(tmp_path / "out" / "detections")) == met["pairing"]["pairs"]


def test_missing_topic_lists_the_bag_topics(scene_bag: Path, grid_model: Path,
                                            tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"'/cam/ir' is not in the bag; it has: .*"
                                       r"/camera/thermal/image_raw \(sensor_msgs/msg/Image, 4"):
        evaluate_bag(scene_bag, tmp_path / "out", _opts(grid_model, thermal_topic="/cam/ir"))
    with pytest.raises(BagError, match="'/gt' is not in the bag"):
        evaluate_bag(scene_bag, tmp_path / "out", _opts(grid_model, gt="/gt"))
    with pytest.raises(BagError, match="has type vision_msgs/msg/Detection2DArray"):
        evaluate_bag(scene_bag, tmp_path / "out", _opts(grid_model, rgb_topic=GT_TOPIC))
    assert not (tmp_path / "out").exists()


def test_no_pairs_is_an_error_without_output(scene_bag: Path, grid_model: Path,
                                             tmp_path: Path) -> None:
    # Thermal stamps are 2 ms after RGB: a 1 ms slop matches nothing.
    with pytest.raises(BagError, match=r"no RGB/thermal pair matched.*slop 0\.001 s"):
        evaluate_bag(scene_bag, tmp_path / "out", _opts(grid_model, slop_s=0.001))
    assert [p.name for p in tmp_path.iterdir()] == [scene_bag.name]


def test_unsupported_encoding_is_an_error(grid_model: Path, tmp_path: Path) -> None:
    from rosbags.rosbag2 import Writer

    store = get_bag_typestore()
    w = Writer(tmp_path / "b", version=9)
    w.open()
    rgb_c = w.add_connection(RGB_TOPIC, m.IMAGE, typestore=store)
    th_c = w.add_connection(THERMAL_TOPIC, m.IMAGE, typestore=store)
    f = scene_frames(1)
    w.write(rgb_c, 10, m.serialize(m.image_message(f[0].image, "rgb8", 1, "rgb"), m.IMAGE))
    bayer = m.image_message(f[1].image.astype(np.uint8), "mono8", 1, "thermal")
    bayer.encoding = "bayer_rggb8"
    w.write(th_c, 11, m.serialize(bayer, m.IMAGE))
    w.close()
    with pytest.raises(BagError, match="thermal unsupported image encoding 'bayer_rggb8' on "
                                       "topic /camera/thermal/image_raw"):
        evaluate_bag(tmp_path / "b", tmp_path / "out", _opts(grid_model, gt=None))
    assert not (tmp_path / "out").exists()


def test_cli_bag_eval_errors_exit_nonzero(scene_bag: Path, grid_model: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli_main(["bag-eval", str(scene_bag), "--thermal-topic", "/nope", "--model",
                   str(grid_model), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "topic '/nope' is not in the bag" in capsys.readouterr().err
    rc = cli_main(["bag-eval", str(tmp_path / "missing"), "--model", str(grid_model),
                   "--out", str(tmp_path / "o")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = cli_main(["bag-eval", str(scene_bag), "--model", str(grid_model), "--gt", GT_TOPIC,
                   "--out", str(tmp_path / "o"), "--no-video"])
    assert rc == 0 and "COCO: mAP50" in capsys.readouterr().out


def test_model_resolution_errors(tmp_path: Path, grid_model: Path) -> None:
    from dlrmamba_core.bag.evaluate import resolve_model
    from dlrmamba_core.errors import ModelFileError

    card = tmp_path / "default.json"
    card.write_text(json.dumps({"model": "missing.onnx"}))
    with pytest.raises(ModelFileError, match=r"names 'missing.onnx', but .*missing\.onnx does"):
        resolve_model(card)
    card.write_text("[1, 2]")
    with pytest.raises(ModelFileError, match=r"\"model\" key"):
        resolve_model(card)
    with pytest.raises(ModelFileError, match="does not exist"):
        resolve_model(tmp_path / "nope.onnx")
    (tmp_path / grid_model.name).write_bytes(grid_model.read_bytes())
    card.write_text(json.dumps({"model": grid_model.name}))
    assert resolve_model(card) == (tmp_path / grid_model.name).resolve()
