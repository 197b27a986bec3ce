"""Fixtures of the engine tests: a tiny SYNTHETIC dataset written by the real generator."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Network input of the engine tests (h, w): small so a training step takes well under 1 s.
INPUT_HW = (96, 128)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 synthetic frames (12 train / 6 val / 6 test) at 128x96 RGB, 64x48 thermal."""
    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset

    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(rgb_size=(128, 96), thermal_size=(64, 48))
    write_frame_dataset(root, 24, (("train", 0.5), ("val", 0.25), ("test", 0.25)), seed=3,
                        cfg=cfg, overwrite=True)
    return root


@pytest.fixture(scope="session")
def nano_teacher(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) nano model file with the synthetic class map, as a distillation teacher."""
    import torch

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(0)
    model = build_model("nano", len(SYNTH_CLASSES))
    return save_model(tmp_path_factory.mktemp("teacher") / "teacher.pt", model,
                      list(SYNTH_CLASSES), INPUT_HW)
