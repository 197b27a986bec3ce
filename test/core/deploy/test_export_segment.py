"""ONNX export of a segment model: outputs ``predictions`` + ``protos``, metadata, and masks
decoded by the torch-free runtime from onnxruntime's outputs equal torch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

HW = (128, 160)
K = 8
NC = 7  # the synthetic benchmark's classes (data.synthetic.SYNTH_CLASSES)


def _segment_checkpoint(path: Path) -> Path:
    """An untrained nano segment model with realistic BatchNorm statistics and mask
    coefficients large enough that masks have object and background pixels."""
    from model_helpers import make_segment_checkpoint

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES

    return make_segment_checkpoint(path, list(SYNTH_CLASSES), num_protos=K)


@pytest.fixture(scope="module")
def segment_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    from dlrmamba_core.deploy.export import export_onnx

    d = tmp_path_factory.mktemp("segexp")
    ckpt = _segment_checkpoint(d / "seg.pt")
    res = export_onnx(ckpt, d / "seg.onnx")
    return ckpt, d / "seg.onnx", res


def test_segment_export_has_protos_output_and_task_metadata(
        segment_export: tuple[Path, Path, object]) -> None:
    import onnx

    _, onnx_path, res = segment_export
    proto = onnx.load(str(onnx_path))
    assert [o.name for o in proto.graph.output] == ["predictions", "protos"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["dlrmamba.task"] == "segment" and meta["dlrmamba.num_protos"] == str(K)
    parity = res.parity  # type: ignore[attr-defined]
    assert parity.max_abs_diff_protos is not None and parity.max_abs_diff_protos < 1e-3
    assert parity.mask_pixels_differ is not None and parity.mask_pixels_differ <= 1e-3


def test_runtime_masks_from_onnx_equal_torch(segment_export: tuple[Path, Path, object]
                                             ) -> None:
    from dlrmamba_core.data.preprocess import prepare_inputs
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame
    from dlrmamba_core.models.io import load_model
    from dlrmamba_core.runtime.ort_session import ort_session
    from dlrmamba_core.runtime.segment import segment_outputs

    ckpt, onnx_path, _ = segment_export
    model, _ = load_model(ckpt)
    sess = ort_session(onnx_path)
    s = generate_frame(SynthConfig(), 5)
    p = prepare_inputs(s.rgb, s.thermal, s.homography, HW)
    rgb, thermal = p.rgb[None], p.thermal[None]
    with torch.inference_mode():
        ref, ref_protos = (t.numpy() for t in model(torch.from_numpy(rgb),
                                                     torch.from_numpy(thermal)))
    got, got_protos = sess.run(["predictions", "protos"], {"rgb": rgb, "thermal": thermal})
    assert got.shape == ref.shape == (1, 4 + NC + K, ref.shape[2])
    assert got_protos.shape == ref_protos.shape == (1, K, HW[0] // 4, HW[1] // 4)
    d_ref, m_ref = segment_outputs(ref, ref_protos, p.letterbox, conf_threshold=0.001)
    d_got, m_got = segment_outputs(got, got_protos, p.letterbox, conf_threshold=0.001)
    assert len(d_ref.scores) > 0 and m_ref.shape == (len(d_ref.scores), *s.rgb.shape[:2])
    np.testing.assert_array_equal(d_got.class_ids, d_ref.class_ids)
    np.testing.assert_allclose(d_got.boxes, d_ref.boxes, atol=0.05)
    assert 0 < m_ref.sum() < m_ref.size  # masks with object and background pixels
    assert (m_got != m_ref).mean() <= 1e-3
    # Boxes are in original pixels and every mask lies inside its box.
    for box, m in zip(d_ref.boxes, m_ref, strict=True):
        ys, xs = np.nonzero(m)
        if len(xs):
            assert xs.min() + 0.5 >= box[0] - 1e-3 and xs.max() + 0.5 <= box[2] + 1e-3
            assert ys.min() + 0.5 >= box[1] - 1e-3 and ys.max() + 0.5 <= box[3] + 1e-3


def test_runtime_detector_returns_masks_of_a_segment_model(
        segment_export: tuple[Path, Path, object], tmp_path: Path) -> None:
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame
    from dlrmamba_core.runtime import Detector

    ckpt, onnx_path, _ = segment_export
    s = generate_frame(SynthConfig(), 5)
    ort = Detector(onnx_path, conf_threshold=0.001)
    assert ort.segment
    d = ort.detect(s.rgb, s.thermal, homography=s.homography)
    assert d.masks is not None and d.masks.shape == (len(d), *s.rgb.shape[:2])
    assert d.masks.dtype == np.uint8 and d.masks.any()
    assert ort.run_network(*_zeros()).shape[1] == 4 + NC  # boxes and classes only
    plain = ort.detect(s.rgb, s.thermal, homography=s.homography, masks=False)
    assert plain.masks is None
    np.testing.assert_allclose(plain.boxes, d.boxes, atol=1e-3)
    pt = Detector(ckpt, backend="torch", conf_threshold=0.001)
    d_pt = pt.detect(s.rgb, s.thermal, homography=s.homography)
    np.testing.assert_array_equal(d_pt.class_ids, d.class_ids)
    assert d_pt.masks is not None and (d_pt.masks != d.masks).mean() <= 1e-3


def test_eval_of_a_segment_onnx_scores_masks(segment_export: tuple[Path, Path, object],
                                              tmp_path: Path) -> None:
    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset
    from dlrmamba_core.engine.evaluate import evaluate

    _, onnx_path, _ = segment_export
    root = tmp_path / "data"
    write_frame_dataset(root, 3, (("test", 1.0),), seed=1,
                        cfg=SynthConfig(rgb_size=(160, 128), thermal_size=(80, 64)))
    pairs = open_dataset("synth", root, split="test")
    metrics = evaluate(str(onnx_path), pairs)
    assert metrics["segm"]["num_gt"] == metrics["num_gt"] > 0
    assert metrics["segm"]["num_det"] > 0


def _zeros() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((1, 3, *HW), np.float32), np.zeros((1, 1, *HW), np.float32)


def test_detect_cli_draws_masks_and_writes_their_rle(segment_export: tuple[Path, Path, object],
                                                     tmp_path: Path) -> None:
    import json

    import cv2

    from dlrmamba_core.cli import main as cli_main
    from dlrmamba_core.data.masks import rle_decode
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    _, onnx_path, _ = segment_export
    s = generate_frame(SynthConfig(), 5)
    cv2.imwrite(str(tmp_path / "rgb.png"), s.rgb[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "thermal.png"), s.thermal)
    args = ["detect", str(onnx_path), str(tmp_path / "rgb.png"), str(tmp_path / "thermal.png"),
            "--conf", "0.001", "--max-det", "5", "--json", str(tmp_path / "d.json")]
    assert cli_main([*args, "--draw", str(tmp_path / "d.png")]) == 0
    rows = json.loads((tmp_path / "d.json").read_text())["detections"]
    assert len(rows) == 5
    masks = np.stack([rle_decode(r["mask_rle"]) for r in rows])
    assert masks.shape == (5, *s.rgb.shape[:2]) and masks.any()
    drawn = cv2.imread(str(tmp_path / "d.png"))[:, :, ::-1]
    assert drawn.shape == s.rgb.shape
    # The translucent fill changes pixels inside a mask that no box outline touches.
    ys, xs = np.nonzero(masks.any(0))
    assert (drawn[ys, xs] != s.rgb[ys, xs]).any()
