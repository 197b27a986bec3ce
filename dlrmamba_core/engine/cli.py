"""``dlrmamba train | distill | eval`` (torch is imported inside the handlers).

The training options are generated from the configuration dataclasses
(``engine.config.TrainConfig``, ``DistillConfig``: :func:`add_config_args`), so every field is
settable, with its default and its docstring as help, and a new field needs no CLI code.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import re
import typing
from typing import Any, Literal, TypeVar

from dlrmamba_core.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--data-format", default="synth",
                   help="dataset reader: synth, yolo, coco, llvip, m3fd, flir, kaist, vedai or "
                        "dronevehicle (layouts: docs/data_formats.md), with reader options "
                        "after a colon, e.g. vedai:size=1024, dronevehicle:labels=union or "
                        "yolo:thermal_dir=ir,clip=1; default: synth")


def field_help(cls: type) -> dict[str, str]:
    """Per-field help of a dataclass: its docstring's ``Attributes:`` entries, one line each.

    Raises:
        ConfigError: a field has no entry (every option must say what it does).
    """
    doc = inspect.cleandoc(cls.__doc__ or "")
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    in_attrs = False
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            in_attrs = True
            continue
        if not in_attrs:
            continue
        if line and not line.startswith(" "):
            break  # the next section
        m = re.match(r"^ {4}(\w+): (.*)$", line)
        if m:
            current = entries.setdefault(m.group(1), [])
            current.append(m.group(2).strip())
        elif current is not None and line.strip():
            current.append(line.strip())
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in entries]
    if missing:
        raise ConfigError(f"{cls.__name__}: no docstring entry for fields {missing}; document "
                          "each field under 'Attributes:'")
    return {k: " ".join(v) for k, v in entries.items()}


def _field_type(hint: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    args = typing.get_args(hint)
    if type(None) in args and len(args) == 2:
        return next(a for a in args if a is not type(None)), True
    return hint, False


def add_config_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, defaults: Any,
                    skip: tuple[str, ...] = ()) -> None:
    """One option per field of the dataclass instance ``defaults`` (except ``skip``).

    Name ``--field-name`` (or the field's ``metadata["flag"]``), type from the annotation
    (bool: ``--x/--no-x``; Literal: choices; a dataclass with ``parse``: parsed from text),
    default from ``defaults``, help from the docstring (:func:`field_help`). The parsed value
    lands in ``args.<field name>``; :func:`config_from_args` builds the dataclass back.

    Raises:
        TypeError: a field type this generator does not handle.
    """
    cls = type(defaults)
    hints = typing.get_type_hints(cls)
    docs = field_help(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = getattr(defaults, f.name)
        kind, _ = _field_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "default": default}
        shown = default
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is Literal:
            kw["choices"] = typing.get_args(kind)
        elif kind in (int, float, str):
            kw["type"] = kind
            kw["metavar"] = flag.lstrip("-").upper().replace("-", "_")
        elif dataclasses.is_dataclass(kind) and hasattr(kind, "parse"):
            kw["type"] = kind.parse
            kw["metavar"] = "K=V,..."
            shown = default.format()
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no command-line form for type {kind}")
        kw["help"] = f"{docs[f.name].rstrip('.')} (default: {shown})".replace("%", "%%")
        parser.add_argument(flag, **kw)


def config_from_args(cls: type[T], args: argparse.Namespace, **over: Any) -> T:
    """The dataclass ``cls`` from the options :func:`add_config_args` added (plus ``over``)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)  # type: ignore
              if hasattr(args, f.name)}
    return cls(**{**values, **over})


