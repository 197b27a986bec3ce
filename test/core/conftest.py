"""Fixtures shared by the core tests.

Runtime and deploy: a tiny nano checkpoint and its real ONNX export.

The nano model is untrained, but its class-prediction layers are re-drawn (see
``model_helpers.make_checkpoint``) so that detections pass the 0.25 score threshold and the
parity / mapping tests compare real, well-separated detections instead of ties.

Engine and research: a tiny SYNTHETIC dataset written by the real generator, and an untrained
nano model file as a distillation teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model_helpers import make_checkpoint
import pytest


@pytest.fixture(scope="session")
def nano_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A nano checkpoint (.pt) with the synthetic classes, native input 128x160."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "nano.pt")


@pytest.fixture(scope="session")
def nano_export(nano_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``export_onnx`` result of :func:`nano_ckpt` (ONNX + card, parity on 2 frames)."""
    from dlrmamba_core.deploy.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "nano.onnx"
    return export_onnx(nano_ckpt, out, parity_samples=2)


@pytest.fixture()
def nano_onnx(nano_export: Any, tmp_path: Path) -> Path:
    """A private copy of the exported ONNX + card (tests may corrupt it)."""
    import shutil

    dst = tmp_path / "nano.onnx"
    shutil.copy(nano_export.onnx_path, dst)
    shutil.copy(nano_export.card_path, tmp_path / "nano.json")
    return dst


@pytest.fixture(scope="session")
def synth_frames() -> list[Any]:
    """Three synthetic RGB-T frames (RGB 640x480, thermal 320x256 with a homography)."""
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame

    return [generate_frame(SynthConfig(), seed) for seed in (11, 12, 13)]


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
