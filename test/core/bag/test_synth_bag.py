"""``dlrmamba synth-bag`` with the real synthetic sequence generator, and video rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlrmamba_core.bag import messages as m
from dlrmamba_core.bag.reader import BagReader
from dlrmamba_core.bag.render import render_detections
from dlrmamba_core.bag.synth import GT_TOPIC, RGB_TOPIC, THERMAL_TOPIC, write_frames_bag
from dlrmamba_core.cli import main as cli_main

from .conftest import GRID_CLASSES, scene_frames


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_synth_bag_cli(tmp_path: Path, storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES

    out = tmp_path / "bag"
    rc = cli_main(["synth-bag", str(out), "--duration", "1", "--storage", storage,
                   "--compressed", "--size", "160", "128", "--rgb-hz", "20",
                   "--thermal-hz", "10", "--seed", "3"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote synthetic bag" in capsys.readouterr().out
    with BagReader(out) as r:
        assert r.storage == storage
        assert r.counts[RGB_TOPIC] == 20 and r.counts[THERMAL_TOPIC] == 10
        assert r.counts[RGB_TOPIC + "/compressed"] == 20 and r.counts[GT_TOPIC] == 20
        assert r.custom["dlrmamba.synthetic"] == "true"
        assert json.loads(r.custom["dlrmamba.class_names"]) == list(SYNTH_CLASSES)
        assert np.asarray(json.loads(r.custom["dlrmamba.homography"])).shape == (3, 3)
        rgb_stamps, th_stamps, gt_stamps = [], [], []
        for bm in r.messages([RGB_TOPIC, THERMAL_TOPIC, GT_TOPIC]):
            msg = bm.decode()
            if bm.topic == RGB_TOPIC:
                assert (msg.width, msg.height, msg.encoding) == (160, 128, "rgb8")
                rgb_stamps.append(m.stamp_of(msg))
            elif bm.topic == THERMAL_TOPIC:
                assert (msg.width, msg.height, msg.encoding) == (80, 64, "mono16")
                th_stamps.append(m.stamp_of(msg))
            else:
                gt = m.parse_detections(msg)
                assert set(gt.class_names) <= set(SYNTH_CLASSES)
                assert (gt.boxes[:, 2:] <= [160, 128]).all()
                gt_stamps.append(gt.stamp_ns)
    assert sorted(gt_stamps) == sorted(rgb_stamps)  # ground truth rides on the RGB headers
    # Own rates and stamps: thermal never shares the RGB clock ticks.
    assert not set(th_stamps) & set(rgb_stamps)
    assert 0.04 < np.median(np.diff(sorted(rgb_stamps))) / 1e9 < 0.06
    assert 0.08 < np.median(np.diff(sorted(th_stamps))) / 1e9 < 0.12


def test_synth_bag_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["synth-bag", str(tmp_path / "b"), "--storage", "rocksdb"]) == 2
    assert "unknown bag storage 'rocksdb'" in capsys.readouterr().err
    assert cli_main(["synth-bag", str(tmp_path / "b"), "--duration", "0"]) == 2
    assert not (tmp_path / "b").exists()


def test_render_detections_draws_one_frame_per_detected_image(tmp_path: Path) -> None:
    s = write_frames_bag(tmp_path / "b", scene_frames(), GRID_CLASSES)
    with BagReader(s.path) as r:
        gts = {f.stamp_ns: f for f in (m.parse_detections(bm.decode())
                                       for bm in r.messages([GT_TOPIC]))}
    chosen = dict(sorted(gts.items())[:5])
    video, preview = render_detections(s.path, RGB_TOPIC, THERMAL_TOPIC, chosen, GRID_CLASSES,
                                       tmp_path, gt_topic=GT_TOPIC, fps=5)
    assert video is not None and video.stat().st_size > 0 and preview is not None
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(video))
    meta = next(gen)  # the first item is the stream's metadata
    assert tuple(meta["size"]) == (128, 96)
    assert sum(1 for _ in gen) == 5


def test_scenario_bag_puts_segments_one_after_the_other(tmp_path: Path) -> None:
    from dlrmamba_core.bag.synth import write_scenario_bag

    s = write_scenario_bag(tmp_path / "b", [("maritime", "day", 0.5), ("maritime", "night", 0.5)],
                           seed=1, size=(160, 128), storage="sqlite3")
    assert s.counts[RGB_TOPIC] == 30  # 15 RGB frames per 0.5 s segment at 30 Hz
    with BagReader(s.path) as r:
        gen = json.loads(r.custom["dlrmamba.generator"])
        assert gen["segments"] == [["maritime", "day", 0.5], ["maritime", "night", 0.5]]
        msgs = [bm.decode() for bm in r.messages([RGB_TOPIC])]
    stamps = [m.stamp_of(x) for x in msgs]
    means = [float(np.frombuffer(bytes(x.data), np.uint8).mean()) for x in msgs]
    assert stamps == sorted(stamps)
    gap = stamps[15] - stamps[14]  # day -> night: one RGB period plus jitter
    assert 20e6 < gap < 60e6
    assert np.mean(means[:15]) > 2 * np.mean(means[15:])  # the night half is darker
