"""``dlrmamba distill --method rs4d`` through the real command: a 2-epoch run writes a model
``dlrmamba eval`` reads and a state that resumes (difficulty and projections included); a
fusion_mamba teacher distills into a ``--student`` of another architecture; wrong
combinations are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.engine.trainer import load_train_state

INPUT_HW = (96, 128)  # conftest.INPUT_HW (the fixtures' input size)

RUN = ["--epochs", "2", "--finetune-epochs", "0", "--batch-size", "4", "--workers", "0",
       "--device", "cpu", "--no-progress", "--val-split", "none"]


def _distill(teacher: Path, data: Path, out: Path, *more: str) -> int:
    return cli_main(["distill", "--method", "rs4d", "--teacher", str(teacher), "--data",
                     str(data), "--out", str(out), *RUN, *more])


def test_two_epoch_rs4d_run_writes_a_model_eval_reads_and_resumes(
        synth_root: Path, nano_teacher: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _distill(nano_teacher, synth_root, out, "--rs4d", "patch=16,adapt_rate=0.05") == 0
    state = load_train_state(out / "distill" / "last.pt")
    assert state["global_step"] == 6 and state["extra"]["distill_method"] == "rs4d"
    assert state["extra"]["rs4d"]["patch"] == 16
    task = state["task"]
    assert "rs4d.difficulty" in task and not any(k.startswith("sad.") for k in task)
    assert float(task["rs4d.difficulty"]) != 0.5  # the rule moved it
    header = (out / "distill" / "metrics.csv").read_text().splitlines()[0]
    for col in ("train_rs4d", "train_rs4d_p3", "train_mask_ratio", "train_noise",
                "train_task"):
        assert col in header.split(","), col
    teacher = torch.load(nano_teacher, weights_only=True)["state_dict"]
    assert all(torch.equal(task[f"teacher.{k}"], v) for k, v in teacher.items())

    ev = tmp_path / "eval"
    assert cli_main(["eval", str(out / "distill" / "best.pt"), "--data", str(synth_root),
                     "--split", "test", "--out", str(ev), "--no-progress"]) == 0
    assert (ev / "metrics.json").is_file()

    # Stopped after 2 steps, resumed: the same state as the straight run above.
    part = tmp_path / "part"
    args = ("--rs4d", "patch=16,adapt_rate=0.05")
    assert _distill(nano_teacher, synth_root, part, *args, "--max-steps", "2") == 0
    mid = load_train_state(part / "distill" / "last.pt")
    assert mid["global_step"] == 2 and float(mid["task"]["rs4d.difficulty"]) != 0.5
    assert _distill(nano_teacher, synth_root, part, *args, "--resume",
                    str(part / "distill" / "last.pt")) == 0
    end = load_train_state(part / "distill" / "last.pt")
    assert end["global_step"] == 6
    for k in ("rs4d.difficulty", "rs4d.proj.1.conv.weight"):
        torch.testing.assert_close(end["task"][k], task[k], msg=k)


def test_fusion_mamba_teacher_distills_into_another_architecture(
        synth_root: Path, tmp_path: Path) -> None:
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(0)
    teacher_pt = save_model(tmp_path / "fm.pt", build_model("fusion_mamba", len(SYNTH_CLASSES)),
                            list(SYNTH_CLASSES), INPUT_HW)
    out = tmp_path / "run"
    assert _distill(teacher_pt, synth_root, out, "--student", "nano", "--max-steps", "1") == 0
    state = load_train_state(out / "distill" / "last.pt")
    assert state["variant"] == "nano" and state["extra"]["student_init"] == "scratch"
    assert "rank_ratio" not in state["extra"]
    # fusion_mamba P3-P5 widths 32 / 96 / 192 <- nano 32 / 48 / 64 through 1x1 convs
    shapes = [tuple(state["task"][f"rs4d.proj.{i}.conv.weight"].shape[:2]) for i in range(3)]
    assert shapes == [(32, 32), (96, 48), (192, 64)]


def test_wrong_combinations_are_clear_errors(synth_root: Path, nano_teacher: Path,
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--teacher", str(nano_teacher), "--data", str(synth_root), *RUN]
    rc = cli_main(["distill", "--student", "nano", "--out", str(tmp_path / "a"), *base])
    assert rc == 2 and "--method rs4d" in capsys.readouterr().err
    rc = cli_main(["distill", "--method", "rs4d", "--weights", "task=0,rs4d=0", "--out",
                   str(tmp_path / "b"), *base])
    assert rc == 2 and "nothing to train" in capsys.readouterr().err
    rc = cli_main(["distill", "--method", "rs4d", "--rs4d", "mask_max=1.5", "--out",
                   str(tmp_path / "c"), *base])
    assert rc == 2 and "mask_max" in capsys.readouterr().err
    rc = cli_main(["distill", "--method", "rs4d", "--rs4d", "patch=40", "--out",
                   str(tmp_path / "d"), "--max-steps", "1", *base])
    assert rc == 2 and "does not divide" in capsys.readouterr().err
    # An rs4d run resumed as SAD (the default method) says which method to pass.
    run = tmp_path / "e"
    assert _distill(nano_teacher, synth_root, run, "--max-steps", "1") == 0
    rc = cli_main(["distill", "--out", str(run), "--resume", str(run / "distill" / "last.pt"),
                   *base])
    assert rc == 2 and "--method rs4d" in capsys.readouterr().err


@pytest.mark.slow
def test_rs4d_under_torchrun_with_two_processes(synth_root: Path, nano_teacher: Path,
                                                tmp_path: Path) -> None:
    """Two gloo processes: the error is averaged over ranks before the difficulty moves
    (an all-reduce inside the forward, which must not deadlock DDP)."""
    import os
    import socket
    import subprocess
    import sys

    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this interpreter")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    out = tmp_path / "run"
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", f"--master_port={port}", "-m",
         "dlrmamba_core.cli", "distill", "--method", "rs4d", "--teacher", str(nano_teacher),
         "--data", str(synth_root), "--out", str(out), "--epochs", "2", "--finetune-epochs",
         "0", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress",
         "--val-split", "none"],
        capture_output=True, text=True, timeout=500, env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_train_state(out / "distill" / "last.pt")
    assert state["world_size"] == 2 and state["global_step"] == 6  # 12 pairs / 2 / 2, 2 epochs
    assert float(state["task"]["rs4d.difficulty"]) != 0.5
