"""Structure-Aware Distillation: state alignment, zero loss for an exact student, each term
trains, weight 0 removes a term. Real nano teacher, real student, real DistillTask."""

from __future__ import annotations

import pytest
import torch

from dlrmamba_core.engine.distill import DistillTask, DistillWeights
from dlrmamba_core.engine.trainer import DetectionTask
from dlrmamba_core.losses.distill import scaled_mse
from dlrmamba_core.models import build_model, list_variants, student_from_teacher
from dlrmamba_core.models.distill import capture
from dlrmamba_core.models.student import kept_states

H, W = 64, 96
TERMS = ("svd", "state", "feat")


def _teacher(seed: int = 0) -> torch.nn.Module:
    """A nano teacher with its weights moved off the init (so the states' gains differ)."""
    torch.manual_seed(seed)
    t = build_model("nano", 2)
    with torch.no_grad():
        for p in t.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return t.eval()


def _moved_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A nano teacher and its SVD student at rank 0.5, moved off the teacher (every structural
    term > 0)."""
    teacher = _teacher()
    student = student_from_teacher(teacher, rank_ratio=0.5, state_ratio=0.5)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return teacher, student


def _batch(b: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    targets = torch.tensor([[0, 0, 10.0, 8.0, 40.0, 30.0], [1, 1, 50.0, 20.0, 90.0, 60.0]])
    return torch.rand(b, 3, H, W, generator=g), torch.rand(b, 1, H, W, generator=g), targets


def test_state_targets_are_the_kept_states_of_each_direction() -> None:
    """At full rank and half the states, the first SS2D block of the student computes
    exactly the teacher's kept states (a diagonal SSM's states do not interact), so L_state of
    that block is 0 -- although every direction keeps a different subset."""
    teacher = _teacher()
    student = student_from_teacher(teacher, rank_ratio=1.0, state_ratio=0.5).eval()
    task = DistillTask(student, teacher, DistillWeights())
    first = task.sad.block_names[0]
    kept = kept_states(teacher.get_submodule(first), student.get_submodule(first).d_state)
    assert len({tuple(row.tolist()) for row in kept}) > 1, "directions keep the same states"
    rgb, th, _ = _batch()
    with torch.no_grad(), capture(teacher) as t_rec, capture(student) as s_rec:
        teacher(rgb, th)
        student(rgb, th)
    s_states, t_states = s_rec[first]["states"], t_rec[first]["states"]
    assert s_states.shape[2] * 2 == t_states.shape[2]
    target = task.sad.state_proj[0](t_states)
    torch.testing.assert_close(target, s_states, atol=1e-4, rtol=1e-3)
    assert float(scaled_mse(s_states, target.detach())) < 1e-6


def test_student_equal_to_teacher_has_zero_distillation_losses() -> None:
    teacher = _teacher()
    student = student_from_teacher(teacher, rank_ratio=1.0, state_ratio=1.0).eval()
    task = DistillTask(student, teacher, DistillWeights())
    rgb, th, _ = _batch()
    with torch.no_grad():
        _, losses = task.sad(student, teacher, rgb, th)
    for name in TERMS:
        assert float(losses[name]) < 1e-6, (name, float(losses[name]))


@pytest.mark.parametrize("term", TERMS)
def test_each_term_is_finite_has_gradients_and_falls(term: str) -> None:
    teacher = _teacher()
    student = student_from_teacher(teacher, rank_ratio=0.5, state_ratio=0.5)
    with torch.no_grad():  # off the SVD init, so L_SVD has something to pull back
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    weights = DistillWeights(task=0.0, svd=0.0, state=0.0, feat=0.0)
    setattr(weights, term, 1.0)
    task = DistillTask(student, teacher, weights).train()
    assert not teacher.training
    opt = torch.optim.Adam([p for p in task.parameters() if p.requires_grad], lr=2e-3)
    rgb, th, targets = _batch()
    history = []
    for step in range(6):
        loss, parts = task(rgb, th, targets)
        assert torch.isfinite(loss) and float(parts[term]) > 0
        history.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grads = [p.grad for p in student.parameters() if p.grad is not None]
            assert grads and any(float(g.abs().sum()) > 0 for g in grads), "no student grads"
            assert all(p.grad is None for p in teacher.parameters())
        opt.step()
    assert history[-1] < 0.9 * history[0], history


def test_weight_zero_removes_its_term() -> None:
    teacher, student = _moved_pair()
    rgb, th, targets = _batch()
    paper = DistillWeights()
    task = DistillTask(student, teacher, paper).train()
    loss, parts = task(rgb, th, targets)
    for name in ("task", *TERMS):
        assert float(parts[name]) > 0, name
    expect = sum(getattr(paper, k) * parts[k] for k in ("task", *TERMS))
    torch.testing.assert_close(loss.detach(), expect)
    for name in TERMS:
        task.weights = DistillWeights(**{**vars(paper), name: 0.0})
        loss_off, parts_off = task(rgb, th, targets)
        assert float(parts_off[name]) == 0.0
        torch.testing.assert_close(loss_off.detach(), loss.detach() - getattr(paper, name)
                                   * parts[name], atol=1e-5, rtol=1e-5)
    # All structural terms off: the teacher is not even run, and the loss is the task loss.
    calls: list[int] = []
    handle = teacher.register_forward_hook(lambda *_: calls.append(1))
    task.weights = DistillWeights(task=1.0, svd=0.0, state=0.0, feat=0.0)
    loss_task, _ = task(rgb, th, targets)
    handle.remove()
    assert not calls
    plain, _ = DetectionTask(student).train()(rgb, th, targets)
    torch.testing.assert_close(loss_task, plain)


def test_terms_epochs_switch_the_structural_terms_off_after_n_epochs() -> None:
    """terms_epochs=2: epochs 0 and 1 run the teacher and all terms; from epoch 2 on a step is
    a task-only step (the teacher does not run, the loss is the detection loss)."""
    from dlrmamba_core.errors import ConfigError

    teacher, student = _moved_pair()
    rgb, th, targets = _batch()
    task = DistillTask(student, teacher, DistillWeights(), terms_epochs=2).train()
    calls: list[int] = []
    handle = teacher.register_forward_hook(lambda *_: calls.append(1))
    for epoch, on in ((0, True), (1, True), (2, False), (5, False), (1, True)):
        task.set_epoch(epoch)
        calls.clear()
        loss, parts = task(rgb, th, targets)
        assert bool(calls) is on, epoch
        assert all((float(parts[k]) > 0) is on for k in TERMS), epoch
        if not on:
            plain, _ = DetectionTask(student).train()(rgb, th, targets)
            torch.testing.assert_close(loss, plain)
    handle.remove()
    every = DistillTask(student, teacher, DistillWeights())
    every.set_epoch(100)
    assert every.terms_on  # unset: every epoch
    with pytest.raises(ConfigError, match="SAD's structural terms only"):
        DistillTask(student, teacher, DistillWeights(), method="rs4d", terms_epochs=1)


def test_teacher_frozen_in_eval_and_not_trained() -> None:
    teacher = _teacher()
    student = student_from_teacher(teacher, 0.5, 0.5)
    task = DistillTask(student, teacher, DistillWeights()).train()
    assert student.training and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    trained = {id(p) for p in task.parameters() if p.requires_grad}
    assert trained >= {id(p) for p in student.parameters()}
    assert trained.isdisjoint(id(p) for p in teacher.parameters())


def _teacher_variants() -> list[str]:
    """Full-rank variants with SS2D blocks (VSS stages, or the Fusion-Mamba / MRFFI archs)."""
    from dlrmamba_core.models.config import get_config

    cfgs = {v: get_config(v, 1) for v in list_variants()}
    return [v for v, c in cfgs.items()
            if c.rank_ratio is None and (c.arch != "dlrmamba" or "vss" in c.stage_types)]


@pytest.mark.parametrize("variant", _teacher_variants())
def test_every_registered_teacher_distills_to_an_exact_student(variant: str) -> None:
    """Across the registry (2- and 4-direction scans, Fusion-Mamba, MobileMamba): the SAD
    losses of a full-rank, full-state student are 0, and at the default ratios L_state and
    L_feat are positive with gradients."""
    torch.manual_seed(0)
    teacher = build_model(variant, 2).eval()
    rgb, th, targets = _batch()
    exact = student_from_teacher(teacher, 1.0, 1.0).eval()
    task = DistillTask(exact, teacher, DistillWeights())
    assert task.sad.block_names and task.sad.factor_names
    with torch.no_grad():
        _, losses = task.sad(exact, teacher, rgb, th)
    assert max(float(v) for v in losses.values()) < 1e-5, losses
    student = student_from_teacher(teacher)
    loss, parts = DistillTask(student, teacher, DistillWeights()).train()(rgb, th, targets)
    assert float(parts["state"]) > 0 and float(parts["feat"]) > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
