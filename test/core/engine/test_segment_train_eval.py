"""`dlrmamba train --task segment` and `eval` of a segment model on the synthetic fixture
(which has instance masks), and the clear refusals."""

from __future__ import annotations

import json
from pathlib import Path
import shutil

import pytest
import torch

from dlrmamba_core.cli import main as cli_main

INPUT_HW = ("96", "128")  # conftest.INPUT_HW
TRAIN = ["--epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
         "--input-size", *INPUT_HW, "--no-progress", "--warmup-epochs", "0.5"]


def test_train_segment_then_eval_prints_bbox_and_segm(synth_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from dlrmamba_core.models.io import load_model

    torch.set_num_threads(1)
    out = tmp_path / "run"
    rc = cli_main(["train", "--variant", "nano", "--task", "segment", "--num-protos", "8",
                   "--data", str(synth_root), "--out", str(out), *TRAIN])
    assert rc == 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_mask", "val_segm_mAP50", "val_segm_mAP50_95"} <= set(header)
    model, meta = load_model(out / "best.pt")
    assert meta["config"]["task"] == "segment" and meta["config"]["num_protos"] == 8
    assert meta["extra"]["task"]["task"] == "segment"
    assert model.protonet is not None
    capsys.readouterr()
    ev = tmp_path / "eval"
    assert cli_main(["eval", str(out / "best.pt"), "--data", str(synth_root), "--split",
                     "test", "--out", str(ev)]) == 0
    text = capsys.readouterr().out
    assert "bbox mAP50" in text and "segm mAP50" in text
    metrics = json.loads((ev / "metrics.json").read_text())
    segm = metrics["segm"]
    assert segm["num_gt"] == metrics["num_gt"] > 0 and segm["num_det"] > 0
    assert set(segm["per_class"]) == set(meta["class_names"])
    assert 0.0 <= segm["mAP50_95"] <= segm["mAP50"] <= 100.0


def test_detect_eval_has_no_segm(synth_root: Path, nano_teacher: Path) -> None:
    from dlrmamba_core.engine.runs import evaluate_file

    metrics = evaluate_file(nano_teacher, "synth", synth_root, "test", None, limit=2)
    assert "segm" not in metrics


def test_segment_refuses_a_dataset_without_masks(synth_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--variant", "nano", "--task", "segment", "--out", str(tmp_path / "r"),
            *TRAIN]
    plain = tmp_path / "plain"
    shutil.copytree(synth_root, plain)
    for ann in plain.glob("*/annotations.json"):
        d = json.loads(ann.read_text())
        for a in d["annotations"]:
            a.pop("segmentation", None)
        ann.write_text(json.dumps(d))
    assert cli_main([*base, "--data", str(plain)]) == 2
    err = capsys.readouterr().err
    assert "needs instance masks" in err and "--task detect" in err


def test_cached_masks_equal_the_uncached_pipeline(synth_root: Path, tmp_path: Path) -> None:
    import numpy as np

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.torch_dataset import DetectionDataset
    from dlrmamba_core.engine.cache import CachedDataset, cached_dataset
    from dlrmamba_core.errors import DatasetError

    hw = (int(INPUT_HW[0]), int(INPUT_HW[1]))
    pairs = open_dataset("synth", synth_root, split="val")
    det = cached_dataset(pairs, "synth", synth_root, "val", hw, tmp_path / "c", augment=False)
    seg = cached_dataset(pairs, "synth", synth_root, "val", hw, tmp_path / "c", augment=False,
                         workers=2, masks=True)
    assert seg.path != det.path and seg.meta["masks"] and "masks" not in det.meta
    with pytest.raises(DatasetError, match="holds no instance masks"):
        CachedDataset(det.path, masks=True)
    plain = DetectionDataset(pairs, hw, augment=False, masks=True, mask_stride=4)
    for i in range(len(plain)):
        a, b = seg[i], plain[i]
        assert torch.equal(a["masks"], b["masks"]) and a["masks"].shape[1:] == (24, 32)
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3)
    assert "masks" not in det[0]
    seg.augment = plain.augment = True
    for seed in range(4):  # the same draws: the same geometry for masks as for boxes
        np.random.seed(seed)
        a = seg[seed]
        np.random.seed(seed)
        b = plain[seed]
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-2)
        assert a["masks"].shape[0] == len(a["boxes"])
        assert (a["masks"] != b["masks"]).float().mean() < 0.01


