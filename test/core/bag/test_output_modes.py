"""Outputs of ``detect``, ``eval`` and ``train`` get the user's umask, not mkstemp's 0600."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import stat

import cv2
import numpy as np
import pytest

from dlrmamba_core.cli import main as cli_main


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_detect_outputs_follow_the_umask(grid_model: Path, tmp_path: Path, umask_022: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.full((96, 128, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    cv2.imwrite(str(tmp_path / "th.png"), np.full((96, 128), 3000, np.uint16))
    rc = cli_main(["detect", str(grid_model), str(tmp_path / "rgb.png"),
                   str(tmp_path / "th.png"), "--json", str(tmp_path / "d.json"),
                   "--draw", str(tmp_path / "d.png")])
    assert rc == 0
    assert _mode(tmp_path / "d.json") == 0o644
    assert _mode(tmp_path / "d.png") == 0o644


def test_eval_report_follows_the_umask(tmp_path: Path, umask_022: None) -> None:
    from dlrmamba_core.engine.evaluate import coco_metrics, write_report

    boxes = np.array([[0, 0, 10, 10]], np.float32)
    met = coco_metrics([(boxes, np.ones(1, np.float32), np.zeros(1, np.int64))],
                       [(boxes, np.zeros(1, np.int64))], ["a"])
    write_report(met, ["a"], tmp_path / "ev")
    for name in ("metrics.json", "pr_curves.png", "confusion_matrix.png"):
        assert _mode(tmp_path / "ev" / name) == 0o644, name


def test_train_checkpoints_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    from dlrmamba_core.engine.fileio import torch_save
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    save_model(tmp_path / "best.pt", build_model("nano", 2), ["a", "b"], (64, 64))
    torch_save(tmp_path / "last.pt", {"step": 1})  # the trainer's last.pt writer
    assert _mode(tmp_path / "best.pt") == 0o644
    assert _mode(tmp_path / "last.pt") == 0o644
    os.umask(0o077)  # a private umask is honoured too
    torch_save(tmp_path / "private.pt", {"step": 1})
    assert _mode(tmp_path / "private.pt") == 0o600
