"""High-level runs: train a variant, distill a student, evaluate a model file.

These functions are what the CLI and the pipeline call. Each builds the datasets through the
data package's readers, checks the inputs (dataset with no pairs, class maps that differ,
resume from another run), and hands the loop to :class:`~dlrmamba_core.engine.trainer.Trainer`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
import time
from typing import Any

from dlrmamba_core.engine import distributed as ddp_utils
from dlrmamba_core.engine.config import DistillConfig, TaskConfig
from dlrmamba_core.engine.trainer import (
    DetectionTask,
    RunMeta,
    TrainConfig,
    Trainer,
    load_train_state,
)
from dlrmamba_core.errors import ConfigError, DatasetError, ModelFileError

log = logging.getLogger(__name__)

DEFAULT_INPUT_HW = (256, 320)


def open_pairs(data_format: str, root: str | os.PathLike[str], split: str | None) -> Any:
    """Open a dataset split with the data package's reader and check it has pairs.

    Raises:
        DatasetError: the path does not exist or holds no RGB + thermal pairs.
    """
    from dlrmamba_core.data.readers import open_dataset

    path = Path(root)
    if not path.exists():
        raise DatasetError(f"{path}: no such dataset folder; pass --data with the dataset root")
    ds = open_dataset(data_format, path, split=split)
    if len(ds) == 0:
        unpaired = list(getattr(ds, "unpaired", []))
        hint = f" ({len(unpaired)} unpaired files, e.g. {unpaired[:3]})" if unpaired else ""
        raise DatasetError(
            f"{path}: no RGB + thermal pairs found for split {split!r} with --data-format "
            f"{data_format}{hint}; check the path, the split name and the format")
    return ds


def split_datasets(data_format: str, data_root: str | os.PathLike[str], train_split: str,
                   val_split: str | None, input_hw: tuple[int, int],
                   cache_dir: str | os.PathLike[str] | None, cache_workers: int = 0,
                   masks: bool = False) -> tuple[Any, Any, list[str]]:
    """(augmenting training set, validation set or None, class names) of one dataset.

    Without ``cache_dir`` the training set is the data package's dataset over the reader and
    the validation set the reader itself; with it both come from ``engine.cache``. With
    ``masks`` (``--task segment``) the training items carry instance masks at the prototype
    stride (a cache stores them in its own ``..._masks`` folder); the validation set needs
    none (segm evaluation reads the reader's masks in original pixels).

    Raises:
        DatasetError: ``masks`` on a dataset without instance masks.
    """
    from dlrmamba_core.engine.datasets import detection_dataset
    from dlrmamba_core.models.segment import PROTO_STRIDE

    train_pairs = open_pairs(data_format, data_root, train_split)
    val_pairs = open_pairs(data_format, data_root, val_split) if val_split else None
    names = list(train_pairs.class_names)
    if masks and not getattr(train_pairs, "has_masks", False):
        raise DatasetError(
            f"--task segment needs instance masks, but the {train_split!r} split of {data_root} "
            f"(--data-format {data_format}) has none (no COCO segmentation or YOLO-seg "
            "polygons); train a detector (--task detect), or use a dataset with masks "
            "(`dlrmamba data gen` writes them; older synthetic benchmarks need regenerating)")
    if cache_dir is None:
        if masks:
            from dlrmamba_core.data.torch_dataset import DetectionDataset

            train = DetectionDataset(train_pairs, input_hw, augment=True, masks=True,
                                     mask_stride=PROTO_STRIDE)
            return train, val_pairs, names
        return detection_dataset(train_pairs, input_hw, augment=True), val_pairs, names
    from dlrmamba_core.engine.cache import cached_dataset

    train_set = cached_dataset(train_pairs, data_format, data_root, train_split, input_hw,
                               cache_dir, augment=True, workers=cache_workers, masks=masks,
                               mask_stride=PROTO_STRIDE)
    val_set = None if val_pairs is None else cached_dataset(
        val_pairs, data_format, data_root, val_split, input_hw, cache_dir, augment=False,
        workers=cache_workers)
    if masks and val_set is not None:
        val_set.pairs = val_pairs  # where segm evaluation finds the ground-truth masks
    return train_set, val_set, names


def check_class_names(source: str, theirs: list[str], ours: list[str]) -> None:
    """Raise when a checkpoint's class map differs from the dataset's.

    Raises:
        ModelFileError: the class count or names differ.
    """
    if list(theirs) != list(ours):
        raise ModelFileError(
            f"{source}: the checkpoint has {len(theirs)} classes {list(theirs)}, the dataset "
            f"has {len(ours)} classes {list(ours)}; use a checkpoint trained on this class map "
            "(or train from scratch without it)")


def _load_model(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    from dlrmamba_core.models.io import load_model

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file; pass a .pt written by dlrmamba train")
    return load_model(p, map_location="cpu")


def train_model(
    variant: str,
    data_format: str,
    data_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig,
    input_hw: tuple[int, int] = DEFAULT_INPUT_HW,
    resume: str | os.PathLike[str] | None = None,
    init: str | os.PathLike[str] | None = None,
    train_split: str = "train",
    val_split: str | None = "val",
    overrides: dict[str, Any] | None = None,
    kind: str = "train",
    extra: dict[str, Any] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_workers: int = 0,
    task: TaskConfig | None = None,
) -> dict[str, Any]:
    """Train one detector variant (works under ``torchrun``).

    Args:
        variant: a name of ``models.list_variants()`` (ignored when ``init`` is given: the
            model file's variant is used).
        data_format: reader name of ``data.open_dataset``.
        data_root: dataset root.
        out_dir: run folder.
        cfg: hyper-parameters.
        input_hw: network input (h, w), multiples of 32.
        resume: ``last.pt`` of an interrupted run.
        init: start from this model file's weights (fine-tuning).
        train_split: split name for training.
        val_split: split name for validation (None: no validation).
        overrides: keyword overrides passed to ``build_model``.
        kind: run kind stored in the checkpoints ("train" or "finetune").
        extra: extra plain-typed metadata stored in the model files.
        cache_dir: pre-process the splits once into this folder (``engine.cache``) and train
            from it (same augmentation, applied to the cached arrays).
        cache_workers: processes that build the cache.
        task: detect (default) or segment, with the segment model's K and mask loss weights
            (a segment run needs a dataset with instance masks; ``--init`` may be a detect
            model: its weights start the segment model, the mask branch starts fresh).

    Returns:
        The summary of :meth:`Trainer.fit`.
    """
    import torch

    task = task or TaskConfig()
    task.validate()
    if input_hw[0] % 32 or input_hw[1] % 32:
        raise ConfigError(f"input size {input_hw} must be multiples of 32 (h, w)")
    info = ddp_utils.setup(cfg.device)
    try:
        train_set, val_set, names = split_datasets(data_format, data_root, train_split,
                                                   val_split, input_hw, cache_dir,
                                                   cache_workers, masks=task.segment)
        torch.manual_seed(cfg.seed)
        model_over = dict(overrides or {})
        if task.segment:
            model_over.update(task="segment", num_protos=task.num_protos)
        if init is not None:
            from dlrmamba_core.engine.finetune import load_init

            model, meta = load_init(init)  # a .pt, or a shipped .onnx traced back to torch
            check_class_names(str(init), list(meta["class_names"]), names)
            if Path(init).suffix == ".onnx":
                from dlrmamba_core.engine.finetune import restore_batchnorm

                restore_batchnorm(model, train_set, seed=cfg.seed)
            variant = meta["variant"]
            model = _model_for_task(model, task, str(init))
        else:
            from dlrmamba_core.models import build_model, list_variants

            if variant not in list_variants():
                raise ConfigError(f"unknown variant {variant!r}; choose one of "
                                  f"{list_variants()}")
            model = build_model(variant, len(names), **model_over)
        if resume is not None:
            _precheck_resume(resume, kind, variant, names)
        run_extra = dict(extra or {})
        if task.segment:
            run_extra["task"] = dataclasses.asdict(task)
        det_task = DetectionTask(model, cfg.modality, task.mask_gain, task.dice_gain)
        run_meta = RunMeta(kind, variant, names, (input_hw[0], input_hw[1]), run_extra)
        trainer = Trainer(det_task, model, train_set, val_set, cfg, out_dir, run_meta, info)
        if resume is not None:
            trainer.load_state(resume)
        return trainer.fit()
    finally:
        ddp_utils.cleanup(info)


def _model_for_task(model: Any, task: TaskConfig, source: str) -> Any:
    """The ``--init`` model for ``task``: itself when its task matches; a detect model's
    weights in a new segment model (mask branch freshly initialised) for ``--task segment``.

    Raises:
        ConfigError: a segment model for ``--task detect``, or a segment model whose K
            differs from ``--num-protos``.
    """
    from dlrmamba_core.models import build_from_config

    cfg = model.cfg
    if cfg.task == task.task:
        if task.segment and cfg.num_protos != task.num_protos:
            raise ConfigError(f"--init {source}: that model has {cfg.num_protos} prototypes, "
                              f"this run asks for {task.num_protos}; pass --num-protos "
                              f"{cfg.num_protos}")
        return model
    if not task.segment:
        raise ConfigError(f"--init {source} is a segment model; pass --task segment to keep "
                          "training it (a detect run would drop its mask branch)")
    seg = build_from_config(dataclasses.replace(cfg, task="segment",
                                                num_protos=task.num_protos))
    missing, unexpected = seg.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("protonet.", "mask_coef.")) for k in missing):
        raise ConfigError(f"--init {source}: its weights do not fit the segment model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    log.info("--init %s: detect weights loaded into a segment model (mask branch new)", source)
    return seg

def _precheck_resume(resume: str | os.PathLike[str], kind: str, variant: str,
                     names: list[str]) -> None:
    """Fail before building anything when ``resume`` belongs to another run."""
    state = load_train_state(resume)
    if state["variant"] != variant:
        raise ConfigError(
            f"--resume {resume}: that checkpoint is of variant {state['variant']!r}, this run "
            f"trains {variant!r}; pass --variant {state['variant']} or another checkpoint")
    if state["kind"] != kind:
        raise ConfigError(f"--resume {resume}: that checkpoint is from a {state['kind']!r} "
                          f"run, not {kind!r}; use the matching command")
    check_class_names(f"--resume {resume}", list(state["class_names"]), names)


def distill_model(
    teacher_path: str | os.PathLike[str],
    data_format: str,
    data_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig,
    distill: DistillConfig | None = None,
    resume: str | os.PathLike[str] | None = None,
    train_split: str = "train",
    val_split: str | None = "val",
    cache_dir: str | os.PathLike[str] | None = None,
    cache_workers: int = 0,
) -> dict[str, Any]:
    """The paper's schedule: low-rank init from the teacher -> SAD (or RS4D) -> fine-tune.

    Writes ``out_dir/distill/`` (the distillation phase, ``distill.method``) and
    ``out_dir/finetune/`` (task loss only, starting from the distilled EMA student).
    ``resume`` may be the ``last.pt`` of either phase. With ``distill.student`` (RS4D only)
    the student is that registry variant built from scratch instead of the SVD-built one.

    Args:
        teacher_path: the teacher's model file (``best.pt`` of ``dlrmamba train``, or a
            shipped ``.onnx``: its weights traced back to torch).
        data_format: reader name.
        data_root: dataset root.
        out_dir: run folder.
        cfg: distillation-phase hyper-parameters (the fine-tune phase's follow from them,
            ``DistillConfig.finetune_config``).
        distill: method, student, ratios, loss weights, RS4D settings, fine-tune length
            (defaults: SAD, the registry's student, the paper's weights).
        resume: a phase's ``last.pt``.
        train_split: training split.
        val_split: validation split.
        cache_dir, cache_workers: as in :func:`train_model`.

    Returns:
        ``{"distill": summary, "finetune": summary or None}``.
    """
    import torch

    from dlrmamba_core.engine.distill import DistillTask
    from dlrmamba_core.models import student_from_teacher
    from dlrmamba_core.models.student import redraw_parameters

    distill = distill or DistillConfig()
    distill.validate()
    rank_ratio, state_ratio, weights = distill.rank_ratio, distill.state_ratio, distill.weights
    finetune_cfg = distill.finetune_config(cfg)
    info = ddp_utils.setup(cfg.device)
    try:
        t_start = time.monotonic()
        teacher_onnx = False
        if Path(teacher_path).suffix == ".onnx":
            # A shipped teacher (models/dlrmamba_teacher.onnx): its weights traced back to
            # torch and checked against onnxruntime, as `train --init` does.
            from dlrmamba_core.engine.finetune import load_init

            teacher, tmeta = load_init(teacher_path)
            teacher_onnx = True
        else:
            teacher, tmeta = _load_model(teacher_path)
        if teacher.cfg.task != "detect":
            raise ConfigError(f"--teacher {teacher_path} is a {teacher.cfg.task} model; "
                              "distillation covers detect models only so far: distil its "
                              "detect form, then `dlrmamba train --task segment --init` the "
                              "student")
        input_hw = (int(tmeta["input_hw"][0]), int(tmeta["input_hw"][1]))
        log.info("teacher %s loaded (%s, input %s)", teacher_path, tmeta.get("variant"),
                 input_hw)
        # Check the class map before any (possibly long) cache build.
        names = list(open_pairs(data_format, data_root, train_split).class_names)
        check_class_names(f"--teacher {teacher_path}", list(tmeta["class_names"]), names)
        train_set, val_set, names = split_datasets(data_format, data_root, train_split,
                                                   val_split, input_hw, cache_dir,
                                                   cache_workers)
        log.info("datasets ready (%d train pairs) after %.1f s", len(train_set),
                 time.monotonic() - t_start)
        if teacher_onnx:  # the student built from it trains with BatchNorm statistics
            from dlrmamba_core.engine.finetune import restore_batchnorm

            restore_batchnorm(teacher, train_set, seed=cfg.seed)
        torch.manual_seed(cfg.seed)
        extra: dict[str, Any] = {"teacher": str(teacher_path),
                                 "distill_method": distill.method,
                                 "distill_weights": dataclasses.asdict(weights)}
        if distill.method == "rs4d":
            extra["rs4d"] = dataclasses.asdict(distill.rs4d)
        if distill.terms_epochs is not None:
            extra["terms_epochs"] = distill.terms_epochs
        if distill.student is None:
            student = student_from_teacher(teacher, rank_ratio, state_ratio)
            log.info("student built from the teacher by truncated SVD (rank ratio %.2f, state "
                     "ratio %.2f) after %.1f s", rank_ratio, state_ratio,
                     time.monotonic() - t_start)
            extra.update(rank_ratio=rank_ratio, state_ratio=state_ratio)
            if distill.student_init == "random":
                redraw_parameters(student)
                log.info("student weights redrawn at random (--student-init random): the "
                         "SVD-built shape without the SVD init")
            extra["student_init"] = distill.student_init
        else:
            from dlrmamba_core.models import build_model

            student = build_model(distill.student, len(names)).to(
                next(teacher.parameters()).device)
            log.info("student %s built from scratch (random init)", distill.student)
            extra["student_init"] = "scratch"
        variant = student.cfg.variant
        phase = "distill"
        if resume is not None:
            state = load_train_state(resume)
            phase = state["kind"]
            if phase not in ("distill", "finetune"):
                raise ConfigError(f"--resume {resume}: a {phase!r} checkpoint; distill resumes "
                                  "from its own distill/last.pt or finetune/last.pt")
            _precheck_resume(resume, phase, variant, names)
            method = (state.get("extra") or {}).get("distill_method", "sad")
            if method != distill.method:
                raise ConfigError(f"--resume {resume}: that run distilled with --method "
                                  f"{method}, this one with --method {distill.method}; pass "
                                  f"--method {method} to continue it")
            terms = (state.get("extra") or {}).get("terms_epochs")
            if phase == "distill" and terms != distill.terms_epochs:
                def shown(n: int | None) -> str:
                    return "unset (every epoch)" if n is None else str(n)

                raise ConfigError(f"--resume {resume}: that run had --terms-epochs "
                                  f"{shown(terms)}, this one {shown(distill.terms_epochs)}; "
                                  "continue it with the same value")
        out = Path(out_dir)
        result: dict[str, Any] = {"distill": None, "finetune": None}
        if phase == "distill":
            task = DistillTask(student, teacher, weights, cfg.modality, method=distill.method,
                               rs4d=distill.rs4d, terms_epochs=distill.terms_epochs)
            log.info("distillation task ready after %.1f s", time.monotonic() - t_start)
            dcfg = dataclasses.replace(cfg, find_unused_parameters=True)
            trainer = Trainer(task, student, train_set, val_set, dcfg, out / "distill",
                              RunMeta("distill", variant, names, input_hw, extra), info)
            if resume is not None:
                trainer.load_state(resume)
            result["distill"] = trainer.fit()
            done = result["distill"]["finished"] or result["distill"]["truncated"]
            if not done or finetune_cfg is None:
                return result
            # Fine-tune starts from the distilled EMA student (what was validated).
            student.load_state_dict(trainer.ema.module.state_dict())
            resume = None
        if finetune_cfg is None:
            raise ConfigError(f"--resume {resume}: a fine-tune checkpoint, but "
                              "--finetune-epochs is 0; pass the fine-tune epochs")
        ft = Trainer(DetectionTask(student, finetune_cfg.modality), student, train_set,
                     val_set, finetune_cfg, out / "finetune",
                     RunMeta("finetune", variant, names, input_hw, extra), info)
        if resume is not None:
            ft.load_state(resume)
        result["finetune"] = ft.fit()
        return result
    finally:
        ddp_utils.cleanup(info)


def evaluate_file(
    model_path: str | os.PathLike[str],
    data_format: str,
    data_root: str | os.PathLike[str],
    split: str | None,
    out_dir: str | os.PathLike[str] | None,
    modality: str | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    limit: int | None = None,
    plots: bool = True,
    group_by: str | None = None,
    class_map: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """COCO-evaluate a ``.pt`` or ``.onnx`` model file on a dataset split.

    ``progress``: a bar over the images (None: when stderr is a terminal).

    ``group_by`` adds mAP per value of a reader image attribute (see ``evaluate.evaluate``).
    ``class_map`` (``MODEL=DATA,...``; None: match by name) maps the model's classes onto
    the dataset's when they differ (``data.classmap``; the report lists what was ignored).

    ``.onnx`` files run through the runtime ``Detector`` (boxes in original RGB pixels);
    ``.pt`` files through torch at the checkpoint's input size. Writes ``metrics.json`` and
    the PNGs to ``out_dir`` when given.
    """
    from dlrmamba_core.engine.evaluate import evaluate, write_report

    path = Path(model_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file; pass a .onnx or .pt model")
    pairs = open_pairs(data_format, data_root, split)
    names = list(pairs.class_names)
    if path.suffix == ".onnx":
        modality = modality or _card_modality(path)
        metrics = evaluate(str(path), pairs, names, modality=modality or "fused",
                           limit=limit, group_by=group_by, class_map=class_map,
                           progress=progress)
    else:
        model, meta = _load_model(path)
        modality = modality or (meta.get("extra") or {}).get("modality", "fused")
        metrics = evaluate(model, pairs, names, tuple(meta["input_hw"]), batch_size=batch_size,
                           device=device, modality=modality or "fused", limit=limit,
                           group_by=group_by, class_map=class_map,
                           model_class_names=list(meta["class_names"]), progress=progress)
    metrics["model"] = str(path)
    metrics["modality"] = modality or "fused"
    if out_dir is not None:
        write_report(metrics, list(metrics["per_class"]), out_dir, plots=plots)  # scored
    return metrics


def _card_modality(onnx_path: Path) -> str | None:
    import json

    card = onnx_path.with_suffix(".json")
    if card.is_file():
        try:
            return json.loads(card.read_text()).get("modality")
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{card}: model card is not valid JSON ({exc})") from exc
    return None
