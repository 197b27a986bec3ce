"""research.ablation: mAP50 of a model with its SS2D blocks or a backbone level switched off,
on real evaluations of a nano model over synthetic frames."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlrmamba_core.data.synthetic import SYNTH_CLASSES
from dlrmamba_core.models import build_model
from dlrmamba_core.models.io import load_model, save_model
from dlrmamba_core.research import ablation


def test_zeroed_blocks_change_the_output_only_inside_the_context(nano_teacher: Path) -> None:
    model, _ = load_model(nano_teacher)
    model.eval()
    groups = ablation.ss2d_by_stage(model)
    assert list(groups) == ["stage 1", "stage 2"]  # nano: conv, vss, vss
    x = torch.rand(1, 3, 96, 128), torch.rand(1, 1, 96, 128)
    with torch.no_grad():
        before = model(*x)
        with ablation.zeroed(groups["stage 2"]):
            off = model(*x)
        with ablation.level_zeroed(model, 0):
            p3_off = model(*x)
        after = model(*x)
    assert torch.equal(before, after)  # the hooks are gone
    assert not torch.allclose(before, off) and not torch.allclose(before, p3_off)


def test_ablate_scores_every_part_and_renders_the_changes(nano_teacher: Path, synth_root: Path,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "ablation.md"
    rc = ablation.main([str(nano_teacher), "--data", str(synth_root), "--split", "val",
                        "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    cols = [c.strip() for c in header.strip("|").split("|")][4:]
    assert cols == ["SS2D off, stage 1", "SS2D off, stage 2", "SS2D off, all", "P3 = 0",
                    "P4 = 0", "P5 = 0"]
    row = ablation.ablate(str(nano_teacher), str(synth_root), split="val")
    assert set(row["mAP50"]) == {"full", "SS2D off, stage 1", "SS2D off, stage 2",
                                 "SS2D off, all", "P3 = 0", "P4 = 0", "P5 = 0"}
    assert all(0.0 <= v <= 100.0 for v in row["mAP50"].values())


def test_a_model_without_ss2d_gets_only_the_level_columns(synth_root: Path,
                                                          tmp_path: Path) -> None:
    torch.manual_seed(0)
    cnn = save_model(tmp_path / "cnn.pt", build_model("cnn", len(SYNTH_CLASSES)),
                     list(SYNTH_CLASSES), (96, 128))
    row = ablation.ablate(str(cnn), str(synth_root), split="val", limit=2)
    assert set(row["mAP50"]) == {"full", "P3 = 0", "P4 = 0", "P5 = 0"}
    text = ablation.render([row], "d", "val")
    assert "| `cnn.pt` | cnn | 96x128 |" in text


def test_a_missing_model_file_is_a_clear_error(synth_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.errors import ModelFileError

    with pytest.raises(ModelFileError, match="no such model file"):
        ablation.ablate(str(tmp_path / "none.onnx"), str(synth_root))
    assert ablation.main([str(tmp_path / "none.onnx"), "--data", str(synth_root)]) == 2
    assert "none.onnx: no such model file" in capsys.readouterr().err


def test_rows_of_files_with_one_name_are_told_apart_by_their_folders() -> None:
    from dlrmamba_core.research import short_names

    paths = ["out/s_task/finetune/best.pt", "out/s_task_seed2/finetune/best.pt",
             "models/dlrmamba_teacher.onnx"]
    assert short_names(paths) == {paths[0]: "s_task/finetune/best.pt",
                                  paths[1]: "s_task_seed2/finetune/best.pt",
                                  paths[2]: "dlrmamba_teacher.onnx"}
    assert short_names(["a/x.pt", "b/x.pt"]) == {"a/x.pt": "a/x.pt", "b/x.pt": "b/x.pt"}
