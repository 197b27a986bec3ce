"""The synthetic benchmark, the shared pre-processing and the data CLI (real files in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from dlrmamba_core.data.letterbox import letterbox_boxes, letterbox_params, unletterbox_boxes
from dlrmamba_core.data.preprocess import prepare_inputs
from dlrmamba_core.data.registration import warp_thermal
from dlrmamba_core.data.synthetic import (
    CONDITIONS,
    SYNTH_CLASSES,
    SynthConfig,
    generate_frame,
    with_sizes,
    write_frame_dataset,
)
from dlrmamba_core.errors import ConfigError, DatasetError

SMALL = with_sizes(SynthConfig(), rgb_size=(320, 192), thermal_size=(160, 128))


def test_generator_is_deterministic_and_labels_are_consistent() -> None:
    a = generate_frame(SMALL, seed=7)
    b = generate_frame(SMALL, seed=7)
    c = generate_frame(SMALL, seed=8)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.thermal, b.thermal)
    assert np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.rgb, c.rgb)
    assert a.rgb.shape == (192, 320, 3) and a.rgb.dtype == np.uint8
    assert a.thermal.shape == (128, 160) and a.thermal.dtype == np.uint16  # raw 16-bit counts
    assert a.homography is not None and a.homography.shape == (3, 3)
    n = len(a.boxes)
    assert a.labels.shape == (n,) and a.visible is not None and a.visible.shape == (n, 2)
    if n:
        assert a.labels.min() >= 0 and a.labels.max() < len(SYNTH_CLASSES)
        assert (a.boxes[:, 2] > a.boxes[:, 0]).all() and (a.boxes[:, 3] > a.boxes[:, 1]).all()
        assert (a.boxes[:, :2] >= 0).all() and (a.boxes[:, 2] <= 320).all()


def test_night_hides_objects_from_rgb_and_crossover_from_thermal() -> None:
    def visible_fraction(condition: str) -> np.ndarray:
        vis = [generate_frame(SMALL, seed=s, condition=condition).visible for s in range(12)]
        stacked = np.concatenate([v for v in vis if v is not None and len(v)])
        return stacked.mean(axis=0)  # [rgb, thermal]

    day, night, cross = (visible_fraction(c) for c in ("day", "night", "crossover"))
    assert set(CONDITIONS) >= {"day", "night", "crossover", "fog"}
    assert night[0] < day[0] - 0.2, (day, night)      # RGB loses objects at night
    assert night[1] > 0.6, night                       # thermal still sees them
    assert cross[1] < day[1] - 0.2, (day, cross)      # crossover hides objects in thermal


def test_registered_thermal_puts_hot_objects_inside_rgb_boxes() -> None:
    s = generate_frame(SMALL, seed=3, condition="night")
    warped = warp_thermal(s.thermal, s.homography, s.rgb.shape[:2]).astype(np.float64)
    inside = np.zeros(warped.shape, bool)
    for x1, y1, x2, y2 in s.boxes.astype(int):
        inside[y1:y2, x1:x2] = True
    assert inside.any() and (~inside).any()
    # Night objects are warmer than their surroundings in thermal, at the RGB box positions.
    assert warped[inside].mean() > warped[~inside].mean()


def test_prepare_inputs_and_unletterbox_round_trip() -> None:
    s = generate_frame(SMALL, seed=5)
    p = prepare_inputs(s.rgb, s.thermal, s.homography, (256, 320))
    assert p.rgb.shape == (3, 256, 320) and p.thermal.shape == (1, 256, 320)
    assert p.rgb.dtype == np.float32 and p.rgb.min() >= 0.0 and p.rgb.max() <= 1.0
    assert p.thermal.min() >= 0.0 and p.thermal.max() <= 1.0
    lb = letterbox_params((192, 320), (256, 320))
    boxes = np.array([[10.0, 20.0, 100.0, 150.0], [200.5, 5.25, 319.0, 191.0]], np.float32)
    back = unletterbox_boxes(letterbox_boxes(boxes, lb), lb)
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_frame_dataset_layout_and_stats_cli(tmp_path: Path) -> None:
    root = tmp_path / "synth"
    write_frame_dataset(root, 6, (("train", 0.5), ("val", 0.5)), seed=11, cfg=SMALL, workers=1)
    out = subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.cli", "data", "stats", "--format", "synth",
         "--root", str(root), "--split", "train", "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["pairs"] == 3 and stats["unpaired"] in (0, [])
    assert stats["boxes"] == sum(stats["boxes_per_class"].values())
    assert set(stats["boxes_per_class"]) <= set(SYNTH_CLASSES)
    assert stats["instance_masks"] and stats["masks"] == stats["boxes"]


def test_missing_dataset_root_is_a_clear_error(tmp_path: Path) -> None:
    from dlrmamba_core.data.readers import open_dataset

    with pytest.raises(DatasetError, match="no_such_dir"):
        open_dataset("synth", tmp_path / "no_such_dir", split="train")


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    from dlrmamba_core.data.readers import open_dataset

    with pytest.raises(DatasetError, match=r"unknown dataset format 'llvp'.*'llvip'"):
        open_dataset("llvp", tmp_path)


def test_night_light_and_fog_density_are_settings() -> None:
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    small = dict(rgb_size=(160, 120), thermal_size=(80, 64))
    # Generator version 1's night against the current (darker) default.
    base = generate_frame(SynthConfig(**small, night_light=(0.002, 0.006)), 11,
                          scene="aerial", condition="night")
    dark = generate_frame(SynthConfig(**small), 11, scene="aerial", condition="night")
    # The 40x exposure cap leaves less signal above the (clipped) read noise: darker.
    assert dark.rgb.mean() < base.rgb.mean() - 2.0
    np.testing.assert_array_equal(dark.thermal, base.thermal)  # thermal does not care
    np.testing.assert_array_equal(dark.boxes, base.boxes)
    with pytest.raises(ConfigError, match="night_light"):
        SynthConfig(night_light=(0.01, 0.001))
    with pytest.raises(ConfigError, match="fog_density"):
        SynthConfig(fog_density=(0.0, 1.0))


def test_synth_options_override_config_fields(tmp_path: Path) -> None:
    from dlrmamba_core.cli import main as cli_main
    from dlrmamba_core.data.synthetic import SynthConfig, with_options

    cfg = with_options(SynthConfig(), ["night_light=0.0005,0.0015", "crossover_hide=0.9"])
    assert cfg.night_light == (0.0005, 0.0015) and cfg.crossover_hide == 0.9
    with pytest.raises(ConfigError, match="KEY one of"):
        with_options(SynthConfig(), ["nights=1"])
    with pytest.raises(ConfigError, match=r"takes 2 number\(s\)"):
        with_options(SynthConfig(), ["fog_density=3"])
    out = tmp_path / "g"
    assert cli_main(["data", "gen", "--out", str(out), "--num", "4", "--rgb-size", "96x64",
                     "--thermal-size", "48x32", "--synth-opt", "fog_density=5,6"]) == 0
    assert json.loads((out / "dataset.json").read_text())["config"]["fog_density"] == [5, 6]
