"""Pipeline phase V: fusion_mamba / mobilemamba trained like phase A, their *_lr forms
distilled from them like student_sad, only when --only names them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.research import pipeline


def _plan(root: Path) -> dict[str, pipeline.Run]:
    runs = pipeline.plan(root / "data", 30, 12, 6, 10, 32, 3, (256, 320), 6.9, 6.8, root,
                         cache=root / "cache")
    return {r.name: r for r in runs}


def _value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_phase_v_runs_mirror_phases_a_and_b(tmp_path: Path) -> None:
    runs = _plan(tmp_path)
    teacher, sad = runs["teacher"], runs["student_sad"]
    for variant in ("fusion_mamba", "mobilemamba"):
        full, low = runs[variant], runs[f"{variant}_lr"]
        assert full.phase == low.phase == "V"
        assert (full.command, low.command) == ("train", "distill")
        # Same arguments as the teacher's phase-A run except the variant.
        assert _value(full.args, "--variant") == variant
        assert full.args[2:] == teacher.args[2:]
        # Distilled from its own full-rank run with student_sad's schedule and budget.
        assert low.needs == [variant]
        assert _value(low.args, "--teacher") == str(tmp_path / variant / "best.pt")
        for flag in ("--rank-ratio", "--state-ratio", "--epochs", "--finetune-epochs",
                     "--max-time-min", "--warmup-epochs", "--lr", "--batch-size", "--cache"):
            assert _value(low.args, flag) == _value(sad.args, flag), flag
        assert set(low.model_files(tmp_path)) == {"distill", "finetune"}
        assert low.info["variant"] == f"{variant}_lr"


def test_only_accepts_phase_v_names_and_rejects_unknown(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no run named nope") as err:
        pipeline.main(["--out", str(tmp_path / "p"), "--only", "fusion_mamba", "nope"])
    for name in ("fusion_mamba", "fusion_mamba_lr", "mobilemamba", "mobilemamba_lr"):
        assert name in str(err.value)
    assert not (tmp_path / "p").exists()  # refused before any data generation
