"""Checks shared by the fusion_mamba and mobilemamba variant tests (imported by name: the test
dirs are not packages). Each takes a registered variant name and field overrides that shrink
it (same structure, narrower) so the tests run in seconds on 2 CPU cores."""

from __future__ import annotations

import io
import json
from pathlib import Path
import subprocess
import sys
from typing import Any
import warnings

import numpy as np
import torch

from dlrmamba_core.losses import DetectionLoss
from dlrmamba_core.models import build_model, student_from_teacher

H, W = 64, 96
N_ANCHORS = sum((H // s) * (W // s) for s in (8, 16, 32))


def inputs(b: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, H, W, generator=g), torch.rand(b, 1, H, W, generator=g)


def perturbed(variant: str, nc: int, tiny: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """``variant`` with every weight nudged off its init (zero-init layers included)."""
    torch.manual_seed(seed)
    model = build_model(variant, nc, **tiny)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def check_forward_backward(variant: str, tiny: dict[str, Any]) -> torch.nn.Module:
    """Train-mode outputs, detection loss, a gradient for every parameter, eval-mode decode."""
    torch.manual_seed(0)
    model = build_model(variant, 3, **tiny).train()
    rgb, th = inputs()
    outs = model(rgb, th)
    assert [tuple(o.shape) for o in outs] == [
        (2, 4 * model.reg_max + 3, H // s, W // s) for s in model.strides
    ]
    targets = torch.tensor([[0, 1, 8.0, 8.0, 40.0, 30.0], [1, 2, 50.0, 20.0, 90.0, 60.0]])
    loss, _ = DetectionLoss(model)(outs, targets)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        pred = model(rgb, th)
    assert pred.shape == (2, 4 + 3, N_ANCHORS) and torch.isfinite(pred).all()
    return model


def check_thermal_is_used(model: torch.nn.Module) -> None:
    """Changing only the thermal image changes the predictions (the thermal path is wired)."""
    model.eval()
    rgb, th = inputs(1)
    with torch.no_grad():
        a = model(rgb, th)
        b = model(rgb, torch.rand_like(th))
    assert (a - b).abs().max() > 1e-6


def check_full_rank_reproduces_teacher(variant: str, lr_variant: str,
                                       tiny: dict[str, Any]) -> None:
    """SVD init at rank ratio 1 and all states kept computes the teacher's function; at the
    registered ratios it gives the registered low-rank config and a different function."""
    from dataclasses import replace

    from dlrmamba_core.models.config import STUDENT_RANK_RATIO, STUDENT_STATE_RATIO

    teacher = perturbed(variant, 3, tiny).eval()
    student = student_from_teacher(teacher, rank_ratio=1.0, state_ratio=1.0).eval()
    assert student.cfg.variant == lr_variant and student.cfg.rank_ratio == 1.0
    assert type(student.backbone) is type(teacher.backbone)
    lowrank = [n for n, m in student.named_modules() if type(m).__name__ == "LowRankSS2D"]
    assert lowrank, "the low-rank model has no Low-Rank SS2D"
    rgb, th = inputs()
    with torch.no_grad():
        f_t = teacher.forward_features(rgb, th)
        f_s = student.forward_features(rgb, th)
        for a, b in zip(f_t, f_s, strict=True):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3)
        torch.testing.assert_close(student(rgb, th), teacher(rgb, th), atol=1e-3, rtol=1e-3)
    small = student_from_teacher(teacher, STUDENT_RANK_RATIO, STUDENT_STATE_RATIO).eval()
    expect = replace(build_model(lr_variant, 3, **tiny).cfg, variant=lr_variant)
    assert small.cfg == expect
    with torch.no_grad():
        diff = max(float((a - b).abs().max())
                   for a, b in zip(small.forward_features(rgb, th), f_t, strict=True))
    assert diff > 1e-4


class _Logits(torch.nn.Module):
    """Eval-mode raw head outputs (box DFL logits + class logits), levels flattened and
    concatenated: (B, 4 * reg_max + nc, A)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor) -> torch.Tensor:
        outs = self.model.head(self.model.forward_features(rgb, thermal))
        return torch.cat([o.flatten(2) for o in outs], 2)


def check_onnx_logit_parity(variant: str, tiny: dict[str, Any], atol: float = 1e-4) -> None:
    """onnxruntime vs torch on the raw logits, max abs difference <= ``atol``."""
    import onnxruntime as ort

    model = perturbed(variant, 3, tiny).eval()
    wrapped = _Logits(model).eval()
    rgb, th = inputs(1, seed=3)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (rgb, th), buf, opset_version=17, dynamo=False,
                          input_names=["rgb", "thermal"], output_names=["logits"])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["rgb", "thermal"]
    got = sess.run(None, {"rgb": rgb.numpy(), "thermal": th.numpy()})[0]
    with torch.no_grad():
        expect = wrapped(rgb, th).numpy()
    assert got.shape == expect.shape == (1, 4 * model.reg_max + 3, N_ANCHORS)
    assert float(np.abs(expect).max()) > 0.1  # not a trivially tiny output
    np.testing.assert_allclose(got, expect, atol=atol, rtol=0)


_BLOCKED_RUN = r"""
import importlib.abc, json, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import of {name})")
        return None

sys.meta_path.insert(0, BlockTorch())
from dlrmamba_core.runtime import Detector
from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

s = generate_frame(SynthConfig(), 11)
det = Detector(sys.argv[1], threads=2, require_card=True)
d = det.detect(s.rgb, s.thermal, s.homography)
print(json.dumps({"n": len(d), "boxes": d.boxes.tolist(), "classes": d.class_ids.tolist(),
                  "variant": det.info.variant, "torch_loaded": "torch" in sys.modules}))
"""


def check_export_and_torch_free_runtime(variant: str, tmp_path: Path) -> None:
    """``deploy.export.export_onnx`` of a checkpoint (metadata, card, parity), then the
    runtime Detector in a process where torch cannot be imported gives the same detections
    as in this process."""
    import onnx

    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.runtime import Detector

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/core
    try:
        from model_helpers import make_checkpoint
    finally:
        sys.path.pop(0)
    ckpt = make_checkpoint(tmp_path / f"{variant}.pt", variant)
    res = export_onnx(ckpt, tmp_path / f"{variant}.onnx")
    assert res.parity is not None and res.parity.ok and res.parity.max_abs_diff_scores < 1e-4
    model = onnx.load(str(res.onnx_path))
    assert [i.name for i in model.graph.input] == ["rgb", "thermal"]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["dlrmamba.variant"] == variant
    card = json.loads(res.card_path.read_text())
    assert card["variant"] == variant
    proc = subprocess.run([sys.executable, "-c", _BLOCKED_RUN, str(res.onnx_path)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False and out["variant"] == variant
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    s = generate_frame(SynthConfig(), 11)
    d = Detector(res.onnx_path, threads=2).detect(s.rgb, s.thermal, s.homography)
    assert out["n"] == len(d) > 0
    assert out["classes"] == d.class_ids.tolist()
    np.testing.assert_allclose(np.asarray(out["boxes"]), d.boxes, atol=1e-3)


def check_overfits(variant: str, tiny: dict[str, Any], iterations: int, lr: float = 1e-2,
                   min_map50: float = 0.9) -> None:
    """``variant`` memorises 8 SYNTHETIC crops (as test_overfit does for ``nano``)."""
    from test_overfit import map50, synthetic_crops

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES

    nc = len(SYNTH_CLASSES)
    torch.manual_seed(0)
    rgb, thermal, targets = synthetic_crops(8)
    model = build_model(variant, nc, **tiny).train()
    crit = DetectionLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            pred = model(rgb, thermal).numpy()
        model.train()
        return map50(pred, targets.numpy(), len(rgb), nc)

    before = evaluate()
    for _ in range(iterations):
        loss, _ = crit(model(rgb, thermal), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate()
    assert before < 0.3
    assert after >= min_map50, f"mAP50 {after:.3f} after {iterations} steps (before {before:.3f})"


def check_distill_task(variant: str, tiny: dict[str, Any]) -> None:
    """Structure-Aware Distillation runs on the variant: every SS2D block of the low-rank
    model (DSSF / WTE-Mamba ones included) is paired with the teacher's, the state and
    feature terms are finite and non-zero, and the student's SS2D blocks get gradients."""
    from dlrmamba_core.engine.distill import DistillTask, DistillWeights

    teacher = perturbed(variant, 3, tiny).eval()
    student = student_from_teacher(teacher, rank_ratio=0.5, state_ratio=0.5)
    task = DistillTask(student, teacher, DistillWeights()).train()
    rgb, th = inputs()
    targets = torch.tensor([[0, 1, 8.0, 8.0, 40.0, 30.0], [1, 2, 50.0, 20.0, 90.0, 60.0]])
    loss, parts = task(rgb, th, targets)
    assert torch.isfinite(loss)
    for term in ("svd", "state", "feat"):
        assert torch.isfinite(torch.as_tensor(parts[term])), term
    assert float(parts["state"]) > 0 and float(parts["feat"]) > 0
    loss.backward()
    ssm = [n for n, m in student.named_modules() if type(m).__name__ == "LowRankSS2D"]
    grads = dict(student.named_parameters())
    for name in ssm:
        g = grads[f"{name}.A_log"].grad
        assert g is not None and float(g.abs().sum()) > 0, f"no gradient into {name}"
