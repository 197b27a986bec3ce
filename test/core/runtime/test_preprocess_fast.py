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
