"""``dlrmamba finetune``: class remapping, freezing, ONNX -> torch weights, a short real run."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrmamba_core.data.classmap import match_classes
from dlrmamba_core.engine.finetune import (
    FINETUNE_DEFAULTS,
    finetune_model,
    freeze_early,
    model_from_onnx,
    remap_classes,
    restore_batchnorm,
    split_holdout,
)
from dlrmamba_core.errors import ConfigError, DatasetError, ModelFileError
from dlrmamba_core.models import build_model

INPUT_HW = (96, 128)  # the same as conftest.INPUT_HW
REPO = Path(__file__).resolve().parents[3]


def _randomize_bn(model: torch.nn.Module, seed: int = 1) -> None:
    """Non-trivial BatchNorm statistics, as a trained model has (init: mean 0, var 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 3, *INPUT_HW, generator=g), torch.rand(2, 1, *INPUT_HW, generator=g))


def test_remap_keeps_known_rows_and_inits_new_ones() -> None:
    torch.manual_seed(0)
    old = build_model("nano", 3).eval()
    mapping = match_classes(["boat", "Person", "car"], ["person", "vehicle", "dog"],
                            "car=vehicle")
    new = remap_classes(old, mapping)
    assert new.num_classes == 3
    rgb, th = _inputs()
    with torch.no_grad():
        a, b = old(rgb, th), new(rgb, th)  # (B, 4 + nc, A)
    torch.testing.assert_close(b[:, :4], a[:, :4])  # boxes: untouched branch
    torch.testing.assert_close(b[:, 4 + 0], a[:, 4 + 1])  # data person <- model Person
    torch.testing.assert_close(b[:, 4 + 1], a[:, 4 + 2])  # vehicle <- car
    # dog is new: the 1 % prior bias, so its scores start near 0.01, unlike any model class
    for seq in new.head.cls:
        assert float(seq[-1].bias[2].detach()) == pytest.approx(-np.log(99.0), abs=1e-5)


def test_remap_many_to_one_is_the_mean() -> None:
    torch.manual_seed(0)
    old = build_model("nano", 2).eval()
    new = remap_classes(old, match_classes(["car", "van"], ["vehicle"], "car=vehicle,"
                                                                        "van=vehicle"))
    for o, n in zip(old.head.cls, new.head.cls, strict=True):
        torch.testing.assert_close(n[-1].weight[0], o[-1].weight.mean(0))


def test_freeze_early_stages() -> None:
    model = build_model("nano", 2)
    frozen = freeze_early(model, 2)
    assert any(n.startswith("fusion.") for n in frozen)
    assert any(n.startswith("backbone.stages.1.") for n in frozen)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(not n.startswith(("backbone.stem.", "backbone.stages.0.", "fusion."))
               for n in trainable)
    assert any(n.startswith("backbone.stages.2.") for n in trainable)
    assert any(n.startswith("head.cls.") for n in trainable)
    assert freeze_early(build_model("nano", 2), 0) == []
    with pytest.raises(ConfigError, match=r"pass 0\.\.3"):
        freeze_early(model, 4)


def test_split_holdout_is_the_last_block(synth_root: Path) -> None:
    from dlrmamba_core.engine.runs import open_pairs

    pairs = open_pairs("synth", synth_root, "train")
    train, held = split_holdout(pairs, 3)
    ids = sorted(e.image_id for e in pairs.entries)
    assert [e.image_id for e in held.entries] == ids[-3:]
    assert [e.image_id for e in train.entries] == ids[:-3]
    with pytest.raises(DatasetError, match="hold out fewer"):
        split_holdout(pairs, len(pairs))


def _export(tmp_path: Path, model: torch.nn.Module, names: list[str]) -> Path:
    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.models.io import save_model

    ckpt = save_model(tmp_path / "m.pt", model, names, INPUT_HW)
    return export_onnx(ckpt, tmp_path / "m.onnx").onnx_path


