"""research.pipeline.run_all: a silent (hung) run is stopped, a deadline stops everything."""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest

from dlrmamba_core.research import pipeline


def _fake_launch(script: dict[str, str]):
    """Launch ``python -c script[name]`` instead of a training command (same log handling)."""

    def launch(run: pipeline.Run, root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = root / run.name
        out.mkdir(parents=True, exist_ok=True)
        logf = open(out / "log.txt", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-c", script[run.name]], stdout=logf,
                                stderr=subprocess.STDOUT, env=env)
        proc._logf = logf  # type: ignore[attr-defined]
        return proc

    return launch


def test_stalled_run_is_stopped_and_its_dependants_skipped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    talk = "import time\nfor i in range(4):\n    print(i, flush=True); time.sleep(0.5)\n"
    monkeypatch.setattr(pipeline, "_launch", _fake_launch({
        "hang": "import time; time.sleep(120)", "after_hang": talk, "ok": talk}))
    runs = [pipeline.Run("hang", "train", []), pipeline.Run("ok", "train", []),
            pipeline.Run("after_hang", "train", [], needs=["hang"])]
    status = pipeline.run_all(runs, tmp_path, parallel=2, stall_s=5.0)
    assert status == {"hang": "stalled", "ok": "done", "after_hang": "skipped"}
    assert (tmp_path / "ok" / "summary.json").is_file()


def test_deadline_stops_running_and_skips_pending(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    busy = "import time\nwhile True:\n    print('step', flush=True); time.sleep(0.3)\n"
    monkeypatch.setattr(pipeline, "_launch", _fake_launch({"a": busy, "b": busy}))
    runs = [pipeline.Run("a", "train", []), pipeline.Run("b", "train", [])]
    status = pipeline.run_all(runs, tmp_path, parallel=1, stall_s=30.0, deadline_s=3.0)
    assert status == {"a": "stopped", "b": "skipped"}


def test_benchmark_options_are_recorded_and_checked(tmp_path: Path) -> None:
    from dlrmamba_core.errors import ConfigError

    info = pipeline.generate_data(tmp_path / "d", 4, 2, 2, seed=1, workers=1,
                                  synth_options=["night_light=0.0002,0.0006"])
    assert info["synth_options"] == ["night_light=0.0002,0.0006"]
    ds = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert ds["config"]["night_light"] == [0.0002, 0.0006]
    # Reused as is with the same options; another option set is refused.
    assert pipeline.generate_data(tmp_path / "d", 4, 2, 2, seed=1, workers=1,
                                  synth_options=["night_light=0.0002,0.0006"]) == info
    with pytest.raises(ConfigError, match="synthetic options"):
        pipeline.generate_data(tmp_path / "d", 4, 2, 2, seed=1, workers=1)
    # A benchmark written by another generator version is refused too.
    done = tmp_path / "d" / "DONE.json"
    done.write_text(json.dumps({**info, "generator_version": 1}))
    with pytest.raises(ConfigError, match="generator version 1"):
        pipeline.generate_data(tmp_path / "d", 4, 2, 2, seed=1, workers=1,
                               synth_options=["night_light=0.0002,0.0006"])
    assert ds["generator_version"] == info["generator_version"]
    # Results of differently generated benchmarks are not merged.
    from dlrmamba_core.research.ship import merge_results

    base = {"created_utc": "x", "input_hw": [96, 128], "models": {"a": {}}, "status": {}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({**base, "data": {"seed": 1, "splits": {}}}))
    b.write_text(json.dumps({**base, "data": {"seed": 1, "splits": {},
                                              "synth_options": info["synth_options"]}}))
    with pytest.raises(ConfigError, match="other data"):
        merge_results([a, b])
    b.write_text(json.dumps({**base, "data": {"seed": 1, "splits": {}, "generator_version": 2}}))
    with pytest.raises(ConfigError, match="other data"):
        merge_results([a, b])


def test_phase_c_runs_only_when_named(tmp_path: Path) -> None:
    """Phase C (loss ablations, seed repeats) stays out of a default run; --only names it."""
    runs = pipeline.plan(tmp_path / "data", 2, 2, 1, 2, 4, 0, (96, 128), 1.0, 1.0, tmp_path)
    by_name = {r.name: r for r in runs}
    c = [r.name for r in runs if r.phase == "C"]
    assert c == ["sad_no_svd", "sad_no_state", "sad_no_feat", "student_sad_seed2",
                 "student_nodistill_seed2"]
    for loss in ("svd", "state", "feat"):
        args = by_name[f"sad_no_{loss}"].args
        assert args[args.index("--weights") + 1] == f"{loss}=0"
    rep = by_name["student_nodistill_seed2"].args
    assert rep[:-2] == by_name["student_nodistill"].args and rep[-2:] == ["--seed", "2"]
    with pytest.raises(pipeline.ConfigError, match="no run named sad_no_task"):
        pipeline.main(["--out", str(tmp_path / "p"), "--only", "teacher", "sad_no_task"])
    assert not (tmp_path / "p").exists()  # refused before generating any data


def test_evaluate_only_scores_the_runs_that_came_back(tmp_path: Path) -> None:
    """--evaluate-only: no training; the runs whose folders came back (summary.json, models)
    are evaluated on the test split, a model file left behind is left out (not an error), a run
    that never came back is `missing`, and results.json names where they trained."""
    import torch

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    f = tmp_path / "runs.yaml"
    f.write_text("""
runs:
  - {name: t, phase: X, recipe: train, info: {variant: nano, role: teacher}}
  - {name: s, phase: X, recipe: distill, teacher: t, info: {rank_ratio: 0.3, role: student}}
  - {name: gone, phase: X, recipe: train, info: {variant: nano, role: lost}}
""")
    root = tmp_path / "p"
    torch.manual_seed(0)
    for path in (root / "t" / "best.pt", root / "s" / "finetune" / "best.pt"):
        path.parent.mkdir(parents=True)
        save_model(path, build_model("nano", len(SYNTH_CLASSES)).eval(), list(SYNTH_CLASSES),
                   (96, 128))
    for run, seconds in (("t", 12.5), ("s", 30.0)):
        (root / run / "summary.json").write_text(json.dumps({"seconds": seconds, "rc": 0}))
    args = ["--out", str(root), "--runs", str(f), "--teacher-variant", "nano", "--device",
            "cpu", "--n-train", "4", "--n-val", "2", "--n-test", "4", "--input-size", "96",
            "128", "--finetune-epochs", "3"]
    assert pipeline.main([*args, "--evaluate-only", "--trained-on", "GPU X",
                          "--only", "t", "s", "gone"]) == 1  # a run is missing
    res = json.loads((root / "results.json").read_text())
    assert res["device"] == "GPU X" and res["evaluated_on"] == "cpu"
    assert res["status"] == {"t": "done", "s": "done", "gone": "missing"}
    assert sorted(res["models"]) == ["s/finetune", "t"]  # s/distill did not come back
    assert res["models"]["t"]["train_seconds"] == 12.5
    assert res["models"]["s/finetune"]["role"] == "student"
    assert res["models"]["t"]["test"]["num_images"] == 4
    assert res["settings"]["evaluate_only"] is True
    assert not (root / "cache").exists()  # nothing to train: no sample cache
