"""ONNX export: checked graph, metadata, model card, parity with torch, atomic failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_helpers import TEST_HW, make_checkpoint
import numpy as np
import pytest

from dlrmamba_core.errors import ConfigError, ModelFileError
from dlrmamba_core.runtime.metadata import ModelInfo, sha256_file


def test_export_writes_checked_onnx_with_contract_io_and_metadata(
    nano_export: Any, nano_ckpt: Path
) -> None:
    import onnx

    proto = onnx.load(str(nano_export.onnx_path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in proto.graph.input}
    h, w = TEST_HW
    assert dims == {"rgb": [1, 3, h, w], "thermal": [1, 1, h, w]}
    (out,) = proto.graph.output
    out_dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    assert out.name == "predictions"
    # A = anchors of the three levels at strides 8, 16, 32
    anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
    assert out_dims == [1, 4 + 7, anchors]
    meta = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_metadata(meta, "export")
    assert info.input_hw == TEST_HW
    assert info.variant == "nano"
    assert len(info.class_names) == 7 and info.class_names[0] == "small_boat"
    assert info.weights_sha256 == sha256_file(nano_ckpt)
    assert json.loads(meta["dlrmamba.normalization"])["mode"] == "percentile"


def test_model_card_repeats_metadata_and_hashes_the_onnx_file(nano_export: Any) -> None:
    card = json.loads(Path(nano_export.card_path).read_text())
    assert card["onnx_sha256"] == sha256_file(nano_export.onnx_path)
    assert card["class_names"] == nano_export.info.class_names
    assert card["input_hw"] == list(TEST_HW)
    assert card["variant"] == "nano"
    assert card["export"]["opset"] == 17
    assert card["export"]["parity"]["samples"] == 2
    assert card["data"] == {"dataset": "none (untrained test model)"}


def test_parity_with_torch_on_synthetic_frames(nano_export: Any) -> None:
    p = nano_export.parity
    assert p is not None and p.samples == 2
    assert p.max_abs_diff_scores < 1e-4
    assert p.max_abs_diff_boxes < 1e-2  # network-input pixels
    # The comparison is not vacuous: every frame has detections, all identical after NMS.
    assert min(p.detections) > 0
    assert p.detections_match == [True, True]


def test_check_parity_detects_a_different_model(nano_export: Any, tmp_path: Path) -> None:
    """The parity check fails against a model with other weights (it can fail)."""
    from dlrmamba_core.deploy.export import check_parity, parity_inputs
    from dlrmamba_core.deploy.torch_backend import load_checkpoint

    other = make_checkpoint(tmp_path / "other.pt", seed=1)
    model, _, _ = load_checkpoint(other)
    rep = check_parity(model, nano_export.onnx_path, parity_inputs(TEST_HW, 1))
    assert rep.max_abs_diff > 1e-2
    assert rep.detections_match == [False]


def test_failed_parity_leaves_destination_untouched(nano_ckpt: Path, tmp_path: Path) -> None:
    from dlrmamba_core.deploy.export import export_onnx

    dest = tmp_path / "m.onnx"
    dest.write_bytes(b"previous model")
    # tolerance 0: any float difference between ORT and torch fails the export
    with pytest.raises(ModelFileError, match="disagrees with torch"):
        export_onnx(nano_ckpt, dest, parity_samples=1, parity_tolerance=0.0)
    assert dest.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp files left


def test_export_rejects_low_opset_and_bad_size_without_writing(
    nano_ckpt: Path, tmp_path: Path
) -> None:
    from dlrmamba_core.deploy.export import export_onnx

    with pytest.raises(ConfigError, match="opset 16"):
        export_onnx(nano_ckpt, tmp_path / "a.onnx", opset=16, parity_samples=0)
    with pytest.raises(ConfigError, match="multiples of 32"):
        export_onnx(nano_ckpt, tmp_path / "b.onnx", input_hw=(100, 160), parity_samples=0)
    with pytest.raises(ModelFileError, match=r"no-such\.pt"):
        export_onnx(tmp_path / "no-such.pt", tmp_path / "c.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_at_another_input_size(nano_ckpt: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    from dlrmamba_core.deploy.export import export_onnx

    res = export_onnx(nano_ckpt, tmp_path / "small.onnx", input_hw=(64, 96), parity_samples=1)
    sess = ort.InferenceSession(str(res.onnx_path), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [1, 3, 64, 96]
    assert json.loads(sess.get_modelmeta().custom_metadata_map["dlrmamba.input_hw"]) == [64, 96]
    rgb = np.zeros((1, 3, 64, 96), np.float32)
    thermal = np.zeros((1, 1, 64, 96), np.float32)
    (out,) = sess.run(None, {"rgb": rgb, "thermal": thermal})
    assert out.shape == (1, 11, 2 * 3 + 4 * 6 + 8 * 12)
