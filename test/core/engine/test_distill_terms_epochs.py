"""``dlrmamba distill --terms-epochs N`` through the real command: SAD's structural terms in
the first N epochs only, recorded with the model; a resume with another N is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.engine.trainer import load_train_state

RUN = ["--epochs", "3", "--finetune-epochs", "0", "--batch-size", "4", "--workers", "0",
       "--device", "cpu", "--no-progress", "--val-split", "none", "--rank-ratio", "0.5"]


def _distill(teacher: Path, data: Path, out: Path, *more: str) -> int:
    return cli_main(["distill", "--teacher", str(teacher), "--data", str(data), "--out",
                     str(out), *RUN, *more])


def test_terms_only_in_the_first_epochs_and_resume_keeps_the_value(
        synth_root: Path, nano_teacher: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert _distill(nano_teacher, synth_root, out, "--terms-epochs", "1") == 0
    rows = list(csv.DictReader((out / "distill" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    first, *later = rows
    assert float(first["train_state"]) > 0 and float(first["train_feat"]) > 0
    for r in later:  # task loss only: the structural terms are 0 and the loss is the task's
        assert float(r["train_state"]) == float(r["train_feat"]) == float(r["train_svd"]) == 0
        assert float(r["train_loss"]) == pytest.approx(float(r["train_task"]), rel=1e-4)
    state = load_train_state(out / "distill" / "last.pt")
    assert state["extra"]["terms_epochs"] == 1

    # A run stopped in its first epoch resumes only with the same --terms-epochs.
    part = tmp_path / "part"
    assert _distill(nano_teacher, synth_root, part, "--terms-epochs", "1",
                    "--max-steps", "2") == 0
    capsys.readouterr()
    last = str(part / "distill" / "last.pt")
    assert _distill(nano_teacher, synth_root, part, "--resume", last) == 2
    assert ("that run had --terms-epochs 1, this one unset (every epoch); continue it with the "
            "same value") in capsys.readouterr().err
    assert _distill(nano_teacher, synth_root, part, "--terms-epochs", "1", "--resume",
                    last) == 0
    assert load_train_state(last)["global_step"] == state["global_step"]

    assert _distill(nano_teacher, synth_root, tmp_path / "bad", "--terms-epochs", "0") == 2
    assert "terms_epochs must be >= 1" in capsys.readouterr().err
    assert _distill(nano_teacher, synth_root, tmp_path / "bad", "--method", "rs4d",
                    "--terms-epochs", "2") == 2
    assert "--terms-epochs applies to SAD's structural terms" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before anything was written
