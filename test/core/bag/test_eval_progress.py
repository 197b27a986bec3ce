"""``engine.evaluate.evaluate`` shows a progress bar over the images when asked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.data.readers import open_dataset


def test_eval_progress_bar_counts_the_images(grid_model: Path, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.engine.evaluate import evaluate

    for i in range(5):
        for sub, img in (("rgb", np.full((96, 128, 3), 40 * i, np.uint8)),
                         ("thermal", np.full((48, 64), 1000, np.uint16))):
            (tmp_path / sub).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / sub / f"{i}.png"), img)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "0.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "classes.txt").write_text("bright\nhot\n")
    ds = open_dataset("yolo", tmp_path)
    evaluate(str(grid_model), ds, progress=True)
    err = capfd.readouterr().err
    assert "eval:" in err and "/5 [" in err and "img/s" in err
    evaluate(str(grid_model), ds, progress=False)
    assert "eval" not in capfd.readouterr().err


def test_eval_cli_on_a_flat_folder_uses_it_whole_and_says_so(
        grid_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.cli import main as cli_main

    for i in range(3):
        for sub, img in (("rgb", np.full((96, 128, 3), 200, np.uint8)),
                         ("ir", np.full((48, 64), 1000, np.uint16))):
            (tmp_path / sub).mkdir(exist_ok=True)
            cv2.imwrite(str(tmp_path / sub / f"{i}.png"), img)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "0.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (tmp_path / "classes.txt").write_text("bright\nhot\n")
    # the default --split test: no split folders, so the whole folder, said in one line
    assert cli_main(["eval", str(grid_model), "--data", str(tmp_path), "--data-format",
                     "yolo:thermal_dir=ir", "--out", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "has no 'test' split" in out and "whole folder" in out
    assert "images 3" in out


def test_eval_help_documents_its_flags_and_the_formats(
        capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.cli import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("a dataset without splits is evaluated whole", "images per forward pass",
                  "torch device", "no progress bar", "dronevehicle (layouts: "
                  "docs/data_formats.md)", "yolo, coco, llvip"):
        assert words in text, words
