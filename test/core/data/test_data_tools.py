"""`dlrmamba data bench` (loader benchmark) and `dlrmamba data sheets` (per-condition sheets)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from dlrmamba_core.cli import main as cli_main


def test_loader_benchmark_writes_its_table(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "loader_benchmark.md"
    rc = cli_main(["data", "bench", "--num", "20", "--gen-workers", "1", "--pairs", "8",
                   "--workers", "0", "1", "--input-size", "128", "160", "--out", str(out)])
    assert rc == 0
    text = out.read_text()
    assert "**SYNTHETIC**" in text and "CPU:" in text and "Command:" in text
    assert "| 20 | 1 |" in text  # the generation row: 20 pairs, 1 worker
    rows = [ln for ln in text.splitlines() if ln.startswith(("| on |", "| off |"))]
    assert len(rows) == 4  # augmentation off/on x workers 0/1
    for ln in rows:
        rate = float(ln.strip("|").split("|")[-1])
        assert rate > 0
    assert "160x128 input" in text
    assert "Command: `dlrmamba data bench --num 20 --gen-workers 1 --pairs 8 --workers 0 1" in text
    assert not list(tmp_path.glob("docs/*.tmp*"))
    assert "wrote" in capsys.readouterr().out


def test_condition_sheets(tmp_path: Path) -> None:
    from dlrmamba_core.data.synthetic import CONDITIONS

    assert cli_main(["data", "sheets", "--out-dir", str(tmp_path), "--width", "96"]) == 0
    for cond in CONDITIONS:
        img = cv2.imread(str(tmp_path / f"data_{cond}.png"))
        assert img is not None and img.shape[1] == 3 * 96  # RGB | thermal | overlay
        assert img.shape[0] >= 2 * 60  # a maritime and an aerial row


def test_register_writes_a_bare_file_name_in_the_working_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`data register --out H.json` (no folder part) writes ./H.json (was: makedirs(''))."""
    import json

    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset

    write_frame_dataset(tmp_path / "synth", 4, (("val", 1.0),), seed=3,
                        cfg=SynthConfig(rgb_size=(160, 120), thermal_size=(80, 64)))
    monkeypatch.chdir(tmp_path)
    assert cli_main(["data", "register", "--format", "synth", "--root", "synth", "--split",
                     "val", "--num", "2", "--out", "H.json"]) == 0
    h = json.loads((tmp_path / "H.json").read_text())["homography"]
    assert len(h) == 3 and all(len(row) == 3 for row in h)
