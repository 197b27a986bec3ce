"""The sample cache (engine.cache) and the time-fitted schedule, on real SYNTHETIC data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.errors import DatasetError

INPUT_HW = (96, 128)  # the same as conftest.INPUT_HW
HW = [str(INPUT_HW[0]), str(INPUT_HW[1])]


def _pairs(root: Path, split: str = "val") -> Any:
    from dlrmamba_core.data.readers import open_dataset

    return open_dataset("synth", root, split=split)


def test_cache_items_equal_the_uncached_pipeline(synth_root: Path, tmp_path: Path) -> None:
    from dlrmamba_core.data.torch_dataset import DetectionDataset
    from dlrmamba_core.engine.cache import cached_dataset
    from dlrmamba_core.engine.datasets import collate

    pairs = _pairs(synth_root)
    cached = cached_dataset(pairs, "synth", synth_root, "val", INPUT_HW, tmp_path / "c",
                            augment=False, workers=2)
    plain = DetectionDataset(pairs, INPUT_HW, augment=False)
    assert len(cached) == len(plain) == 6 and cached.class_names == plain.class_names
    for i in range(len(plain)):
        a, b = cached[i], plain[i]
        assert torch.equal(a["rgb"], b["rgb"])  # uint8 storage is exact for RGB
        assert torch.allclose(a["thermal"], b["thermal"], atol=1e-3)  # float16
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
        assert torch.equal(a["labels"], b["labels"])
        assert a["meta"]["image_id"] == b["meta"]["image_id"]
        assert a["meta"]["letterbox"] == b["meta"]["letterbox"]
    batch = collate([cached[0], cached[1]])
    assert batch["rgb"].shape == (2, 3, *INPUT_HW) and batch["targets"].shape[1] == 6
    # Training from the cache augments exactly as the dataset does (same numpy seed).
    cached.augment = plain.augment = True
    for seed in range(4):
        np.random.seed(seed)
        a = cached[seed % len(cached)]
        np.random.seed(seed)
        b = plain[seed % len(plain)]
        assert torch.equal(a["rgb"], b["rgb"])
        assert torch.allclose(a["thermal"], b["thermal"], atol=2e-3)
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-2)
        assert torch.equal(a["labels"], b["labels"])
        assert a["meta"].get("mosaic") == b["meta"].get("mosaic")


def test_cache_is_reused_rebuilt_on_mismatch_and_atomic(synth_root: Path,
                                                        tmp_path: Path) -> None:
    from dlrmamba_core.engine import cache as cache_mod

    pairs = _pairs(synth_root)
    root = tmp_path / "c"
    cache_mod.cached_dataset(pairs, "synth", synth_root, "val", INPUT_HW, root, augment=False)
    dest = root / f"val_{INPUT_HW[0]}x{INPUT_HW[1]}"
    stamp = (dest / "rgb.npy").stat().st_mtime_ns
    cache_mod.cached_dataset(pairs, "synth", synth_root, "val", INPUT_HW, root, augment=False)
    assert (dest / "rgb.npy").stat().st_mtime_ns == stamp  # reused, not rebuilt
    # Another split under the same name (the ids differ): rebuilt, not silently reused.
    meta = json.loads((dest / "meta.json").read_text())
    meta["ids_sha"] = "0" * 16
    (dest / "meta.json").write_text(json.dumps(meta))
    ds = cache_mod.cached_dataset(pairs, "synth", synth_root, "val", INPUT_HW, root,
                                  augment=False)
    assert ds.meta["ids_sha"] != "0" * 16

    class Broken:
        class_names = pairs.class_names

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> object:
            if i == 2:
                raise DatasetError("frame 2 is corrupt")
            return pairs[i]

    with pytest.raises(DatasetError, match="frame 2 is corrupt"):
        cache_mod.build_cache(Broken(), INPUT_HW, tmp_path / "broken", {"x": 1})
    # Nothing half-written: neither the destination nor a temporary folder is left.
    assert not (tmp_path / "broken").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".broken")] == []


def test_unreadable_cache_names_the_folder(tmp_path: Path) -> None:
    from dlrmamba_core.engine.cache import CachedDataset

    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="delete the folder"):
        CachedDataset(tmp_path)


def test_cli_train_from_cache_with_time_fitted_schedule(synth_root: Path,
                                                        tmp_path: Path) -> None:
    """--cache builds the cache and trains from it; --fit-to-time shortens the epochs so the
    cosine schedule completes inside the budget."""
    out = tmp_path / "run"
    rc = cli_main(["train", "--variant", "nano", "--data", str(synth_root), "--out", str(out),
                   "--epochs", "500", "--batch-size", "4", "--workers", "0", "--device", "cpu",
                   "--input-size", *HW, "--no-progress", "--warmup-epochs", "0.5",
                   "--cache", str(tmp_path / "cache"), "--max-time-min", "0.25",
                   "--fit-to-time"])
    assert rc == 0
    assert (tmp_path / "cache" / f"train_{HW[0]}x{HW[1]}" / "rgb.npy").is_file()
    assert (tmp_path / "cache" / f"val_{HW[0]}x{HW[1]}" / "rgb.npy").is_file()
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    epochs = len(rows)
    assert 2 <= epochs < 500  # fitted to ~15 s (>= 2: refitted after epochs 1-3)
    from dlrmamba_core.engine.trainer import load_train_state

    state = load_train_state(out / "last.pt")
    assert state["epochs"] == epochs and state["epoch"] == epochs  # schedule completed
    from dlrmamba_core.engine.trainer import lr_factor

    last_lr = float(rows[-1].split(",")[2])
    total, cfg = state["total_steps"], state["train_config"]
    spe = total // state["epochs"]
    assert total < 500 * spe  # the cosine horizon was shortened ...
    warm = min(max(round(0.5 * spe), 1), max(total // 2, 1))
    # ... and the lr of the last step taken follows it (a loaded machine may still stop a
    # step or two early on the time budget; CI's quiet runs end at global_step == total).
    step = state["global_step"] - 1
    assert step >= total - spe
    assert last_lr == pytest.approx(cfg["lr"] * lr_factor(
        step, total, warm, cfg["warmup_start_factor"], cfg["min_lr_ratio"]), rel=1e-3)
    assert np.isfinite(float(rows[-1].split(",")[8]))
