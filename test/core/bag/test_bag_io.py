"""Reading and writing real rosbag2 files (sqlite3 and mcap) and the reader's errors."""

from __future__ import annotations

from pathlib import Path
import re

import numpy as np
import pytest

from dlrmamba_core.bag import messages as m
from dlrmamba_core.bag.playback import header_stamp_ns, schedule
from dlrmamba_core.bag.reader import BagReader
from dlrmamba_core.bag.synth import (
    GT_TOPIC,
    RGB_TOPIC,
    THERMAL_TOPIC,
    StreamFrame,
    write_frames_bag,
)
from dlrmamba_core.bag.typestore import get_bag_typestore
from dlrmamba_core.errors import BagError

from .conftest import GRID_CLASSES, scene_frames


def test_roundtrip_images_and_ground_truth(scene_bag: Path) -> None:
    frames = scene_frames()
    rgb_in = {f.stamp_ns: f for f in frames if f.stream == "rgb"}
    th_in = {f.stamp_ns: f for f in frames if f.stream == "thermal"}
    with BagReader(scene_bag) as r:
        assert r.topics[RGB_TOPIC] == m.IMAGE
        assert r.topics[RGB_TOPIC + "/compressed"] == m.COMPRESSED
        assert r.counts[RGB_TOPIC] == len(rgb_in) and r.counts[THERMAL_TOPIC] == len(th_in)
        assert r.custom["dlrmamba.synthetic"] == "true"
        logs = []
        for bm in r.messages(r.topics):
            logs.append(bm.log_ns)
            msg = bm.decode()
            stamp = m.stamp_of(msg)
            assert bm.log_ns > stamp  # logged after capture (transport delay)
            if bm.topic == RGB_TOPIC:
                np.testing.assert_array_equal(m.decode_rgb(msg, bm.msgtype, bm.topic),
                                              rgb_in[stamp].image)
                assert msg.header.frame_id == "rgb_camera"
            elif bm.topic == THERMAL_TOPIC:
                img = m.decode_thermal(msg, bm.msgtype, bm.topic)
                assert img.dtype == np.uint16 and msg.encoding == "mono16"
                np.testing.assert_array_equal(img, th_in[stamp].image)
            elif bm.topic == THERMAL_TOPIC + "/compressed":
                # 16-bit PNG is lossless: the full thermal depth survives.
                np.testing.assert_array_equal(m.decode_thermal(msg, bm.msgtype, bm.topic),
                                              th_in[stamp].image)
            elif bm.topic == RGB_TOPIC + "/compressed":
                err = np.abs(m.decode_rgb(msg, bm.msgtype, bm.topic).astype(int)
                             - rgb_in[stamp].image.astype(int))
                assert err.mean() < 3  # JPEG is lossy but close
            elif bm.topic == GT_TOPIC:
                gt = m.parse_detections(msg)
                assert gt.frame_id == "rgb_camera" and stamp in rgb_in  # header = RGB header
                np.testing.assert_allclose(gt.boxes, rgb_in[stamp].boxes)
                assert gt.class_names == [GRID_CLASSES[0]]
        assert logs == sorted(logs)


def test_detection_message_roundtrip() -> None:
    det = m.FrameDetections(1_234_567_890_123, "cam", np.array([[1.5, 2, 30.25, 40]], np.float32),
                            np.array([0.75], np.float32), ["hot"])
    raw = m.serialize(m.detections_message(det), m.DETECTIONS)
    assert header_stamp_ns(raw) == det.stamp_ns
    back = m.parse_detections(m.deserialize(raw, m.DETECTIONS, "test"))
    assert back.stamp_ns == det.stamp_ns and back.class_names == ["hot"]
    np.testing.assert_allclose(back.boxes, det.boxes, atol=1e-5)
    np.testing.assert_allclose(back.scores, det.scores)


def test_vision_msgs_hash_matches_installed_package() -> None:
    """The typestore's Detection2DArray hash equals the built vision_msgs package's."""
    import json
    import sys

    store = get_bag_typestore()
    desc = Path(sys.prefix) / "share" / "vision_msgs" / "msg" / "Detection2DArray.json"
    if not desc.is_file():
        pytest.skip("vision_msgs is not built into this environment")
    data = json.loads(desc.read_text())
    assert data["type_hashes"][0]["hash_string"] == store.hash_rihs01(m.DETECTIONS)


def test_schedule_keeps_timing_and_rate(scene_bag: Path) -> None:
    items = list(schedule(scene_bag, [RGB_TOPIC], rate=2.0))
    assert len(items) == 12
    dt = np.diff([i.due_s for i in items])
    np.testing.assert_allclose(dt, 1 / 30 / 2, atol=1e-6)  # 30 Hz played twice as fast


def test_missing_bag_and_not_a_bag(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "nope").open()
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x.txt").write_text("hi")
    with pytest.raises(BagError, match=r"no metadata.yaml .*x\.txt"):
        BagReader(tmp_path / "dir").open()
    (tmp_path / "f.bag").write_text("hi")
    with pytest.raises(BagError, match=r"unknown bag storage '\.bag'"):
        BagReader(tmp_path / "f.bag").open()


def test_unknown_storage_in_metadata(tmp_path: Path) -> None:
    s = write_frames_bag(tmp_path / "b", scene_frames(3), GRID_CLASSES)
    meta = s.path / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: sqlite3",
                                              "storage_identifier: rocksdb"))
    with pytest.raises(BagError, match=r"unknown bag storage.*rocksdb.*sqlite3, mcap"):
        BagReader(s.path).open()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_corrupt_and_truncated_bags(tmp_path: Path, storage: str) -> None:
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES, storage=storage)
    (data,) = [p for p in s.path.iterdir() if p.suffix in (".db3", ".mcap")]
    blob = data.read_bytes()
    data.write_bytes(blob[: len(blob) // 2])  # truncated copy
    with pytest.raises(BagError, match="corrupt or truncated"), BagReader(s.path) as r:
        for _ in r.messages(r.topics):
            pass
    data.write_bytes(b"\0garbage" * 100)  # not a database / mcap at all
    with pytest.raises(BagError, match=re.escape(str(s.path))), BagReader(s.path) as r:
        for _ in r.messages(r.topics):
            pass


def test_writer_is_atomic_on_error(tmp_path: Path) -> None:
    bad = StreamFrame("thermal", 2_000_000_000_000_000_000, np.zeros((4, 4, 3), np.uint8))
    frames = [*scene_frames(3), bad]
    with pytest.raises(BagError, match=r"thermal frame .* expected \(H, W\) uint16"):
        write_frames_bag(tmp_path / "b", frames, GRID_CLASSES)
    assert list(tmp_path.iterdir()) == []  # neither the bag nor a temporary directory
    write_frames_bag(tmp_path / "b", scene_frames(2), GRID_CLASSES)
    with pytest.raises(BagError, match="exists already"):
        write_frames_bag(tmp_path / "b", scene_frames(2), GRID_CLASSES)


def test_bag_tools_import_without_torch_or_rclpy() -> None:
    """The bag tools run on a robot without torch, and dlrmamba_core never imports rclpy."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import dlrmamba_core.bag.cli, dlrmamba_core.bag.evaluate, dlrmamba_core.bag.render\n"
            "import dlrmamba_core.bag.playback, dlrmamba_core.bag.compare, dlrmamba_core.demo\n"
            "from dlrmamba_core.bag.typestore import get_bag_typestore\n"
            "get_bag_typestore()\n"
            "print(sorted(m for m in ('torch', 'rclpy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
