"""RS4D adaptive noise + masking distillation: the mask and the corruption, the exact zero
case, gradients (student and projections, never the teacher), the adaptive rule's direction,
a few steps reduce the loss, channel-mismatched pairs. Real nano / fusion_mamba models."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dlrmamba_core.engine.config import RS4DConfig
from dlrmamba_core.engine.distill import DistillTask, DistillWeights
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.losses.rs4d import (
    AdaptiveMaskedDistillation,
    corrupt,
    frozen_norm_stats,
    patch_mask,
    pyramid,
)
from dlrmamba_core.models import build_model, student_from_teacher

H, W = 64, 96
CLEAN = RS4DConfig(mask_min=0.0, mask_max=0.0, noise_max=0.0, start=0.0, adapt_rate=0.0)
RS4D_ONLY = DistillWeights(task=0.0, rs4d=1.0)


def _calibrated(variant: str, seed: int = 0) -> nn.Module:
    """A teacher whose batch-norm running statistics describe the input distribution (as a
    trained teacher's do; an untrained one's defaults 0 / 1 shrink P3 to ~1e-6 variance)."""
    torch.manual_seed(seed)
    model = build_model(variant, 2)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, H, W, generator=g), torch.rand(4, 1, H, W, generator=g))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def _batch(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    targets = torch.tensor([[0, 0, 10.0, 8.0, 40.0, 30.0], [1, 1, 50.0, 20.0, 90.0, 60.0]])
    return torch.rand(b, 3, H, W, generator=g), torch.rand(b, 1, H, W, generator=g), targets


def test_patch_mask_hides_an_exact_share_of_whole_squares() -> None:
    g = torch.Generator().manual_seed(0)
    mask = patch_mask(3, H, W, 32, 0.5, generator=g)  # 2 x 3 = 6 squares, 3 masked
    assert mask.shape == (3, 1, H, W)
    cells = mask[:, 0, ::32, ::32]  # (B, 2, 3) one pixel per square
    assert cells.flatten(1).sum(1).tolist() == [3.0, 3.0, 3.0]
    expanded = cells.repeat_interleave(32, 1).repeat_interleave(32, 2)
    assert torch.equal(mask[:, 0], expanded)  # constant inside each square
    assert len({tuple(c.flatten().tolist()) for c in cells}) > 1  # images differ
    assert not patch_mask(2, H, W, 16, 0.0).any()
    with pytest.raises(ConfigError, match="does not divide"):
        patch_mask(1, H, W, 40, 0.5)


def test_corrupt_changes_only_masked_pixels() -> None:
    rgb, thermal, _ = _batch()
    mask = patch_mask(2, H, W, 16, 0.5, generator=torch.Generator().manual_seed(0))
    keep = mask.expand_as(rgb) == 0
    flat = corrupt(rgb, mask, 0.0)
    assert torch.equal(flat[keep], rgb[keep])
    mean = rgb.mean(dim=(2, 3), keepdim=True).expand_as(rgb)
    torch.testing.assert_close(flat[~keep], mean[~keep])
    noisy = corrupt(rgb, mask, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[keep], rgb[keep])
    assert float((noisy[~keep] - mean[~keep]).std()) > 0.1  # ~ the image std (0.29)
    assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0
    blank = torch.zeros_like(thermal)  # a blanked modality stays blank
    assert not corrupt(blank, mask, 1.0).any()
    assert torch.equal(corrupt(rgb, torch.zeros_like(mask), 1.0), rgb)


@pytest.mark.parametrize("features", ["backbone", "neck"])
def test_student_equal_to_teacher_reconstructs_exactly_without_masking(features: str) -> None:
    """The exact zero case: student = a copy of the teacher, both in eval mode (the same
    norm statistics; in train mode the student normalises with batch statistics and the
    error is small but not 0), no masking, no noise, identity projections (equal widths)."""
    teacher = _calibrated("nano")
    student = copy.deepcopy(teacher).eval()
    loss_fn = AdaptiveMaskedDistillation(student, teacher,
                                         RS4DConfig(**{**vars(CLEAN), "features": features}))
    rgb, thermal, _ = _batch()
    with torch.no_grad():
        parts = loss_fn(student, teacher, rgb, thermal)
    assert float(parts["mask_ratio"]) == 0.0 and float(parts["noise"]) == 0.0
    assert float(parts["rs4d"]) < 1e-10, parts
    # With masking the same student is no longer exact: the loss measures the holes.
    masked = AdaptiveMaskedDistillation(student, teacher, RS4DConfig(start=1.0, adapt_rate=0))
    with torch.no_grad():
        assert float(masked(student, teacher, rgb, thermal)["rs4d"]) > 0.05


def test_loss_is_finite_and_trains_student_and_projections_not_teacher() -> None:
    teacher = _calibrated("nano")
    student = student_from_teacher(teacher)
    task = DistillTask(student, teacher, DistillWeights(), method="rs4d").train()
    assert student.training and not teacher.training
    assert not hasattr(task, "sad")
    rgb, thermal, targets = _batch()
    loss, parts = task(rgb, thermal, targets)
    assert torch.isfinite(loss) and float(parts["rs4d"]) > 0 and float(parts["task"]) > 0
    assert set(parts) == {"task", "rs4d", "rs4d_p3", "rs4d_p4", "rs4d_p5", "mask_ratio",
                          "noise"}
    torch.testing.assert_close(loss.detach(), parts["task"] + parts["rs4d"])
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    for proj in task.rs4d.proj:
        assert float(proj.conv.weight.grad.abs().sum()) > 0
    backbone = [p.grad for p in student.backbone.parameters() if p.grad is not None]
    assert backbone and any(float(g.abs().sum()) > 0 for g in backbone)
    trained = {id(p) for p in task.parameters() if p.requires_grad}
    assert trained.isdisjoint(id(p) for p in teacher.parameters())


def test_masked_pass_leaves_the_students_norm_statistics_alone() -> None:
    """Only the clean pass may update running statistics: the student is run on clean
    images, so they must describe clean images."""
    teacher = _calibrated("nano")
    student = student_from_teacher(teacher).train()
    loss_fn = AdaptiveMaskedDistillation(student, teacher, RS4DConfig(start=1.0))
    before = {k: v.clone() for k, v in student.state_dict().items() if "running" in k
              or "num_batches" in k}
    rgb, thermal, _ = _batch()
    loss_fn(student, teacher, rgb, thermal)["rs4d"].backward()
    after = student.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    with frozen_norm_stats(student):
        pass
    student(rgb, thermal)  # the context restored tracking: a normal pass updates them
    assert not all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())


def test_difficulty_rises_when_the_error_falls_below_target_and_falls_above() -> None:
    teacher = _calibrated("nano")
    cfg = RS4DConfig(mask_min=0.1, mask_max=0.6, noise_max=1.0, start=0.5, target=0.4,
                     adapt_rate=0.05)
    loss_fn = AdaptiveMaskedDistillation(teacher, teacher, cfg)
    ratio0, noise0 = loss_fn.mask_ratio(), loss_fn.noise_scale()
    assert (ratio0, noise0) == pytest.approx((0.35, 0.5))
    for _ in range(3):
        loss_fn.adapt(torch.tensor(0.2))  # half the target: +0.5 * rate per step
    assert float(loss_fn.difficulty) == pytest.approx(0.575, abs=1e-6)
    assert loss_fn.mask_ratio() > ratio0 and loss_fn.noise_scale() > noise0
    for _ in range(10):
        loss_fn.adapt(torch.tensor(5.0))  # far above: clipped to -rate per step
    assert float(loss_fn.difficulty) == pytest.approx(0.075, abs=1e-6)
    for _ in range(10):
        loss_fn.adapt(torch.tensor(5.0))
    assert float(loss_fn.difficulty) == 0.0  # clamped: mask_min, no noise
    assert (loss_fn.mask_ratio(), loss_fn.noise_scale()) == pytest.approx((0.1, 0.0))
    loss_fn.adapt(torch.tensor(0.4))  # on target: no change
    assert float(loss_fn.difficulty) == 0.0
    # adapt_rate 0 keeps the difficulty fixed; eval mode does not adapt.
    fixed = AdaptiveMaskedDistillation(teacher, teacher, RS4DConfig(adapt_rate=0.0))
    fixed.adapt(torch.tensor(0.0))
    assert float(fixed.difficulty) == 0.5
    rgb, thermal, _ = _batch()
    with torch.no_grad():
        loss_fn.eval()(teacher, teacher, rgb, thermal)
    assert float(loss_fn.difficulty) == 0.0


def test_forward_in_train_mode_adapts_from_its_own_error() -> None:
    """End to end: the teacher as its own student (error well below a generous target) gets
    harder masks step after step; an unreachable target makes them easier at full rate."""
    teacher = _calibrated("nano")
    rgb, thermal, _ = _batch()
    for target, low, high in ((10.0, 0.2, 0.3), (1e-4, -0.3, -0.3)):
        cfg = RS4DConfig(patch=8, target=target, adapt_rate=0.1)  # 96 squares: fine ratios
        loss_fn = AdaptiveMaskedDistillation(teacher, teacher, cfg).train()
        ratios = []
        with torch.no_grad():
            for _ in range(3):
                ratios.append(float(loss_fn(teacher, teacher, rgb, thermal)["mask_ratio"]))
        moved = float(loss_fn.difficulty) - 0.5
        assert low - 1e-6 <= moved <= high + 1e-6, moved
        assert (ratios[-1] - ratios[0]) * moved > 0, ratios


def test_a_few_steps_reduce_the_loss() -> None:
    """Fixed difficulty and the same mask each step (reseeded): Adam on the student and the
    projections lowers the reconstruction error."""
    teacher = _calibrated("nano")
    student = student_from_teacher(teacher)
    cfg = RS4DConfig(start=0.5, adapt_rate=0.0)
    task = DistillTask(student, teacher, RS4D_ONLY, method="rs4d", rs4d=cfg).train()
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=2e-3)
    rgb, thermal, targets = _batch()
    history = []
    for _ in range(8):
        torch.manual_seed(5)
        loss, parts = task(rgb, thermal, targets)
        assert float(parts["task"]) == 0.0  # weight 0: no clean pass
        history.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert history[-1] < 0.8 * history[0], history


@pytest.mark.parametrize(("teacher_variant", "student_variant"),
                         [("fusion_mamba", "nano"), ("nano", "fusion_mamba_lr")])
def test_channel_mismatched_pairs_work_through_the_projections(teacher_variant: str,
                                                               student_variant: str) -> None:
    """A fusion_mamba teacher (two streams, widths 32/96/192) and a nano student (one stream,
    32/48/64), and the reverse direction: the 1x1 projections adapt the channels and SAD,
    which needs matching blocks, refuses the pair."""
    teacher = _calibrated(teacher_variant)
    torch.manual_seed(1)
    student = build_model(student_variant, 2)
    rgb, thermal, targets = _batch()
    s_ch = [f.shape[1] for f in pyramid(student.eval(), rgb, thermal, "backbone")]
    t_ch = [f.shape[1] for f in pyramid(teacher, rgb, thermal, "backbone")]
    assert s_ch != t_ch
    task = DistillTask(student, teacher, DistillWeights(), method="rs4d").train()
    assert [tuple(p.conv.weight.shape[:2]) for p in task.rs4d.proj] == list(zip(t_ch, s_ch,
                                                                                strict=True))
    loss, parts = task(rgb, thermal, targets)
    assert torch.isfinite(loss) and float(parts["rs4d"]) > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(float(p.conv.weight.grad.abs().sum()) > 0 for p in task.rs4d.proj)
    with pytest.raises(ConfigError):
        DistillTask(student, teacher, DistillWeights(), method="sad")


def test_state_round_trips_through_weights_only_checkpoints(tmp_path: object) -> None:
    """The difficulty and the projections are task state: saved, restored, resumed."""
    import pathlib

    teacher = _calibrated("nano")
    task = DistillTask(student_from_teacher(teacher), teacher, DistillWeights(),
                       method="rs4d").train()
    task.rs4d.adapt(torch.tensor(0.0))
    with torch.no_grad():
        task.rs4d.proj[2].conv.weight.mul_(0.5)
    path = pathlib.Path(str(tmp_path)) / "state.pt"
    torch.save(task.state_dict(), path)
    state = torch.load(path, weights_only=True)
    assert "rs4d.difficulty" in state and "rs4d.proj.0.conv.weight" in state
    fresh = DistillTask(student_from_teacher(teacher), teacher, DistillWeights(),
                        method="rs4d")
    assert float(fresh.rs4d.difficulty) == 0.5
    fresh.load_state_dict(state)
    assert float(fresh.rs4d.difficulty) == pytest.approx(0.51)
    assert torch.equal(fresh.rs4d.proj[2].conv.weight, task.rs4d.proj[2].conv.weight)
    sad = DistillTask(student_from_teacher(teacher), teacher, DistillWeights())
    with pytest.raises(RuntimeError, match="rs4d"):  # the trainer turns this into ConfigError
        sad.load_state_dict(state)


def test_config_parse_format_and_checks() -> None:
    cfg = RS4DConfig.parse("mask_max=0.7, target=0.3,patch=16,features=neck")
    assert (cfg.mask_max, cfg.target, cfg.patch, cfg.features) == (0.7, 0.3, 16, "neck")
    assert RS4DConfig.parse(cfg.format()) == cfg
    for text, match in (("speed=1", "bad item"), ("patch=1.5", "patch"),
                        ("features=head", "features")):
        with pytest.raises(ConfigError, match=match):
            RS4DConfig.parse(text)
    for bad, match in ((RS4DConfig(mask_min=0.7, mask_max=0.6), "mask_min"),
                       (RS4DConfig(mask_max=1.0), "mask_max"), (RS4DConfig(target=0), "target"),
                       (RS4DConfig(start=2), "start"), (RS4DConfig(patch=0), "patch")):
        with pytest.raises(ConfigError, match=match):
            bad.validate()
