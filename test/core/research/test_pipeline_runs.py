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
