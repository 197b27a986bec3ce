"""Detector variants: forward contract, gradients, sizes, student from teacher, io, ONNX."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrmamba_core.errors import ConfigError, ModelFileError
from dlrmamba_core.losses import DetectionLoss
from dlrmamba_core.models import build_model, list_variants, student_from_teacher
from dlrmamba_core.models.distill import capture, factor_pairs
from dlrmamba_core.models.io import load_model, save_model

H, W = 64, 96
N_ANCHORS = sum((H // s) * (W // s) for s in (8, 16, 32))


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def inputs(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, H, W, generator=g), torch.rand(b, 1, H, W, generator=g)


def test_registry_has_required_variants() -> None:
    assert {"teacher", "student", "nano", "cnn"} <= set(list_variants())
    with pytest.raises(ConfigError, match="unknown model variant"):
        build_model("huge", 3)
    with pytest.raises(ConfigError, match="unknown config overrides"):
        build_model("nano", 3, widthz=(1, 2, 3))


@pytest.mark.parametrize("variant", ["teacher", "student", "nano", "cnn"])
def test_forward_backward_every_parameter_gets_gradient(variant: str) -> None:
    torch.manual_seed(0)
    model = build_model(variant, 3).train()
    rgb, th = inputs()
    outs = model(rgb, th)
    assert model.strides == (8, 16, 32)
    assert [tuple(o.shape) for o in outs] == [
        (2, 4 * model.reg_max + 3, H // s, W // s) for s in model.strides
    ]
    targets = torch.tensor([[0, 1, 8.0, 8.0, 40.0, 30.0], [1, 2, 50.0, 20.0, 90.0, 60.0]])
    loss, parts = DetectionLoss(model)(outs, targets)
    assert torch.isfinite(loss) and set(parts) == {"box", "cls", "dfl"}
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        pred = model(rgb, th)
    assert pred.shape == (2, 4 + 3, N_ANCHORS)
    assert torch.isfinite(pred).all()
    assert ((pred[:, 4:] >= 0) & (pred[:, 4:] <= 1)).all()  # sigmoid probabilities
    assert (pred[:, 2] >= pred[:, 0]).all() and (pred[:, 3] >= pred[:, 1]).all()  # xyxy


SMALL_TEACHER = {"widths": (16, 32, 48), "neck": (16, 24, 32), "head_width": 16}
"""Same structure as the teacher, narrower: keeps the SVD-heavy tests fast."""


def test_sizes() -> None:
    from dataclasses import replace

    from dlrmamba_core.models.config import STUDENT_RANK_RATIO, STUDENT_STATE_RATIO

    teacher = n_params(build_model("teacher", 7))
    student = n_params(build_model("student", 7))
    assert n_params(build_model("nano", 7)) < 500_000
    assert student <= 0.30 * teacher, (student, teacher)
    # The registered student is what student_from_teacher builds from the registered teacher.
    small = build_model("teacher", 7, **SMALL_TEACHER)
    derived = student_from_teacher(small, STUDENT_RANK_RATIO, STUDENT_STATE_RATIO)
    expect = replace(build_model("student", 7, **SMALL_TEACHER).cfg, variant="student")
    assert derived.cfg == expect


def test_student_at_full_rank_reproduces_teacher() -> None:
    torch.manual_seed(0)
    teacher = build_model("teacher", 3, **SMALL_TEACHER)
    with torch.no_grad():  # random non-trivial weights everywhere, incl. head biases
        for p in teacher.parameters():
            p.add_(0.02 * torch.randn_like(p))
    teacher.eval()
    student = student_from_teacher(teacher, rank_ratio=1.0, state_ratio=1.0).eval()
    assert student.cfg.rank_ratio == 1.0 and student.cfg.d_state == teacher.cfg.d_state
    rgb, th = inputs()
    with torch.no_grad():
        f_t = teacher.forward_features(rgb, th)
        f_s = student.forward_features(rgb, th)
        for a, b in zip(f_t, f_s, strict=True):
            torch.testing.assert_close(b, a, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(student(rgb, th), teacher(rgb, th), atol=1e-2, rtol=1e-3)
    # And at the registered ratios it is a different (compressed) function.
    small = student_from_teacher(teacher, 0.15, 0.25).eval()
    with torch.no_grad():
        diff = (small.forward_features(rgb, th)[2] - f_t[2]).abs().max()
    assert diff > 1e-3


def test_distill_capture_and_factor_pairs() -> None:
    teacher = build_model("teacher", 2, **SMALL_TEACHER)
    student = student_from_teacher(teacher, 0.15, 0.25)
    rgb, th = inputs(1)
    with capture(student) as rec:
        student(rgb, th)
    names = [n for n, m in student.named_modules() if type(m).__name__.endswith("SS2D")]
    assert sorted(rec) == sorted(names) and names
    for name, r in rec.items():
        block = dict(student.named_modules())[name]
        h, w = r["output"].shape[1:3]
        assert r["states"].shape == (1, 4 * block.d_inner, block.d_state, -(-h * w // 8))
        assert r["output"].shape[-1] == block.d_model and r["output"].requires_grad
    assert all(not m.capture for m in student.modules() if hasattr(m, "capture"))
    pairs = factor_pairs(student, teacher)
    assert len(pairs) == 6 * len(names)  # in, x, dt, out proj + 2 MLP layers per block
    for module, dense in pairs:
        # The student starts exactly at the teacher's truncated SVD.
        ref = type(module).from_dense(dense, module.rank)
        torch.testing.assert_close(module.dense_weight(), ref.dense_weight(), atol=1e-5,
                                   rtol=1e-4)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    model = build_model("nano", 2).eval()
    path = save_model(tmp_path / "sub" / "nano.pt", model, ["a", "b"], (64, 96),
                      extra={"epoch": 3})
    assert [p.name for p in path.parent.iterdir()] == ["nano.pt"]  # no temp file left
    loaded, meta = load_model(path)
    assert meta["class_names"] == ["a", "b"] and meta["input_hw"] == [64, 96]
    assert meta["variant"] == "nano" and meta["extra"] == {"epoch": 3}
    rgb, th = inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(rgb, th), model(rgb, th))
    with pytest.raises(ConfigError, match="class names"):
        save_model(tmp_path / "x.pt", model, ["a"], (64, 96))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError, match="not a readable"):
        load_model(bad)
    partial = tmp_path / "partial.pt"
    torch.save({"variant": "nano"}, partial)
    with pytest.raises(ModelFileError, match="lacks checkpoint keys"):
        load_model(partial)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("variant", ["nano", pytest.param("student", marks=pytest.mark.slow)])
def test_onnx_export_matches_torch(variant: str) -> None:
    import onnxruntime as ort

    model = build_model(variant, 3).eval()
    rgb, th = inputs(1)
    buf = io.BytesIO()
    torch.onnx.export(model, (rgb, th), buf, opset_version=17, dynamo=False,
                      input_names=["rgb", "thermal"], output_names=["predictions"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"rgb": rgb.numpy(), "thermal": th.numpy()})[0]
    with torch.no_grad():
        expect = model(rgb, th).numpy()
    assert got.shape == (1, 7, N_ANCHORS)
    np.testing.assert_allclose(got[:, :4], expect[:, :4], atol=1e-3)  # pixels
    np.testing.assert_allclose(got[:, 4:], expect[:, 4:], atol=1e-5)  # probabilities
