"""The trainer on the real synthetic data, real model and real loss: exact resume, logs,
checkpoints, CLI errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import pytest
import torch

from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.engine.trainer import (
    DetectionTask,
    RunMeta,
    TrainConfig,
    Trainer,
    load_train_state,
)
from dlrmamba_core.errors import ConfigError

INPUT_HW = (96, 128)  # the same as conftest.INPUT_HW (fixtures)
HW = [str(INPUT_HW[0]), str(INPUT_HW[1])]


def _trainer(root: Path, out: Path, **kw: object) -> Trainer:
    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.engine.datasets import detection_dataset
    from dlrmamba_core.models import build_model

    pairs = open_dataset("synth", root, split="train")
    torch.manual_seed(0)
    model = build_model("nano", len(pairs.class_names))
    settings: dict[str, object] = {"epochs": 2, "batch_size": 4, "num_workers": 0,
                                   "progress": False, "warmup_epochs": 0.5, "device": "cpu"}
    cfg = TrainConfig(**{**settings, **kw})  # type: ignore[arg-type]
    return Trainer(DetectionTask(model), model, detection_dataset(pairs, INPUT_HW, augment=True),
                   None, cfg, out, RunMeta("train", "nano", list(pairs.class_names), INPUT_HW))


def _same_state(a: Trainer, b: Trainer) -> None:
    for name, sa in (("task", a.task.state_dict()), ("ema", a.ema.module.state_dict())):
        sb = b.task.state_dict() if name == "task" else b.ema.module.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name} {k} differs after resume"
    oa, ob = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    for i in oa:
        assert torch.equal(oa[i]["momentum_buffer"], ob[i]["momentum_buffer"])
    assert a.ema.updates == b.ema.updates and a.global_step == b.global_step


def test_resume_mid_epoch_gives_identical_state(synth_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    straight = _trainer(synth_root, tmp_path / "a")
    assert straight.fit()["finished"]
    assert straight.global_step == 6  # 12 images / batch 4 = 3 steps x 2 epochs
    half = _trainer(synth_root, tmp_path / "b", max_steps=4)  # stops inside epoch 2
    summary = half.fit()
    assert not summary["finished"] and summary["global_step"] == 4
    state = load_train_state(tmp_path / "b" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 1)
    resumed = _trainer(synth_root, tmp_path / "b")
    resumed.load_state(tmp_path / "b" / "last.pt")
    assert resumed.fit()["finished"]
    _same_state(straight, resumed)
    # Same per-epoch losses, also for the epoch cut by the kill (wall times differ).
    timings = ("epoch_s", "data_wait_s")
    strip = lambda h: [{k: v for k, v in r.items() if k not in timings} for r in h]  # noqa: E731
    assert strip(straight.history) == strip(resumed.history)


def test_pause_after_min_stops_at_an_epoch_end_and_resumes_exactly(synth_root: Path,
                                                                    tmp_path: Path) -> None:
    """Time slices: a paused run keeps its whole schedule; resuming it equals a straight run."""
    torch.set_num_threads(1)
    straight = _trainer(synth_root, tmp_path / "a", epochs=3)
    assert straight.fit()["finished"]
    sliced = _trainer(synth_root, tmp_path / "b", epochs=3, pause_after_min=1e-6)
    summary = sliced.fit()  # any epoch takes longer than 60 us: pauses after the first
    assert summary["paused"] and not summary["finished"] and not summary["truncated"]
    state = load_train_state(tmp_path / "b" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 0)
    assert not (tmp_path / "b" / "final.pt").exists()
    resumed = _trainer(synth_root, tmp_path / "b", epochs=3)
    resumed.load_state(tmp_path / "b" / "last.pt")
    end = resumed.fit()
    assert end["finished"] and not end["paused"]
    _same_state(straight, resumed)
    with pytest.raises(ConfigError, match="pause_after_min"):
        TrainConfig(pause_after_min=0).validate()


def test_cli_train_then_eval_writes_logs_models_and_metrics(synth_root: Path,
                                                            tmp_path: Path) -> None:
    from dlrmamba_core.models.io import load_model

    out = tmp_path / "run"
    rc = cli_main(["train", "--variant", "nano", "--data", str(synth_root), "--out", str(out),
                   "--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                   "--input-size", *HW, "--no-progress", "--warmup-epochs", "0.5"])
    assert rc == 0
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,lr") and len(rows) == 3 and "val_mAP50" in rows[0]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert any((out / "tb").iterdir())
    _, meta = load_model(out / "best.pt")
    assert meta["input_hw"] == list(INPUT_HW) and meta["extra"]["modality"] == "fused"
    assert "mAP50" in meta["extra"]["val"]
    ev = tmp_path / "eval"
    assert cli_main(["eval", str(out / "best.pt"), "--data", str(synth_root), "--split",
                     "test", "--out", str(ev)]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["num_images"] == 6 and metrics["num_gt"] > 0
    assert set(metrics["per_class"]) == set(meta["class_names"])
    assert (ev / "pr_curves.png").is_file() and (ev / "confusion_matrix.png").is_file()


def test_clear_errors(synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      nano_teacher: Path) -> None:
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    base = ["--data-format", "synth", "--epochs", "1", "--batch-size", "4", "--workers", "0",
            "--device", "cpu", "--no-progress"]
    train = [*base, "--input-size", *HW]
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    rc = cli_main(["train", "--variant", "nano", "--data", str(empty), "--out",
                   str(tmp_path / "x"), *train])
    err = capsys.readouterr().err
    assert rc == 2 and str(empty) in err

    other = save_model(tmp_path / "three.pt", build_model("nano", 3), ["a", "b", "c"], INPUT_HW)
    rc = cli_main(["train", "--init", str(other), "--data", str(synth_root), "--out",
                   str(tmp_path / "y"), *train])
    err = capsys.readouterr().err
    assert rc == 2 and "3 classes" in err and "7 classes" in err

    run = tmp_path / "nano_run"
    assert cli_main(["train", "--variant", "nano", "--data", str(synth_root), "--out", str(run),
                     "--max-steps", "1", "--val-split", "none", *train]) == 0
    rc = cli_main(["train", "--variant", "cnn", "--data", str(synth_root), "--out", str(run),
                   "--resume", str(run / "last.pt"), *train])
    err = capsys.readouterr().err
    assert rc == 2 and "'nano'" in err and "'cnn'" in err

    rc = cli_main(["distill", "--teacher", str(other), "--data", str(synth_root), "--out",
                   str(tmp_path / "z"), *base])
    err = capsys.readouterr().err
    assert rc == 2 and "3 classes" in err
    rc = cli_main(["eval", str(tmp_path / "missing.onnx"), "--data", str(synth_root)])
    assert rc == 2 and "missing.onnx" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_run_resumes_to_identical_weights(synth_root: Path, tmp_path: Path) -> None:
    """SIGKILL a real training process after a mid-run checkpoint; resuming matches."""
    args = [sys.executable, "-m", "dlrmamba_core.cli", "train", "--variant", "nano", "--data",
            str(synth_root), "--epochs", "2", "--batch-size", "4", "--workers", "0",
            "--device", "cpu", "--input-size", *HW, "--no-progress", "--val-split", "none",
            "--checkpoint-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([*args, "--out", str(tmp_path / "straight")], check=True, env=env,
                   capture_output=True, timeout=300)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            last = killed / "last.pt"
            if last.is_file() and load_train_state(last)["global_step"] >= 2:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    step = load_train_state(killed / "last.pt")["global_step"]
    assert 2 <= step <= 6
    subprocess.run([*args, "--out", str(killed), "--resume", str(killed / "last.pt")],
                   check=True, env=env, capture_output=True, timeout=300)
    a = load_train_state(tmp_path / "straight" / "last.pt")
    b = load_train_state(killed / "last.pt")
    assert a["global_step"] == b["global_step"] == 6
    for k in a["task"]:
        assert torch.equal(a["task"][k], b["task"][k]), k
    for k in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]), k


def test_fine_tune_from_a_model_file(synth_root: Path, nano_teacher: Path,
                                     tmp_path: Path) -> None:
    """--init starts from a saved model (loaded in eval mode) and trains it."""
    from dlrmamba_core.models.io import load_model

    out = tmp_path / "ft"
    assert cli_main(["train", "--init", str(nano_teacher), "--data", str(synth_root),
                     "--out", str(out), "--epochs", "1", "--batch-size", "4", "--workers", "0",
                     "--device", "cpu", "--no-progress", "--input-size", *HW,
                     "--val-split", "none", "--lr", "0.01"]) == 0
    before, _ = load_model(nano_teacher)
    after, meta = load_model(out / "best.pt")  # the EMA model at the end of the epoch
    assert meta["variant"] == "nano"
    changed = any(not torch.equal(a, b) for a, b in zip(before.state_dict().values(),
                                                        after.state_dict().values(),
                                                        strict=True))
    assert changed


def test_fit_leaves_no_loader_workers_behind(synth_root: Path, tmp_path: Path) -> None:
    """Workers of a finished fit are shut down by the fit itself, in this process.

    ``distill`` runs a second Trainer (the fine-tune) right after the first: a loader of the
    first left for the garbage collector would be collected inside the second loader's forked
    workers, which then crash (seen on CUDA: "can only test a child process", CUDA
    initialization error in the worker).
    """
    import multiprocessing

    before = set(multiprocessing.active_children())
    tr = _trainer(synth_root, tmp_path / "w", epochs=1, num_workers=2)
    tr.fit()
    left = [p for p in multiprocessing.active_children() if p not in before]
    assert not left, f"loader workers still alive after fit: {left}"


def test_resume_with_weights_of_another_task_version_is_a_clear_error(synth_root: Path,
                                                                      tmp_path: Path) -> None:
    tr = _trainer(synth_root, tmp_path / "a", epochs=1, max_steps=1)
    tr.fit()
    state = load_train_state(tmp_path / "a" / "last.pt")
    state["task"]["sad.state_proj.0.weight"] = torch.zeros(4, 2, 8)  # an unexpected key
    torch.save(state, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match="do not fit this run's train task"):
        _trainer(synth_root, tmp_path / "b").load_state(tmp_path / "old.pt")
