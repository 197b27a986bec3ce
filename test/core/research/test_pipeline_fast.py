"""Phase S of the pipeline and the fast teacher/student pairs it trains ([speed])."""

from __future__ import annotations

from pathlib import Path

import torch

from dlrmamba_core.models import build_model, get_config
from dlrmamba_core.models.config import FAST_PAIRS
from dlrmamba_core.models.student import student_from_teacher
from dlrmamba_core.research import pipeline


def test_phase_s_runs_each_fast_teacher_then_its_student(tmp_path: Path) -> None:
    runs = pipeline.plan(tmp_path / "data", 2, 2, 1, 2, 4, 0, (96, 128), 1.0, 1.0, tmp_path)
    by_name = {r.name: r for r in runs}
    for teacher, student in FAST_PAIRS:
        t, s = by_name[teacher], by_name[student]
        assert (t.phase, t.command, s.phase, s.command) == ("S", "train", "S", "distill")
        assert t.args[t.args.index("--variant") + 1] == teacher
        assert s.needs == [teacher]
        assert s.args[s.args.index("--teacher") + 1] == str(tmp_path / teacher / "best.pt")
        assert "--finetune-epochs" in s.args  # SVD init -> SAD -> fine-tune, like student_sad
        # Same time budget as phase A's teacher.
        a = by_name["teacher"]
        assert (t.args[t.args.index("--max-time-min") + 1]
                == a.args[a.args.index("--max-time-min") + 1])


def test_fast_students_are_their_teachers_svd_students() -> None:
    """``student_from_teacher`` of each fast teacher gives exactly the registered student
    (name, config, parameter shapes), so a distilled checkpoint loads as that variant."""
    for teacher, student in FAST_PAIRS:
        torch.manual_seed(0)
        t = build_model(teacher, 3)
        s = student_from_teacher(t)
        assert s.cfg == get_config(student, 3)
        ref = build_model(student, 3).state_dict()
        assert {k: v.shape for k, v in s.state_dict().items()} == {
            k: v.shape for k, v in ref.items()}
        assert get_config(teacher, 3).scan_dirs == (2, 2, 2)
        n_t = sum(p.numel() for p in t.parameters())
        n_s = sum(p.numel() for p in s.parameters())
        assert n_s < 0.4 * n_t