def test_onnx_to_torch_reproduces_the_model(tmp_path: Path) -> None:
    """A nano model with real BatchNorm statistics -> ONNX -> torch: same outputs (BN
    folded), and a file of another graph is refused."""
    torch.manual_seed(0)
    model = build_model("nano", 3).eval()
    _randomize_bn(model)
    onnx_path = _export(tmp_path, model, ["a", "b", "c"])
    back, meta = model_from_onnx(onnx_path)
    assert meta["class_names"] == ["a", "b", "c"] and meta["input_hw"] == list(INPUT_HW)
    assert meta["conversion"]["max_abs_diff"] < 1e-3
    rgb, th = _inputs(1)
    with torch.no_grad():
        torch.testing.assert_close(back(rgb, th), model(rgb, th), atol=2e-4, rtol=1e-4)
    bn = next(m for m in back.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.all(bn.running_mean == 0) and torch.all(bn.weight == 1)

    import onnx

    proto = onnx.load(str(onnx_path))
    for p in proto.metadata_props:
        if p.key == "dlrmamba.variant":
            p.value = "cnn"  # claims a variant whose graph differs
    onnx.save(proto, str(tmp_path / "wrong.onnx"))
    with pytest.raises(ModelFileError, match="does not match the registry"):
        model_from_onnx(tmp_path / "wrong.onnx")
    for p in proto.metadata_props:
        if p.key == "dlrmamba.variant":
            p.value = "nano"
    proto.metadata_props.add(key="dlrmamba.task", value="segment")  # but no num_protos
    onnx.save(proto, str(tmp_path / "seg_no_protos.onnx"))
    with pytest.raises(ModelFileError, match=r"no dlrmamba metadata.*num_protos"):
        model_from_onnx(tmp_path / "seg_no_protos.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelFileError, match="not a readable ONNX"):
        model_from_onnx(tmp_path / "junk.onnx")


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "models").glob("*.onnx")))
def test_every_shipped_model_traces_back_to_torch(name: str) -> None:
    """`train --init` / `finetune` / `distill --teacher` start from any shipped file: the
    segment student (its mask branch from the metadata) and files exported before a graph
    change that moved no weight (fusion_mamba_lr: other ops, the same weight-fed nodes) too;
    the parity check against onnxruntime is what accepts them."""
    model, meta = model_from_onnx(REPO / "models" / name)
    assert meta["conversion"]["max_abs_diff_scores"] < 1e-3
    assert (model.cfg.task == "segment") == name.endswith("_seg.onnx")


