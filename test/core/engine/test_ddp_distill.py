"""Distillation under torchrun: 2 gloo processes on CPU run SAD and the fine-tune; the teacher
(a frozen submodule of the task) leaves the run unchanged, the student does not."""

from __future__ import annotations

import os
from pathlib import Path
import socket
import subprocess
import sys

import pytest
import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_distill_under_torchrun_with_two_processes(synth_root: Path, nano_teacher: Path,
                                                   tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this interpreter")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", f"--master_port={_free_port()}", "-m",
         "dlrmamba_core.cli", "distill", "--teacher", str(nano_teacher), "--data",
         str(synth_root), "--out", str(out), "--epochs", "1", "--finetune-epochs", "1",
         "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress",
         "--val-split", "none"],
        capture_output=True, text=True, timeout=500, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    distill = torch.load(out / "distill" / "last.pt", weights_only=True)
    assert distill["world_size"] == 2 and distill["global_step"] == 3  # 12 pairs / 2 / 2
    assert (out / "finetune" / "best.pt").is_file()
    teacher = torch.load(nano_teacher, weights_only=True)["state_dict"]
    task = distill["task"]
    for k, v in teacher.items():
        assert torch.equal(task[f"teacher.{k}"], v), f"teacher {k} changed"
    changed = [k for k, v in teacher.items() if f"detector.{k}" in task
               and task[f"detector.{k}"].shape == v.shape and v.is_floating_point()
               and not torch.equal(task[f"detector.{k}"], v)]
    assert changed, "the student did not train"
