"""Errors a CLI user sees name flags and commands, in one line (not Python internals)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dlrmamba_core.cli import main as cli_main


@pytest.fixture
def images(tmp_path: Path) -> tuple[str, str]:
    cv2.imwrite(str(tmp_path / "rgb.png"), np.full((96, 128, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "th.png"), np.full((48, 64), 1000, np.uint16))
    return str(tmp_path / "rgb.png"), str(tmp_path / "th.png")


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_truncated_checkpoint_is_one_line_saying_what_to_do(
        tmp_path: Path, images: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(4096)}}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert cli_main(["detect", str(tmp_path / "cut.pt"), *images, "--backend", "torch"]) == 2
    line = _error_line(capsys)
    assert "truncated or corrupt" in line and "dlrmamba train" in line
    assert "PytorchStreamReader" not in line and "miniz" not in line
    assert len(line) - len(str(tmp_path / "cut.pt")) < 220  # torch's own text: ~400 chars


def test_a_pt_file_with_the_default_backend_names_the_flag_and_the_command(
        tmp_path: Path, images: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.pt").write_bytes(b"x")
    assert cli_main(["detect", str(tmp_path / "m.pt"), *images]) == 2
    line = _error_line(capsys)
    assert "--backend torch" in line and "dlrmamba export" in line
    assert "backend='torch'" not in line


def test_bad_threshold_names_the_flag(grid_model: Path, images: tuple[str, str],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["detect", str(grid_model), *images, "--conf", "1.5"]) == 2
    line = _error_line(capsys)
    assert "--conf" in line and "1.5" in line


def test_missing_layout_folder_points_to_the_layout_docs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["data", "stats", "--format", "yolo", "--root", str(tmp_path)]) == 2
    line = _error_line(capsys)
    assert "docs/data_formats.md" in line and "--data-format" in line
