"""tools/gpu_campaign.sh `watch` and `finish` on a campaign folder laid out as the pipeline
leaves it (the GPU part, `start`, needs the device machine): a `watch` brings back each run
that finished since the last call, once; a `watch` during which the pipeline ended brings
back what `finish` does, so a missed idle window after it loses nothing."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import tarfile

SCRIPT = Path(__file__).resolve().parents[3] / "tools" / "gpu_campaign.sh"


def _call(camp: Path, pipe: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CAMPAIGN_DIR=str(camp), CAMPAIGN_PIPE=str(pipe), OUT=str(out))
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _run_folder(pipe: Path, name: str) -> None:
    for rel in ("finetune/best.pt", "distill/best.pt", "finetune/metrics.csv", "log.txt",
                "summary.json"):
        f = pipe / name / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"{name} {rel}\n")


def _members(out: Path, pattern: str) -> list[str]:
    parts = sorted(out.glob(pattern))
    joined = out / "joined.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        names = sorted(tar.getnames())
    joined.unlink()
    return names


def test_watch_returns_finished_runs_once_then_what_finish_returns(tmp_path: Path) -> None:
    camp, pipe = tmp_path / "campaign", tmp_path / "pipe"
    (camp / "out").mkdir(parents=True)
    (camp / "t0").write_text("0\n")
    (camp / "phase.log").write_text("pipeline running\n")
    _run_folder(pipe, "a")
    (pipe / "b").mkdir()  # still training: no summary.json
    (pipe / "b" / "log.txt").write_text("epoch 1\n")

    first = _call(camp, pipe, tmp_path / "o1", "watch", "1")
    assert first.returncode == 0, first.stderr
    assert "returned now:" in first.stdout
    # the distillation stage's best.pt stays behind; the rest of the run comes back
    assert _members(tmp_path / "o1", "done_*.tar.part-*") == [
        "a/finetune/best.pt", "a/finetune/metrics.csv", "a/log.txt", "a/summary.json"]
    again = _call(camp, pipe, tmp_path / "o2", "watch", "1")
    assert not list((tmp_path / "o2").glob("done_*"))  # returned once only
    assert "returned now:" not in again.stdout

    # the pipeline ends (its own packing in out/): the next watch brings that back and exits
    # with the pipeline's status, as finish does
    (camp / "out" / "results.json").write_text("{}\n")
    (camp / "out" / "best.tar.part-aa").write_bytes(b"x")
    (camp / "out" / "models_fp16.tar").write_bytes(b"y")
    (camp / "out" / "logs.tar.gz").write_bytes(b"z")
    (camp / "rc").write_text("1\n")
    _run_folder(pipe, "b")
    end = _call(camp, pipe, tmp_path / "o3", "watch", "30")
    assert end.returncode == 1
    got = sorted(p.name for p in (tmp_path / "o3").iterdir())
    assert got == ["best.tar.part-aa", "campaign_logs.tar.gz", "progress.txt", "results.json"]
    with tarfile.open(tmp_path / "o3" / "campaign_logs.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["logs.tar.gz", "phase.log"]  # not models_fp16.tar
    fin = _call(camp, pipe, tmp_path / "o4", "finish", "5")
    assert fin.returncode == 1
    assert sorted(p.name for p in (tmp_path / "o4").iterdir()) == [
        "best.tar.part-aa", "campaign_logs.tar.gz", "results.json"]

    gone = _call(tmp_path / "none", pipe, tmp_path / "o5", "watch", "1")
    assert gone.returncode == 2 and "no campaign on this machine" in gone.stderr


def test_carry_size_counts_tracked_files_and_carried_paths(tmp_path: Path) -> None:
    """tools/carry_size.sh: tracked files (not untracked, not deleted ones) plus the carried
    paths against the limit; over it, exit 1 with a message; a carry path that is not there is
    named."""
    script = SCRIPT.with_name("carry_size.sh")
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.bin").write_bytes(b"x" * 1000)
    (repo / "gone.bin").write_bytes(b"x" * 500)
    subprocess.run([*git, "add", "a.bin", "gone.bin"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    (repo / "gone.bin").unlink()
    (repo / "untracked.bin").write_bytes(b"x" * 5000)
    (repo / ".whl").mkdir()
    (repo / ".whl" / "w.whl").write_bytes(b"x" * 2000)

    def size(limit: int, *paths: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(script), *paths], cwd=repo, capture_output=True,
                              text=True, env=dict(os.environ, CARRY_LIMIT_BYTES=str(limit)),
                              timeout=60)

    ok = size(3000, ".whl")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("tracked 0.0 MB + carried 0.0 MB = 0.0 MB of 0.0 MB")
    over = size(2999, ".whl")
    assert over.returncode == 1 and "over the device tool's carry limit" in over.stderr
    assert size(1000).returncode == 0  # 1000 tracked bytes, nothing carried: at the limit
    missing = size(10_000, "nope")
    assert missing.returncode == 2 and "carry path nope does not exist" in missing.stderr
