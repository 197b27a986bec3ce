"""One source for every default: the train/distill options come from the config dataclasses,
``dlrmamba distill`` with no options builds the shipped student, the trainer leaves its
caller's config alone."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
import json
from pathlib import Path
import typing

import pytest

from dlrmamba_core.cli import build_parser
from dlrmamba_core.cli import main as cli_main
from dlrmamba_core.engine.cli import add_config_args, config_from_args, field_help
from dlrmamba_core.engine.config import (
    DISTILL_EPOCHS,
    DistillConfig,
    DistillWeights,
    RS4DConfig,
    TrainConfig,
)
from dlrmamba_core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
REQUIRED = {"train": ["--data", "d", "--out", "o"],
            "distill": ["--teacher", "t.pt", "--data", "d", "--out", "o"]}


def _other_value(cfg: object, f: dataclasses.Field[typing.Any]) -> tuple[list[str], object]:
    """Command-line words that set field ``f`` to a non-default value, and that value."""
    hint = typing.get_type_hints(type(cfg))[f.name]
    default = getattr(cfg, f.name)
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    args = typing.get_args(hint)
    kind = next(a for a in args if a is not type(None)) if type(None) in args else hint
    if kind is bool:
        return [flag if not default else "--no-" + flag[2:]], not default
    if typing.get_origin(kind) is typing.Literal:
        value = next(c for c in typing.get_args(kind) if c != default)
        return [flag, str(value)], value
    if kind is int:
        value = (default or 0) + 3
        return [flag, str(value)], value
    if kind is float:
        value = round((default or 0.0) * 0.5 + 0.125, 6)
        return [flag, repr(value)], value
    if kind is str:
        return [flag, "cuda:1"], "cuda:1"
    if kind is DistillWeights:
        return [flag, "svd=0,feat=2"], DistillWeights(svd=0.0, feat=2.0)
    if kind is RS4DConfig:
        return [flag, "mask_max=0.7,features=neck"], RS4DConfig(mask_max=0.7, features="neck")
    raise AssertionError(f"no test value for {f.name}: {hint}")


def _help(parser: argparse.ArgumentParser, command: str) -> str:
    """The ``--help`` text of one subcommand."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return str(sub.choices[command].format_help())


@pytest.mark.parametrize(("command", "cls"), [("train", TrainConfig), ("distill", TrainConfig),
                                              ("distill", DistillConfig)])
def test_every_config_field_is_a_cli_option(command: str, cls: type) -> None:
    defaults = TrainConfig(epochs=DISTILL_EPOCHS) if command == "distill" and \
        cls is TrainConfig else cls()
    parser = build_parser()
    base = config_from_args(cls, parser.parse_args([command, *REQUIRED[command]]))
    assert base == defaults  # defaults come from the dataclass
    for f in dataclasses.fields(cls):
        if command == "distill" and f.name == "find_unused_parameters":
            assert "--find-unused-parameters" not in _help(parser, "distill")  # always on
            continue
        words, value = _other_value(defaults, f)
        parsed = config_from_args(cls, parser.parse_args([command, *REQUIRED[command], *words]))
        assert getattr(parsed, f.name) == value, f.name
        assert parsed == dataclasses.replace(defaults, **{f.name: value}), f.name


def test_help_comes_from_the_docstrings() -> None:
    text = _help(build_parser(), "distill")
    for needle in ("SGD momentum (AdamW beta1)", "EMA ramp length in steps",
                   "max global gradient L2 norm", "fine-tune peak lr as a fraction",
                   "(default: 0.937)", "--weights K=V,..."):
        assert needle in " ".join(text.split()), needle

    @dataclass
    class Undocumented:
        """No attributes section."""

        x: int = 1

    with pytest.raises(ConfigError, match=r"no docstring entry for fields \['x'\]"):
        field_help(Undocumented)

    @dataclass
    class Odd:
        """A field of a type with no command-line form.

        Attributes:
            xs: a list.
        """

        xs: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="no command-line form"):
        add_config_args(argparse.ArgumentParser(), Odd())


def _shipped_student_config() -> dict[str, typing.Any]:
    """The architecture of the shipped student: its card -> the run in the results file."""
    card = json.loads((REPO / "models" / "dlrmamba_student.json").read_text())
    results = json.loads((REPO / "models" / card["training"]["results"]).read_text())
    return dict(results["models"][card["training"]["run"]]["config"])


def test_distill_without_options_builds_the_shipped_student(synth_root: Path,
                                                            tmp_path: Path) -> None:
    import torch

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.models import build_model, get_config, student_from_teacher
    from dlrmamba_core.models.io import save_model

    shipped = _shipped_student_config()
    registry = get_config("student", len(SYNTH_CLASSES)).to_dict()
    assert {k: registry[k] for k in shipped if k != "num_classes"} == \
        {k: v for k, v in shipped.items() if k != "num_classes"}
    # The distill defaults build exactly that from the registry's teacher ...
    dcfg = config_from_args(DistillConfig, build_parser().parse_args(["distill",
                                                                      *REQUIRED["distill"]]))
    torch.manual_seed(0)
    teacher = build_model("teacher", len(SYNTH_CLASSES))
    assert student_from_teacher(teacher, dcfg.rank_ratio, dcfg.state_ratio).cfg.to_dict() == \
        registry
    # ... and so does the command itself (run length options only: one step, no fine-tune).
    teacher_pt = save_model(tmp_path / "teacher.pt", teacher, list(SYNTH_CLASSES), (96, 128))
    rc = cli_main(["distill", "--teacher", str(teacher_pt), "--data", str(synth_root),
                   "--out", str(tmp_path / "run"), "--max-steps", "1", "--finetune-epochs",
                   "0", "--val-split", "none", "--workers", "0", "--batch-size", "4",
                   "--device", "cpu", "--no-progress"])
    assert rc == 0
    state = torch.load(tmp_path / "run" / "distill" / "last.pt", weights_only=True)
    assert state["variant"] == "student"
    assert state["extra"]["rank_ratio"] == shipped["rank_ratio"]
    student = {k[len("detector."):]: v.shape for k, v in state["task"].items()
               if k.startswith("detector.")}
    expect = {k: v.shape for k, v in build_model("student", len(SYNTH_CLASSES))
              .state_dict().items()}
    assert student == expect