def test_restore_batchnorm_keeps_eval_outputs_and_makes_train_mode_match(
        synth_root: Path, tmp_path: Path) -> None:
    """The identity BatchNorms of a model traced from ONNX get statistics from data: the
    eval-mode function does not change, train mode (what `train --init M.onnx` and a student
    SVD-built from an ONNX teacher run) comes close to it, and the training RNG is untouched."""
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.engine.datasets import collate
    from dlrmamba_core.engine.runs import split_datasets

    torch.manual_seed(0)
    model = build_model("nano", len(SYNTH_CLASSES)).eval()
    _randomize_bn(model)
    back, _ = model_from_onnx(_export(tmp_path, model, list(SYNTH_CLASSES)))
    train_set, _, _ = split_datasets("synth", synth_root, "train", None, INPUT_HW, None)
    batch = collate([train_set[i] for i in range(4)])
    rgb, th = batch["rgb"], batch["thermal"]

    def outputs(m: torch.nn.Module, training: bool) -> torch.Tensor:
        m = copy.deepcopy(m).train(training)  # a train-mode pass updates the statistics
        with torch.no_grad():
            return torch.cat([f.flatten(1) for f in m.forward_features(rgb, th)], 1)

    before_eval, before_train = outputs(back, False), outputs(back, True)
    rng = torch.get_rng_state()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in back.modules())
    assert restore_batchnorm(back, train_set, frames=8, batch_size=4) == n_bn > 0
    assert torch.equal(torch.get_rng_state(), rng)
    after_eval, after_train = outputs(back, False), outputs(back, True)
    torch.testing.assert_close(after_eval, before_eval, atol=2e-3, rtol=1e-3)
    gap_before = (before_train - before_eval).abs().mean()
    gap_after = (after_train - after_eval).abs().mean()
    assert gap_after < 0.5 * gap_before, (gap_after, gap_before)
    bn = next(m for m in back.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.all(bn.running_mean == 0)
    torch.testing.assert_close(bn.weight, torch.sqrt(bn.running_var + bn.eps))
    # restored once: no BatchNorm is in the identity state any more
    assert restore_batchnorm(back, train_set, frames=4) == 0


def test_distill_from_a_shipped_style_onnx_teacher(synth_root: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """`distill --teacher M.onnx`: the student is SVD-built from the traced weights (with the
    BatchNorm statistics restored) and trains; the run records the ONNX teacher."""
    from dlrmamba_core.cli import main as cli_main
    from dlrmamba_core.data.synthetic import SYNTH_CLASSES

    caplog.set_level(logging.INFO, logger="dlrmamba_core.engine.finetune")
    torch.manual_seed(0)
    model = build_model("nano", len(SYNTH_CLASSES)).eval()
    _randomize_bn(model)
    teacher = _export(tmp_path, model, list(SYNTH_CLASSES))
    out = tmp_path / "run"
    rc = cli_main(["distill", "--teacher", str(teacher), "--data", str(synth_root), "--out",
                   str(out), "--max-steps", "1", "--finetune-epochs", "0", "--val-split",
                   "none", "--workers", "0", "--batch-size", "4", "--device", "cpu",
                   "--no-progress"])
    assert rc == 0
    state = torch.load(out / "distill" / "last.pt", weights_only=True)
    assert state["extra"]["teacher"] == str(teacher)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert f"BatchNorm statistics restored for {n_bn} layers" in caplog.text


@pytest.mark.slow
def test_shipped_student_onnx_converts() -> None:
    model, meta = model_from_onnx(REPO / "models" / "dlrmamba_student.onnx")
    assert meta["variant"] == "student" and model.num_classes == len(meta["class_names"]) == 7
    assert meta["conversion"]["max_abs_diff_scores"] < 1e-4


@pytest.fixture()
def nano_init(tmp_path: Path) -> Path:
    """A nano model file with two classes, one of them in the synthetic class map."""
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(0)
    model = build_model("nano", 2).eval()
    _randomize_bn(model)
    return save_model(tmp_path / "init.pt", model, ["Person", "dog"], INPUT_HW)


def test_finetune_short_run(synth_root: Path, nano_init: Path, tmp_path: Path) -> None:
    import dataclasses

    from dlrmamba_core.engine.runs import open_pairs
    from dlrmamba_core.models.io import load_model

    pairs = open_pairs("synth", synth_root, "train")
    cfg = dataclasses.replace(FINETUNE_DEFAULTS, batch_size=4, epochs=1, max_time_min=None,
                              fit_to_time=False, progress=False)
    out = tmp_path / "ft"
    res = finetune_model(nano_init, pairs, out, cfg, freeze=1)
    assert res["finished"] and res["global_step"] == len(pairs) // 4
    assert res["class_map"]["matched"] == {"Person": "person"}
    assert res["class_map"]["model_classes_ignored"] == ["dog"]
    init, _ = load_model(out / "init.pt")
    tuned, meta = load_model(res["best"])
    assert meta["class_names"] == list(pairs.class_names)
    assert meta["extra"]["class_map"]["matched"] == {"Person": "person"}
    a, b = init.state_dict(), tuned.state_dict()
    # frozen: fusion, stem, first stage; every BatchNorm statistic (frozen BN)
    for k in a:
        if k.startswith(("fusion.", "backbone.stem.", "backbone.stages.0.")) \
                or "running_" in k:
            torch.testing.assert_close(b[k], a[k], msg=k)
    assert not torch.equal(b["head.cls.0.2.bias"], a["head.cls.0.2.bias"])
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["frozen_parameters"] > 0 and summary["train_pairs"] == len(pairs)


def test_finetune_cli_and_eval_with_a_class_map(synth_root: Path, nano_init: Path,
                                                tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from dlrmamba_core.cli import main
    from dlrmamba_core.engine.runs import evaluate_file

    out = tmp_path / "cli"
    rc = main(["finetune", str(nano_init), "--data", str(synth_root), "--data-format", "synth",
               "--split", "train", "--out", str(out), "--holdout", "2", "--batch-size", "2",
               "--max-steps", "1", "--no-progress", "--freeze", "3"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "dlrmamba export" in printed and (out / "init.pt").is_file()
    # eval of the 2-class starting model on the 7-class data: only person is scored
    m = evaluate_file(nano_init, "synth", synth_root, "val", None, limit=2,
                      class_map="dog=")
    assert list(m["per_class"]) == ["person"]
    assert m["class_map"]["matched"] == {"Person": "person"}
    assert m["class_map"]["boxes_not_scored"]  # the other synthetic classes


def test_next_steps_name_the_checkpoint_that_exists() -> None:
    """The CLI's closing hint: best.pt when a validation ran, else last.pt, said so (it printed
    'dlrmamba eval None' when --max-steps ended a fine-tune before its first validation)."""
    from dlrmamba_core.engine.finetune import next_steps

    best = next_steps({"best": "o/best.pt", "last": "o/last.pt"}, "d", "synth", "o")
    assert best == ("next: dlrmamba eval o/best.pt --data d --data-format synth; "
                    "dlrmamba export o/best.pt --out o/model.onnx")
    last = next_steps({"best": None, "last": "o/last.pt"}, "d", "yolo", "o")
    assert "None" not in last
    assert last.startswith("next (no validation ran, so there is no best.pt")
    assert "dlrmamba eval o/last.pt --data d --data-format yolo" in last
    assert "dlrmamba export o/last.pt --out o/model.onnx" in last
