"""Detector: real onnxruntime sessions on an exported nano model, and its errors."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
from typing import Any

import cv2
import numpy as np
import pytest

from dlrmamba_core.errors import ConfigError, InputError, ModelFileError
from dlrmamba_core.runtime import Detections, Detector


def _same(a: Detections, b: Detections, box_atol: float) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=box_atol)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_detect_returns_typed_detections_in_rgb_pixels(nano_onnx: Path,
                                                       synth_frames: list[Any]) -> None:
    det = Detector(nano_onnx, threads=1)
    s = synth_frames[0]
    assert s.rgb.shape[:2] != s.thermal.shape[:2]  # thermal in its own, smaller frame
    d = det.detect(s.rgb, s.thermal, homography=s.homography)
    assert len(d) > 0
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (len(d), 4)
    assert d.scores.dtype == np.float32 and d.class_ids.dtype == np.int64
    assert np.all(np.diff(d.scores) <= 0) and d.scores.min() > 0.25
    h, w = s.rgb.shape[:2]
    assert d.boxes[:, [0, 2]].max() <= w and d.boxes[:, [1, 3]].max() <= h
    assert d.boxes.min() >= 0
    # Original pixels, not the 128x160 network input: boxes reach beyond it.
    assert d.boxes[:, 2].max() > 160
    assert d.class_names == det.class_names and len(d.class_names) == 7
    assert d.labels == [det.class_names[i] for i in d.class_ids]
    assert d.inference_ms > 0 and d.timings_ms["total"] >= d.inference_ms
    json.dumps(d.to_list())  # plain JSON


def test_boxes_scale_with_the_original_image(nano_onnx: Path, synth_frames: list[Any]) -> None:
    """A 2x (nearest) enlarged RGB letterboxes to the same input: boxes must double exactly."""
    det = Detector(nano_onnx, threads=1)
    s = synth_frames[1]
    big = cv2.resize(s.rgb, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    h2 = np.diag([2.0, 2.0, 1.0]) @ s.homography  # same thermal, into the enlarged RGB frame
    small_d = det.detect(s.rgb, s.thermal, homography=s.homography)
    big_d = det.detect(big, s.thermal, homography=h2)
    assert len(small_d) > 0
    np.testing.assert_array_equal(small_d.class_ids, big_d.class_ids)
    np.testing.assert_allclose(big_d.boxes, 2.0 * small_d.boxes, rtol=1e-5, atol=1e-3)


def test_onnxruntime_and_torch_backends_agree(nano_onnx: Path, nano_ckpt: Path,
                                              synth_frames: list[Any]) -> None:
    ort_det = Detector(nano_onnx, threads=1)
    torch_det = Detector(nano_ckpt, backend="torch", threads=1)
    assert torch_det.class_names == ort_det.class_names
    assert torch_det.weights_sha256 == ort_det.weights_sha256
    for s in synth_frames:
        _same(ort_det.detect(s.rgb, s.thermal, s.homography),
              torch_det.detect(s.rgb, s.thermal, s.homography), box_atol=0.01)


def test_bgr_order_and_thermal_layouts(nano_onnx: Path, synth_frames: list[Any]) -> None:
    det = Detector(nano_onnx, threads=1)
    s = synth_frames[2]
    ref = det.detect(s.rgb, s.thermal, s.homography)
    bgr = np.ascontiguousarray(s.rgb[:, :, ::-1])
    _same(det.detect(bgr, s.thermal, s.homography, rgb_order="bgr"), ref, box_atol=1e-4)
    _same(det.detect(s.rgb, s.thermal[:, :, None], s.homography), ref, box_atol=1e-4)
    # Forgetting the order changes the input, so it must change the output.
    wrong = det.detect(bgr, s.thermal, s.homography)
    assert len(wrong) != len(ref) or not np.allclose(wrong.scores, ref.scores)


def test_homography_default_and_override(nano_onnx: Path, synth_frames: list[Any]) -> None:
    s = synth_frames[0]
    with_h = Detector(nano_onnx, threads=1, homography=s.homography)
    plain = Detector(nano_onnx, threads=1)
    _same(with_h.detect(s.rgb, s.thermal), plain.detect(s.rgb, s.thermal, s.homography), 1e-4)
    # Resizing instead of registering gives a different thermal input, so other detections.
    resized = plain.detect(s.rgb, s.thermal)
    registered = plain.detect(s.rgb, s.thermal, s.homography)
    assert len(resized) != len(registered) or not np.allclose(resized.scores, registered.scores)


def test_session_options_are_configurable(nano_onnx: Path, synth_frames: list[Any]) -> None:
    s = synth_frames[0]
    base = Detector(nano_onnx, threads=1).detect(s.rgb, s.thermal, s.homography)
    det = Detector(nano_onnx, threads=2, graph_optimization="basic",
                   providers=["CPUExecutionProvider"])
    opts = det.backend.session.get_session_options()  # type: ignore[attr-defined]
    assert opts.intra_op_num_threads == 2
    assert det.backend.session.get_providers() == ["CPUExecutionProvider"]  # type: ignore[attr-defined]
    _same(det.detect(s.rgb, s.thermal, s.homography), base, box_atol=0.01)
    # Idle inference threads do not busy-wait unless asked to (same results either way).
    spin_entry = "session.intra_op.allow_spinning"
    assert opts.get_session_config_entry(spin_entry) == "0"
    spinning = Detector(nano_onnx, threads=2, spin=True)
    assert spinning.backend.session.get_session_options(  # type: ignore[attr-defined]
    ).get_session_config_entry(spin_entry) == "1"
    _same(spinning.detect(s.rgb, s.thermal, s.homography), base, box_atol=0.01)
    with pytest.raises(ConfigError, match="graph_optimization"):
        Detector(nano_onnx, graph_optimization="max")
    with pytest.raises(ConfigError, match="NoSuchExecutionProvider"):
        Detector(nano_onnx, providers=["NoSuchExecutionProvider"])
    with pytest.raises(ConfigError, match="backend"):
        Detector(nano_onnx, backend="tensorrt")
    with pytest.raises(ConfigError, match="conf_threshold"):
        Detector(nano_onnx, conf_threshold=1.5)


RGB = np.zeros((48, 64, 3), np.uint8)
THERMAL = np.zeros((24, 32), np.uint16)


@pytest.mark.parametrize(
    ("rgb", "thermal", "pattern"),
    [
        (np.zeros((48, 64), np.uint8), THERMAL, r"rgb has shape \(48, 64\).*\(H, W, 3\)"),
        (np.zeros((48, 64, 4), np.uint8), THERMAL, r"rgb has shape \(48, 64, 4\)"),
        (RGB.astype(np.float32), THERMAL, "rgb has dtype float32: expected uint8"),
        (np.zeros((0, 64, 3), np.uint8), THERMAL, "rgb is empty"),
        ([[1, 2, 3]], THERMAL, "rgb must be a numpy array"),
        (RGB, np.zeros((24, 32, 3), np.uint16), r"thermal has shape \(24, 32, 3\)"),
        (RGB, THERMAL.astype(np.int32), "thermal has dtype int32"),
        (RGB, np.zeros((24, 0), np.uint16), "thermal is empty"),
        (RGB, None, "thermal must be a numpy array"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_argument(
    nano_onnx: Path, rgb: Any, thermal: Any, pattern: str
) -> None:
    det = Detector(nano_onnx, threads=1)
    with pytest.raises(InputError, match=pattern):
        det.detect(rgb, thermal)


def test_bad_rgb_order_and_homography(nano_onnx: Path) -> None:
    det = Detector(nano_onnx, threads=1)
    with pytest.raises(ConfigError, match="rgb_order"):
        det.detect(RGB, THERMAL, rgb_order="rbg")
    with pytest.raises(InputError, match="homography"):
        det.detect(RGB, THERMAL, homography=np.full((3, 3), np.nan))


def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelFileError, match=r"nowhere/model\.onnx: no such model file.*export"):
        Detector(missing)


def test_corrupt_and_foreign_model_files(nano_onnx: Path, tmp_path: Path) -> None:
    import onnx

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx model" * 10)
    with pytest.raises(ModelFileError, match=r"junk\.onnx: onnxruntime cannot load it"):
        Detector(junk)
    proto = onnx.load(str(nano_onnx))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelFileError, match=r"bare\.onnx: ONNX metadata lacks .*dlrmamba"):
        Detector(bare)
    with pytest.raises(ModelFileError, match=r"needs a \.onnx file"):
        Detector(nano_onnx.with_suffix(".json"))


def test_model_card_checksum_and_metadata_mismatch(nano_onnx: Path, tmp_path: Path) -> None:
    card_path = nano_onnx.with_suffix(".json")
    card = json.loads(card_path.read_text())
    Detector(nano_onnx, require_card=True)  # the exported pair is consistent

    bad_sum = dict(card, onnx_sha256="0" * 64)
    card_path.write_text(json.dumps(bad_sum))
    with pytest.raises(ModelFileError, match=r"sha256 .* does not match 0000"):
        Detector(nano_onnx)

    renamed = dict(card, class_names=["boat", *card["class_names"][1:]])
    card_path.write_text(json.dumps(renamed))
    with pytest.raises(ModelFileError, match=r"class_names .* ONNX metadata"):
        Detector(nano_onnx)
    Detector(nano_onnx, verify_card=False)  # explicitly skipped

    card_path.write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        Detector(nano_onnx)

    card_path.unlink()
    Detector(nano_onnx)  # a bare ONNX file is accepted by default ...
    with pytest.raises(ModelFileError, match=r"model card .* is missing"):
        Detector(nano_onnx, require_card=True)  # ... but not when a card is required


def test_model_file_replaced_under_its_card(nano_onnx: Path, tmp_path: Path,
                                            nano_ckpt: Path) -> None:
    """Another export (other weights) copied over the ONNX file fails the card check."""
    from model_helpers import make_checkpoint

    from dlrmamba_core.deploy.export import export_onnx

    other = export_onnx(make_checkpoint(tmp_path / "o.pt", seed=3), tmp_path / "o" / "o.onnx",
                        parity_samples=0)
    shutil.copy(other.onnx_path, nano_onnx)
    with pytest.raises(ModelFileError, match="corrupt or was replaced"):
        Detector(nano_onnx)