def _run_args(p: argparse.ArgumentParser, defaults: Any, skip: tuple[str, ...] = ()) -> None:
    """Run location options, then every TrainConfig field but ``skip`` (defaults from
    ``defaults``)."""
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, plots)")
    p.add_argument("--resume", default=None, help="last.pt of an interrupted run")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="pre-process each split once into DIR and train from it (fast on GPU; "
                        "same paired augmentation, applied to the cached arrays)")
    p.add_argument("--cache-workers", type=int, default=None,
                   help="processes that build the cache (default: --workers)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="'none' to skip validation")
    add_config_args(p.add_argument_group("training hyper-parameters (engine.config.TrainConfig)"),
                    defaults, skip)


def _train_config(args: argparse.Namespace) -> Any:
    from dlrmamba_core.engine.config import TrainConfig

    cfg = config_from_args(TrainConfig, args)
    cfg.validate()
    return cfg


def _cache(args: argparse.Namespace) -> dict[str, Any]:
    workers = args.num_workers if args.cache_workers is None else args.cache_workers
    return {"cache_dir": args.cache, "cache_workers": workers}


def _val_split(args: argparse.Namespace) -> str | None:
    return None if args.val_split.lower() == "none" else args.val_split


def parse_input_size(values: list[int] | None) -> tuple[int, int]:
    """``--input-size H W`` -> (h, w), multiples of 32."""
    from dlrmamba_core.engine.runs import DEFAULT_INPUT_HW

    if not values:
        return DEFAULT_INPUT_HW
    h, w = values
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise ConfigError(f"--input-size {h} {w}: both must be positive multiples of 32")
    return h, w


def parse_weights(text: str) -> Any:
    """``task=1,svd=0.5,state=0.1,feat=1.5`` -> DistillWeights (omitted keys keep defaults)."""
    from dlrmamba_core.engine.config import DistillWeights

    return DistillWeights.parse(text)


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba train``."""
    from dlrmamba_core.engine.config import TaskConfig
    from dlrmamba_core.engine.runs import train_model

    task = config_from_args(TaskConfig, args)
    task.validate()
    overrides = {k: v for k, v in (("rank_ratio", args.rank_ratio), ("d_state", args.d_state))
                 if v is not None}
    result = train_model(args.variant, args.data_format, args.data, args.out, _train_config(args),
                         input_hw=parse_input_size(args.input_size), resume=args.resume,
                         init=args.init, train_split=args.train_split,
                         val_split=_val_split(args), overrides=overrides,
                         task=task, **_cache(args))
    print(json.dumps(result, indent=2))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba distill``."""
    from dlrmamba_core.engine.config import DistillConfig
    from dlrmamba_core.engine.runs import distill_model

    dcfg = config_from_args(DistillConfig, args)
    dcfg.validate()
    result = distill_model(args.teacher, args.data_format, args.data, args.out,
                           _train_config(args), dcfg, resume=args.resume,
                           train_split=args.train_split, val_split=_val_split(args),
                           **_cache(args))
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba eval``."""
    from dlrmamba_core.data.readers import resolve_split
    from dlrmamba_core.engine.evaluate import summarize
    from dlrmamba_core.engine.runs import evaluate_file

    split, note = resolve_split(args.data_format, args.data, args.split)
    if note:
        print(note)
    metrics = evaluate_file(args.model, args.data_format, args.data, split, args.out,
                            modality=args.modality, batch_size=args.batch_size,
                            device=args.device or "cpu", limit=args.limit,
                            group_by=args.group_by,
                            progress=False if args.no_progress else None,
                            class_map=args.class_map)
    print(summarize(metrics))
    if args.out:
        print(f"wrote {args.out}/metrics.json, pr_curves.png, confusion_matrix.png")
    return 0


def register(subparsers: Any) -> None:
    """Add ``train``, ``distill`` and ``eval`` to the ``dlrmamba`` command."""
    from dlrmamba_core.engine.config import (
        DISTILL_EPOCHS,
        DistillConfig,
        TaskConfig,
        TrainConfig,
    )

    p = subparsers.add_parser("train", help="train a detector variant",
                              description="Train a detector (works under torchrun for DDP).")
    p.add_argument("--variant", default="teacher", help="model variant (dlrmamba models)")
    _data_args(p)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="network input, multiples of 32 (default 256 320)")
    p.add_argument("--init", default=None, help="start from this model file's weights: a .pt "
                   "or a shipped .onnx (traced back to torch, as finetune does)")
    p.add_argument("--rank-ratio", type=float, default=None,
                   help="override the variant's low-rank ratio (student variants)")
    p.add_argument("--d-state", type=int, default=None,
                   help="override the variant's SSM state size N")
    add_config_args(p.add_argument_group("task (engine.config.TaskConfig)"), TaskConfig())
    _run_args(p, TrainConfig())
    p.set_defaults(func=cmd_train)

    d = subparsers.add_parser(
        "distill", help="low-rank student from a teacher: SVD init -> SAD (or RS4D) -> "
                        "fine-tune",
        description="Structure-Aware Distillation (paper schedule), or with --method rs4d "
                    "adaptive noise + masking feature distillation (docs/distillation.md). "
                    "With no options it builds the registry's student (the shipped one). Loss "
                    "weights task/svd/state/feat (sad) or task/rs4d (rs4d); set one to 0 to "
                    "switch it off (ablations).")
    d.add_argument("--teacher", required=True, help="teacher model file: the best.pt of "
                   "train, or a shipped .onnx (e.g. models/dlrmamba_teacher.onnx, traced back "
                   "to torch)")
    _data_args(d)
    add_config_args(d.add_argument_group("distillation (engine.config.DistillConfig)"),
                    DistillConfig())
    # find_unused_parameters: distillation always sets it (a loss weight of 0 leaves its
    # projections without gradients), so it is no option there.
    _run_args(d, TrainConfig(epochs=DISTILL_EPOCHS), skip=("find_unused_parameters",))
    d.set_defaults(func=cmd_distill)

    e = subparsers.add_parser("eval", help="COCO mAP of a .pt or .onnx model on a dataset",
                              description="COCO mAP50, mAP50:95, per-class AP (pycocotools), "
                                          "PR curves and confusion matrix PNGs, metrics JSON.")
    e.add_argument("model", help="model file: .onnx (runtime Detector) or .pt")
    _data_args(e)
    e.add_argument("--split", default="test",
                   help="split folder or split file of the dataset (default test); a dataset "
                        "without splits is evaluated whole (and it says so); '' = whole folder")
    e.add_argument("--out", default=None, help="folder for metrics.json and the PNGs")
    e.add_argument("--modality", choices=("fused", "rgb", "thermal"), default=None,
                   help="default: the model's own (from its checkpoint or model card)")
    e.add_argument("--batch-size", type=int, default=16,
                   help=".pt models: images per forward pass (default 16; .onnx runs one pair "
                        "at a time, as on the robot)")
    e.add_argument("--device", default=None,
                   help=".pt models: torch device, cpu or cuda[:N] (default cpu; .onnx runs on "
                        "CPU with onnxruntime)")
    e.add_argument("--no-progress", action="store_true",
                   help="no progress bar (shown on a terminal by default)")
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--group-by", default=None, metavar="ATTR",
                   help="also report mAP per value of an image attribute of the reader, e.g. "
                        "condition or scene (synthetic benchmark)")
    e.add_argument("--class-map", default=None, metavar="MODEL=DATA,...",
                   help="when the model's classes differ from the data's: model class -> data "
                        "class, e.g. person=person,car=vehicle (truck= ignores one); classes "
                        "not named are matched by name (default: by name only). Detections "
                        "of model classes the data lacks are dropped, boxes of data classes "
                        "the model lacks are not scored; both are reported")
    e.set_defaults(func=cmd_eval)
