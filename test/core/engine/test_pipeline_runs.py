"""engine.pipeline.run_all: a silent (hung) run is stopped, a deadline stops everything."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys

import pytest

from dlrmamba_core.engine import pipeline


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
