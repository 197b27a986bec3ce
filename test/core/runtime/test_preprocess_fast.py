"""The identity-warp fast path of the thermal registration equals OpenCV's warp exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dlrmamba_core.data import preprocess
from dlrmamba_core.data.letterbox import letterbox_params


@pytest.mark.parametrize(("rgb_hw", "th_hw", "net_hw"), [
    ((1024, 1280), (512, 640), (512, 640)),  # the target pair: identity straight away
    ((1024, 1280), (512, 640), (256, 320)),  # identity after the area pre-shrink
    ((480, 640), (240, 320), (256, 320)),  # letterbox pad rows: canvas larger than thermal
])
def test_identity_warp_copy_matches_warp_perspective(
        rgb_hw: tuple[int, int], th_hw: tuple[int, int], net_hw: tuple[int, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    t01 = np.random.default_rng(0).random(th_hw).astype(np.float32)
    lb = letterbox_params(rgb_hw, net_hw)
    fast = preprocess.thermal_to_canvas(t01, None, rgb_hw, lb)
    calls: list[int] = []
    real = cv2.warpPerspective

    def warp(*args, **kwargs):  # the real warp, counted
        calls.append(1)
        return real(*args, **kwargs)

    # Shifted by 1e-6 px the homography cannot take the fast path: compare with its warp.
    h = preprocess.scale_homography(th_hw, rgb_hw).copy()
    h[0, 2] += 1e-6
    monkeypatch.setattr(preprocess.cv2, "warpPerspective", warp)
    ref = preprocess.thermal_to_canvas(t01, h, rgb_hw, lb)
    assert calls == [1]
    assert fast.shape == ref.shape == net_hw and fast.dtype == np.float32
    assert float(np.abs(fast - ref).max()) < 1e-5
    assert float((fast == preprocess.THERMAL_PAD).mean()) == pytest.approx(
        float((ref == preprocess.THERMAL_PAD).mean()), abs=0.01)


@pytest.mark.parametrize(("src_hw", "dst_hw", "channels", "dtype", "halvings"), [
    ((1024, 1280), (256, 320), 3, np.uint8, 2),  # a 1280x1024 camera at the 256x320 input
    ((1024, 1280), (128, 160), 3, np.uint8, 3),
    ((720, 1280), (180, 320), 3, np.uint8, 2),
    ((1024, 1280), (256, 320), 1, np.float32, 2),  # normalized thermal (area pre-shrink)
    ((1024, 1280), (512, 640), 3, np.uint8, 0),  # 2x: OpenCV's fast path, one call
    ((1080, 1920), (360, 640), 3, np.uint8, 0),  # 3x: not a power of two, one call
    ((1024, 1280), (256, 321), 3, np.uint8, 0),  # axes differ: one call
])
def test_area_resize_equals_opencv_area(src_hw: tuple[int, int], dst_hw: tuple[int, int],
                                        channels: int, dtype: type, halvings: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Power-of-two shrinks as repeated exact halvings: the one-step INTER_AREA result, within
    one uint8 level (rounding after each halving) or float rounding; other sizes unchanged."""
    from dlrmamba_core.data import letterbox

    rng = np.random.default_rng(1)
    shape = (*src_hw, channels) if channels > 1 else src_hw
    img = (rng.integers(0, 256, shape).astype(np.uint8) if dtype == np.uint8
           else rng.random(shape).astype(np.float32))
    ref = cv2.resize(img, (dst_hw[1], dst_hw[0]), interpolation=cv2.INTER_AREA)
    calls: list[tuple[int, int]] = []
    real = cv2.resize

    def resize(src, size, *args, **kwargs):  # the real resize, counted
        calls.append(size)
        return real(src, size, *args, **kwargs)

    monkeypatch.setattr(letterbox.cv2, "resize", resize)
    out = letterbox.area_resize(img, *dst_hw)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert len(calls) == max(halvings, 1)
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    assert diff.max() <= (1 if dtype == np.uint8 else 1e-5)
    if halvings == 0:
        assert diff.max() == 0
