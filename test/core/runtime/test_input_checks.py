"""``runtime.input_checks.check_pair``: thermal aspect ratio and colour warnings."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.runtime.input_checks import (
    THERMAL_ASPECT,
    THERMAL_COLOUR,
    InputWarningCounter,
    check_pair,
    is_colour,
)

REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "real" / "dronevehicle6"


def _codes(ws: list) -> list[str]:
    return [w.code for w in ws]


@pytest.mark.parametrize(("thermal_hw", "expect"), [
    ((240, 320), []),              # same 4:3 aspect at half resolution: plain resize is right
    ((256, 320), []),              # 1.25 vs 1.33: within the 10 % tolerance
    ((6, 8), []),                  # tiny but the same aspect
    ((320, 240), [THERMAL_ASPECT]),  # portrait
    ((240, 480), [THERMAL_ASPECT]),  # 2:1
])
def test_aspect_ratio_without_homography(thermal_hw: tuple[int, int], expect: list[str]) -> None:
    thermal = np.zeros(thermal_hw, np.uint16)
    assert _codes(check_pair((480, 640), thermal, None)) == expect


def test_a_homography_silences_the_aspect_check_and_tol_is_honoured() -> None:
    portrait = np.zeros((320, 240), np.uint16)
    assert check_pair((480, 640), portrait, np.eye(3)) == []
    square = np.zeros((100, 100), np.uint8)  # aspect 1.0 vs 1.33: 25 % off
    assert _codes(check_pair((480, 640), square, None, tol=0.1)) == [THERMAL_ASPECT]
    assert check_pair((480, 640), square, None, tol=0.3) == []
    (w,) = check_pair((480, 640), portrait, None)
    assert "240x320" in w.message and "640x480" in w.message and "homography" in w.message


def test_colour_versus_grey_saved_as_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (60, 80, 3), np.uint8)
    grey = np.repeat(rng.integers(0, 256, (60, 80, 1), np.uint8), 3, axis=2)
    assert _codes(check_pair((60, 80), photo, None)) == [THERMAL_COLOUR]
    assert check_pair((60, 80), grey, None) == []
    assert check_pair((60, 80), grey[..., 0], None) == []
    # a grey image written as a 3-channel JPEG differs by chroma rounding only: not colour
    cv2.imwrite(str(tmp_path / "g.jpg"), grey)
    assert not is_colour(cv2.imread(str(tmp_path / "g.jpg"), cv2.IMREAD_UNCHANGED))


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real/dronevehicle6 not present")
def test_real_thermal_jpegs_are_grey_and_real_rgb_is_colour() -> None:
    """DroneVehicle publishes its IR as 3-channel JPEGs with R=G=B: no warning for those."""
    for stem in ("00001", "00004"):
        ir = cv2.imread(str(REAL / "ir" / f"{stem}.jpg"), cv2.IMREAD_UNCHANGED)
        rgb = cv2.imread(str(REAL / "rgb" / f"{stem}.jpg"), cv2.IMREAD_UNCHANGED)
        assert ir.ndim == 3 and check_pair(rgb.shape[:2], ir, None) == []
        assert _codes(check_pair(rgb.shape[:2], rgb, None)) == [THERMAL_COLOUR]


def test_counter_logs_each_code_once(caplog: pytest.LogCaptureFixture) -> None:
    counter = InputWarningCounter()
    portrait = np.zeros((320, 240), np.uint16)
    for _ in range(3):
        counter.record(check_pair((480, 640), portrait, None))
    assert counter.counts == {THERMAL_ASPECT: 3}
    assert sum(THERMAL_ASPECT in r.getMessage() for r in caplog.records) == 1