def test_train_segment_from_cache(synth_root: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    rc = cli_main(["train", "--variant", "nano", "--task", "segment", "--num-protos", "4",
                   "--data", str(synth_root), "--out", str(out), "--cache",
                   str(tmp_path / "cache"), *TRAIN])
    assert rc == 0
    assert (tmp_path / "cache" / "train_96x128_masks" / "meta.json").is_file()
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_mask", "val_segm_mAP50"} <= set(header)


def test_init_from_a_detect_model_keeps_its_weights(nano_teacher: Path) -> None:
    from dlrmamba_core.engine.config import TaskConfig
    from dlrmamba_core.engine.runs import _model_for_task
    from dlrmamba_core.errors import ConfigError
    from dlrmamba_core.models.io import load_model

    det, _ = load_model(nano_teacher)
    seg = _model_for_task(det, TaskConfig(task="segment", num_protos=4), "x.pt")
    assert seg.cfg.task == "segment" and seg.cfg.num_protos == 4
    for k, v in det.state_dict().items():
        assert torch.equal(seg.state_dict()[k], v), k
    with pytest.raises(ConfigError, match="--task segment"):
        _model_for_task(seg, TaskConfig(), "seg.pt")
    with pytest.raises(ConfigError, match="--num-protos 4"):
        _model_for_task(seg, TaskConfig(task="segment", num_protos=8), "seg.pt")


def test_finetune_refuses_a_segment_model(synth_root: Path, tmp_path: Path) -> None:
    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.engine.finetune import finetune_model
    from dlrmamba_core.errors import ConfigError
    from dlrmamba_core.models import build_model

    pairs = open_dataset("synth", synth_root, split="train")
    seg = build_model("nano", len(pairs.class_names), task="segment", num_protos=4)
    meta = {"class_names": list(pairs.class_names), "input_hw": [96, 128], "variant": "nano"}
    with pytest.raises(ConfigError, match="--task segment --init"):
        finetune_model(seg, pairs, tmp_path / "ft", init_meta=meta)


def test_distill_refuses_a_segment_teacher(synth_root: Path, tmp_path: Path) -> None:
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.engine.config import TrainConfig
    from dlrmamba_core.engine.runs import distill_model
    from dlrmamba_core.errors import ConfigError
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    teacher = save_model(tmp_path / "t.pt", build_model("nano", len(SYNTH_CLASSES),
                                                         task="segment", num_protos=4),
                         list(SYNTH_CLASSES), (96, 128))
    with pytest.raises(ConfigError, match="detect models only"):
        distill_model(teacher, "synth", synth_root, tmp_path / "d",
                      TrainConfig(device="cpu", num_workers=0, progress=False))


def test_train_init_from_a_shipped_style_onnx(synth_root: Path, tmp_path: Path,
                                              nano_export: object) -> None:
    """`train --init M.onnx` (what a user holds: the shipped ONNX, not a .pt) traces the
    weights back to torch like finetune does; here into a segment model."""
    import numpy as np

    from dlrmamba_core.engine.finetune import model_from_onnx
    from dlrmamba_core.models.io import load_model

    onnx_path = nano_export.onnx_path  # type: ignore[attr-defined]
    out = tmp_path / "run"
    rc = cli_main(["train", "--task", "segment", "--num-protos", "4", "--init",
                   str(onnx_path), "--data", str(synth_root), "--out", str(out),
                   "--val-split", "none", "--epochs", "1",
                   "--batch-size", "4", "--workers", "0", "--device", "cpu",
                   "--input-size", "128", "160", "--no-progress", "--lr", "1e-9"])
    assert rc == 0
    model, meta = load_model(out / "final.pt")
    assert meta["config"]["task"] == "segment" and meta["variant"] == "nano"
    traced, _ = model_from_onnx(onnx_path)
    head = "head.cls.0.2.weight"
    np.testing.assert_allclose(model.state_dict()[head].numpy(),
                               traced.state_dict()[head].numpy(), atol=1e-4)