def test_trainer_does_not_change_its_callers_config(synth_root: Path, tmp_path: Path) -> None:
    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.engine.datasets import detection_dataset
    from dlrmamba_core.engine.trainer import DetectionTask, RunMeta, Trainer
    from dlrmamba_core.models import build_model

    pairs = open_dataset("synth", synth_root, split="train")
    model = build_model("nano", len(pairs.class_names))
    cfg = TrainConfig(epochs=5, batch_size=4, num_workers=0, device="cpu", progress=False)
    before = dataclasses.replace(cfg)
    data = detection_dataset(pairs, (96, 128), augment=False)
    trainer = Trainer(DetectionTask(model), model, data, None, cfg, tmp_path,
                      RunMeta("train", "nano", list(pairs.class_names), (96, 128)))
    trainer._set_epochs(2)  # what fit_to_time does after the first epochs
    assert trainer.cfg.epochs == 2 and cfg == before


def test_distill_config_checks_and_finetune_phase() -> None:
    with pytest.raises(ConfigError, match="rank_ratio must be in"):
        DistillConfig(rank_ratio=1.5).validate()
    cfg = TrainConfig(lr=0.01, warmup_epochs=3.0, seed=4)
    ft = DistillConfig(finetune_epochs=7, finetune_lr=0.5).finetune_config(cfg)
    assert ft is not None and (ft.epochs, ft.lr, ft.warmup_epochs, ft.seed) == (7, 0.005, 1.0, 5)
    assert DistillConfig(finetune_epochs=0).finetune_config(cfg) is None
    assert DistillWeights.parse(DistillWeights(svd=0.25).format()) == DistillWeights(svd=0.25)
    with pytest.raises(ConfigError, match="bad item"):
        DistillWeights.parse("speed=1")


def test_distill_defaults_build_every_registered_student() -> None:
    """For each registered teacher -> student pair, the student config at the distill
    defaults (``student_config``, what ``student_from_teacher`` builds) is exactly the
    registry's (one source for the ratios)."""
    from dlrmamba_core.models import list_variants
    from dlrmamba_core.models.config import get_config, student_config, student_variant

    dcfg = DistillConfig()
    pairs = [(v, student_variant(get_config(v, 1))) for v in list_variants()
             if get_config(v, 1).rank_ratio is None]
    # Registered pairs only ("student" is also the fallback name of unregistered teachers).
    pairs = [(t, s) for t, s in pairs if s in list_variants() and (s != "student"
                                                                    or t == "teacher")]
    assert ("teacher", "student") in pairs and len(pairs) > 1
    for teacher_name, student_name in pairs:
        built = student_config(get_config(teacher_name, 3), dcfg.rank_ratio, dcfg.state_ratio)
        assert built == get_config(student_name, 3), (teacher_name, student_name)


def test_student_init_random_keeps_the_shape_and_drops_the_svd_weights(
        synth_root: Path, tmp_path: Path, nano_teacher: Path) -> None:
    """``--student-init random``: the SVD-built student's shape with fresh weights and norm
    statistics (the
    "random init + SAD" ablation), recorded in the checkpoint; refused with --student."""
    import torch

    from dlrmamba_core.models import student_from_teacher
    from dlrmamba_core.models.detector import DetectorNet
    from dlrmamba_core.models.io import load_model
    from dlrmamba_core.models.student import redraw_parameters

    teacher, _ = load_model(nano_teacher)
    for mod in teacher.modules():  # a trained teacher's norm statistics are not the defaults
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_var.fill_(2.0)
    svd = student_from_teacher(teacher, 0.5, 0.5)
    student = student_from_teacher(teacher, 0.5, 0.5)
    torch.manual_seed(3)
    redraw_parameters(student)
    torch.manual_seed(3)
    fresh = DetectorNet(student.cfg)
    for (name, p), (_, f) in zip(student.named_parameters(), fresh.named_parameters(),
                                 strict=True):
        assert torch.equal(p, f), name
    assert any(not torch.equal(p, q) for p, q in zip(student.parameters(), svd.parameters(),
                                                     strict=True))
    # BatchNorm statistics are fresh too (student_from_teacher copied the teacher's).
    fresh_buffers = dict(fresh.named_buffers())
    assert all(torch.equal(v, fresh_buffers[k]) for k, v in student.named_buffers())
    assert any(not torch.equal(a, b) for (name, a), (_, b) in
               zip(svd.named_buffers(), student.named_buffers(), strict=True)
               if name.endswith("running_var"))
    rc = cli_main(["distill", "--teacher", str(nano_teacher), "--data", str(synth_root),
                   "--out", str(tmp_path / "run"), "--student-init", "random", "--max-steps",
                   "1", "--finetune-epochs", "0", "--val-split", "none", "--workers", "0",
                   "--batch-size", "4", "--device", "cpu", "--no-progress"])
    assert rc == 0
    state = torch.load(tmp_path / "run" / "distill" / "last.pt", weights_only=True)
    assert state["extra"]["student_init"] == "random"
    with pytest.raises(ConfigError, match="--student-init"):
        DistillConfig(method="rs4d", student="nano", student_init="random").validate()
