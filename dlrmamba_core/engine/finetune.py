"""``dlrmamba finetune``: adapt a shipped (or trained) model to a few labelled pairs of your own.

What it does, in order:

1. **Weights.** A ``.pt`` model file loads as usual (``models.io.load_model``,
   ``weights_only=True``). A shipped ``.onnx`` (``models/``) is turned back into torch weights
   by :func:`model_from_onnx`: the model is rebuilt from the registry (variant and class map
   from the ONNX metadata), exported once with distinct probe values (~10 s), and each
   initializer of that probe export is traced to the torch tensor it came from (same values,
   possibly reshaped or transposed). The shipped file's initializers at the same positions are
   then copied back. BatchNorm was folded into the convolutions by the exporter: the converted
   model carries the folded weights with identity BatchNorm (mean 0, variance 1 - eps, scale
   1). The result is checked against onnxruntime on the same inputs (max abs difference of
   the raw outputs, printed) before it is used. No ``.pt`` needs to be shipped.
2. **Classes.** The new model has the dataset's classes. Each data class that a model class
   maps to (``data.classmap``: by name, documented synonyms, or ``--class-map``) starts from
   that class's rows of the class branch (the mean of them when several map to it); classes
   the model does not know get freshly initialized rows with the 1 % prior; model classes the
   data lacks are dropped. Box branch, neck and backbone are kept.
3. **Small-data defaults.** Strong paired augmentation (mosaic, scale 0.5..1.5, flips, colour
   and thermal gain jitter), the pixel fusion, the stem and the first ``--freeze`` backbone
   stages frozen, BatchNorm statistics frozen (batches of 4 estimate them badly, and the
   converted ONNX has none), a short schedule fitted to ``--max-time-min`` (default 10
   minutes), prepared inputs cached in memory (the JPEG decoding is done once), a progress
   bar. Everything is settable (``dlrmamba finetune --help``).

Outputs (``--out``): ``init.pt`` (the starting model after step 2), ``best.pt`` /
``final.pt`` / ``last.pt`` and the logs of the trainer, ``finetune.json`` (class map, frozen
parameters, conversion check, timing). Export for the robot with ``dlrmamba export``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path
import time
from typing import Any

from dlrmamba_core.engine.config import TrainConfig
from dlrmamba_core.errors import ConfigError, DatasetError, ModelFileError

log = logging.getLogger(__name__)

__all__ = ["FINETUNE_DEFAULTS", "finetune_model", "freeze_early", "model_from_onnx",
           "remap_classes", "split_holdout", "strong_augment", "subset_pairs"]

#: Training defaults of ``dlrmamba finetune`` (a few dozen pairs on a 2-core CPU): a short
#: schedule fitted to 10 minutes, small batches, the paper's SGD learning rate (a run has
#: only a few hundred steps; gradient clipping keeps them stable), a fast EMA ramp.
FINETUNE_DEFAULTS = TrainConfig(
    epochs=40, batch_size=4, lr=0.01, warmup_epochs=1.0, min_lr_ratio=0.1, ema_decay=0.995,
    ema_tau=20.0, amp=False, num_workers=0, max_time_min=10.0, fit_to_time=True,
    val_every=5)

#: Backbone stages frozen by default (after the pixel fusion and the stem): of three.
DEFAULT_FREEZE = 2


def strong_augment() -> Any:
    """The ``AugmentConfig`` of fine-tuning: stronger than training's (few pairs)."""
    from dlrmamba_core.data.augment import AugmentConfig

    return AugmentConfig(hflip=0.5, affine=0.8, scale=(0.5, 1.5), translate=0.2,
                         rgb_jitter=0.8, brightness=0.4, contrast=0.4, thermal_jitter=0.8,
                         thermal_gain=(0.7, 1.4), thermal_offset=(-0.12, 0.12), mosaic=0.8)


# --------------------------------------------------------------------------------------------
# 1. Weights of a shipped ONNX model
# --------------------------------------------------------------------------------------------

def _transforms(p: Any) -> list[tuple[str, Any]]:
    """Candidate forms in which a torch tensor can appear as an ONNX initializer."""
    import numpy as np

    out = [("same", p)]
    if p.ndim >= 2:
        out.append(("swap", np.swapaxes(p, -1, -2)))
    return out


def model_from_onnx(path: str | os.PathLike[str], check: bool = True
                    ) -> tuple[Any, dict[str, Any]]:
    """Torch detector with the weights of a dlrmamba ONNX file (see the module docstring).

    Args:
        path: an ``.onnx`` written by ``dlrmamba export`` (with ``dlrmamba.*`` metadata).
        check: compare the rebuilt torch model with onnxruntime on two synthetic frames.

    Returns:
        (eval-mode model, meta): meta has ``variant``, ``class_names``, ``input_hw``,
        ``normalization`` and ``conversion`` (what was matched, the check's max abs diff).

    Raises:
        ModelFileError: not a dlrmamba ONNX, the registry's variant no longer has the shape
            of the file, an initializer could not be traced, or the check failed.
    """
    import tempfile

    import numpy as np
    import onnx
    from onnx import numpy_helper
    import torch

    from dlrmamba_core.deploy.export import _export_to, check_parity, parity_inputs
    from dlrmamba_core.models import build_from_config, get_config
    from dlrmamba_core.runtime.metadata import ModelInfo

    src = Path(path)
    try:
        shipped = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError and others for foreign files
        raise ModelFileError(f"{src} is not a readable ONNX file ({type(exc).__name__}); "
                             "pass a model of models/ or a .pt") from exc
    props = {p.key: p.value for p in shipped.metadata_props}
    try:
        names = list(json.loads(props["dlrmamba.class_names"]))
        hw = tuple(int(v) for v in json.loads(props["dlrmamba.input_hw"]))
        variant = props["dlrmamba.variant"]
        norm = json.loads(props.get("dlrmamba.normalization", "{}"))
        # A segment model says so in its metadata: its mask branch is part of the graph.
        seg = ({"task": "segment", "num_protos": int(props["dlrmamba.num_protos"])}
               if props.get("dlrmamba.task") == "segment" else {})
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{src}: no dlrmamba metadata ({exc}); only ONNX files written by "
                             "`dlrmamba export` can be fine-tuned") from exc
    if "dlrmamba.quantization" in props:
        raise ModelFileError(f"{src} is an INT8 model; fine-tune from the float ONNX or a .pt")
    model = build_from_config(get_config(variant, len(names), **seg)).eval()
    # Probe: every float tensor distinct random values, BatchNorm the identity (so a folded
    # conv weight equals the conv's own weight and the folded bias the BN shift).
    gen = torch.Generator().manual_seed(0)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.dtype.is_floating_point:
                t.copy_(torch.randn(t.shape, generator=gen))
        for bn in bns:
            bn.weight.fill_(1.0)
            assert bn.running_mean is not None and bn.running_var is not None  # tracked stats
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
    info = ModelInfo(names, (hw[0], hw[1]), variant, "probe", "probe", norm)
    with tempfile.TemporaryDirectory() as tmp:
        probe_path = os.path.join(tmp, "probe.onnx")
        _export_to(model, info, probe_path, 17, False)
        probe = onnx.load(probe_path)
    p_inits = list(probe.graph.initializer)
    s_arrays = {i.name: i for i in shipped.graph.initializer}
    # Correspondence through the graph: the initializer feeding the same input slot of the
    # same node (node names come from the module scopes, identical in both exports). The
    # exporter merges initializers with equal values, so counts may differ between files.
    # The merged copies are read through Identity nodes: resolve those to the initializer.
    alias = {n.output[0]: n.input[0] for n in shipped.graph.node
             if n.op_type == "Identity" and n.input[0] in s_arrays}
    s_feeds = {(n.name, slot): alias.get(x, x) for n in shipped.graph.node
               for slot, x in enumerate(n.input) if alias.get(x, x) in s_arrays}
    p_feeds: dict[str, list[tuple[str, int]]] = {}
    for n in probe.graph.node:
        for slot, x in enumerate(n.input):
            p_feeds.setdefault(x, []).append((n.name, slot))

    def ops(graph: Any) -> list[str]:
        return [n.op_type for n in graph.node if n.op_type != "Identity"]

    s_inits = list(shipped.graph.initializer)
    # Same initializers in the same order (no merged copies): pair them by position, which
    # does not depend on the other nodes (a newer scan implementation changes those);
    # otherwise through the graph: the node (named by its module scope) and input slot each
    # weight feeds. That needs the weight-fed nodes, not every op, to be the same: a graph
    # change that moves no weight (an activation before an upsample instead of after) still
    # traces, and the parity check below, then always on, decides.
    by_position = [tuple(i.dims) for i in p_inits] == [tuple(i.dims) for i in s_inits]
    graph_differs = not by_position and ops(probe.graph) != ops(shipped.graph)

    def trace(check: bool) -> tuple[Any, dict[str, Any]]:
        """The shipped weights into ``model`` (probe weights, identity BatchNorms), then
        the parity check when ``check``."""
        def shipped_for(idx: int) -> Any:
            if by_position:
                return s_inits[idx]
            probe_name = p_inits[idx].name
            for feed in p_feeds.get(probe_name, []):
                if feed in s_feeds:
                    return s_arrays[s_feeds[feed]]
            raise ModelFileError(f"{src}: no initializer at the place of {probe_name!r} in the "
                                 "graph; fine-tune from the run's .pt instead")
        bn_fixed = {f"{n}.{k}" for n, m in model.named_modules()
                    if isinstance(m, torch.nn.BatchNorm2d) for k in ("weight", "running_mean",
                                                                     "running_var")}
        sd = {k: v.detach().numpy() for k, v in model.state_dict().items()
              if v.dtype.is_floating_point and k not in bn_fixed}
        by_size: dict[int, list[str]] = {}
        for k, v in sd.items():
            by_size.setdefault(v.size, []).append(k)
        found: dict[str, tuple[int, str]] = {}
        for idx, init in enumerate(p_inits):
            arr = numpy_helper.to_array(init)
            if arr.dtype.kind != "f":
                continue
            for k in by_size.get(arr.size, []):
                if k in found:
                    continue
                form = next((f for f, cand in _transforms(sd[k])
                             if np.allclose(cand.reshape(arr.shape), arr, rtol=1e-5, atol=1e-6)),
                            None)
                if form is not None:
                    found[k] = (idx, form)
                    break
        missing = [k for k in sd if k not in found]
        if missing:
            raise ModelFileError(f"{src}: {len(missing)} weights could not be traced to the "
                                 f"ONNX file (e.g. {missing[:3]}); fine-tune from the run's .pt "
                                 "instead")
        new_sd = {k: v.clone() for k, v in model.state_dict().items()}
        for k, (idx, form) in found.items():
            arr = numpy_helper.to_array(shipped_for(idx))
            shape = sd[k].shape
            val = (arr.reshape(shape) if form == "same"
                   else np.swapaxes(arr.reshape((*shape[:-2], shape[-1], shape[-2])), -1, -2))
            new_sd[k] = torch.from_numpy(np.array(val, np.float32))  # a writable copy
        model.load_state_dict(new_sd)
        model.eval()
        conversion: dict[str, Any] = {"source": str(src), "tensors": len(found),
                                      "batchnorm_folded": len(bns)}
        if check:
            rep = check_parity(model, src, parity_inputs((hw[0], hw[1]), n=2, thermal_norm=norm))
            conversion["max_abs_diff"] = rep.max_abs_diff
            conversion["max_abs_diff_scores"] = rep.max_abs_diff_scores
            if rep.max_abs_diff_scores > 1e-3 or rep.max_abs_diff_boxes > 0.5:
                raise ModelFileError(
                    f"{src}: the rebuilt torch model disagrees with onnxruntime (scores "
                    f"{rep.max_abs_diff_scores:.2e}, boxes {rep.max_abs_diff_boxes:.2e} px); "
                    "fine-tune from the run's .pt instead")
            log.info("%s -> torch: %d tensors, max |torch - onnxruntime| %.2e", src, len(found),
                     rep.max_abs_diff)
        meta = {"variant": variant, "class_names": names, "input_hw": [hw[0], hw[1]],
                "normalization": norm, "conversion": conversion, "extra": {}}
        return model, meta

    try:
        return trace(check or graph_differs)
    except (ModelFileError, ValueError) as exc:
        if not graph_differs:
            raise
        raise ModelFileError(
            f"{src}: its graph does not match the registry's {variant!r} "
            f"({len(ops(shipped.graph))} vs {len(ops(probe.graph))} nodes or other ops) and "
            f"its weights could not be traced through it ({exc}): the variant changed since "
            "this file was exported; fine-tune from the run's .pt instead") from exc


def restore_batchnorm(model: Any, dataset: Any, frames: int = 64, batch_size: int = 16,
                      seed: int = 0, device: Any = "cpu") -> int:
    """Statistics again for the identity BatchNorms of a model traced from ONNX.

    :func:`model_from_onnx` gives each BatchNorm mean 0, variance ``1 - eps`` and scale 1 (the
    exporter folded the real ones into the convolutions): exact in eval mode, but a model
    *trained* from there (``train --init M.onnx``, a student SVD-built from ``distill --teacher
    M.onnx``) normalizes by batch statistics, which then rescale and shift every layer. This
    measures the mean ``m`` and variance ``v`` of each such BatchNorm's input over ``frames``
    frames of ``dataset`` (eval mode, the items training's first epoch would draw: the global
    RNGs are left as they were) and sets running mean ``m``, running variance ``v``, scale
    ``sqrt(v + eps)`` and shift ``shift + m``: eval mode gives the same outputs as before (up to
    float rounding) and train mode now gives about them too.

    Returns:
        How many BatchNorms were restored (0: none was in the identity state).
    """
    import torch

    from dlrmamba_core.engine.datasets import collate
    from dlrmamba_core.engine.sampling import SeededDataset

    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
           and m.running_mean is not None and m.running_var is not None
           and bool((m.running_mean == 0).all()) and bool((m.weight == 1).all())
           and bool(torch.allclose(m.running_var, torch.full_like(m.running_var, 1 - m.eps)))]
    if not bns:
        return 0
    sums: dict[int, list[Any]] = {}  # id(bn) -> [count, sum, sum of squares] (float64)

    def hook(mod: Any, args: tuple[Any, ...]) -> None:
        z = args[0].detach().double().transpose(0, 1).reshape(args[0].shape[1], -1)
        acc = sums.setdefault(id(mod), [0, 0.0, 0.0])
        acc[0] += z.shape[1]
        acc[1] = acc[1] + z.sum(1)
        acc[2] = acc[2] + (z * z).sum(1)

    handles = [bn.register_forward_pre_hook(hook) for bn in bns]
    was_training = model.training
    model.eval()
    data = SeededDataset(dataset, seed)
    n = min(frames, len(dataset))
    idx = [round(i * (len(dataset) - 1) / max(n - 1, 1)) for i in range(n)]
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                batch = collate([data[(0, i)] for i in idx[start:start + batch_size]])
                model(batch["rgb"].to(device), batch["thermal"].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    with torch.no_grad():
        for bn in bns:
            count, s1, s2 = sums[id(bn)]
            mean = s1 / count
            var = (s2 / count - mean * mean).clamp_min(0.0)
            bn.running_mean.copy_(mean.to(bn.running_mean))
            bn.running_var.copy_(var.to(bn.running_var))
            bn.weight.copy_(torch.sqrt(var + bn.eps).to(bn.weight))
            bn.bias.add_(mean.to(bn.bias))
    log.info("BatchNorm statistics restored for %d layers from %d frames (the ONNX had them "
             "folded into the convolutions)", len(bns), n)
    return len(bns)


def load_init(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any]]:
    """A model to start from: ``.onnx`` (:func:`model_from_onnx`) or ``.pt`` (load_model)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such model file; pass a shipped model (e.g. "
                             "models/dlrmamba_student_p5.onnx, the default) or a best.pt")
    if p.suffix == ".onnx":
        return model_from_onnx(p)
    from dlrmamba_core.models.io import load_model

    return load_model(p, map_location="cpu")


# --------------------------------------------------------------------------------------------
# 2. Classes
# --------------------------------------------------------------------------------------------

def remap_classes(model: Any, mapping: Any) -> Any:
    """A copy of ``model`` predicting ``mapping.data_names`` (see the module docstring).

    Args:
        model: a ``DetectorNet`` with ``mapping.model_names`` classes.
        mapping: a ``data.classmap.ClassMapping`` of the model's classes onto the data's.

    Returns:
        A new ``DetectorNet`` (eval mode) with ``len(mapping.data_names)`` classes.
    """
    import torch

    from dlrmamba_core.models import build_from_config

    if model.num_classes != len(mapping.model_names):
        raise ConfigError(f"class map of {len(mapping.model_names)} model classes for a model "
                          f"with {model.num_classes}")
    cfg = dataclasses.replace(model.cfg, num_classes=len(mapping.data_names))
    torch.manual_seed(0)
    new: Any = build_from_config(cfg)
    own = new.state_dict()
    keep = {k: v for k, v in model.state_dict().items() if own[k].shape == v.shape}
    new.load_state_dict({**own, **keep})
    with torch.no_grad():
        for old_seq, new_seq in zip(model.head.cls, new.head.cls, strict=True):
            old_pred, new_pred = old_seq[-1], new_seq[-1]  # Conv2d(width, nc, 1)
            for j in range(len(mapping.data_names)):
                src = mapping.sources_of(j)
                if src:  # known class: the model's rows (mean when several map here)
                    new_pred.weight[j] = old_pred.weight[src].mean(0)
                    new_pred.bias[j] = old_pred.bias[src].mean()
                # new class: the fresh init and the 1 % prior of DetectHead.reset_bias
    return new.eval()


# --------------------------------------------------------------------------------------------
# 3. Small-data training
# --------------------------------------------------------------------------------------------

def freeze_early(model: Any, stages: int) -> list[str]:
    """Freeze the pixel fusion, the stem and the first ``stages`` backbone stages.

    Returns:
        The names of the frozen parameters.

    Raises:
        ConfigError: ``stages`` outside 0..3, or a backbone without ``stem`` / ``downs`` /
            ``stages`` (other architectures: pass 0).
    """
    if not 0 <= stages <= 3:
        raise ConfigError(f"--freeze {stages}: the backbone has 3 stages; pass 0..3")
    bb = model.backbone
    if stages and not all(hasattr(bb, a) for a in ("stem", "downs", "stages")):
        raise ConfigError(f"--freeze {stages}: the {model.cfg.arch} backbone has no "
                          "stem/stages layout; pass --freeze 0")
    prefixes = ["fusion."] if stages else []
    if stages:
        prefixes.append("backbone.stem.")
        for i in range(stages):
            prefixes += [f"backbone.downs.{i}.", f"backbone.stages.{i}."]
    frozen = []
    for name, p in model.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen


def subset_pairs(pairs: Any, indices: list[int]) -> Any:
    """A reader ``PairDataset`` of some of ``pairs``' entries (same class map)."""
    from dlrmamba_core.data.readers.base import PairDataset

    return PairDataset(pairs.name, pairs.root, [pairs.entries[i] for i in indices],
                       list(pairs.class_names), [])


def split_holdout(pairs: Any, holdout: int) -> tuple[Any, Any]:
    """(first pairs, last ``holdout`` pairs) in image-id order: consecutive frames are
    correlated, so the held-out block is one block at the end, never a random sample.

    Raises:
        DatasetError: fewer than ``holdout + 1`` pairs.
    """
    order = sorted(range(len(pairs)), key=lambda i: pairs.entries[i].image_id)
    if holdout < 0 or holdout >= len(order):
        raise DatasetError(f"--holdout {holdout}: the data has {len(order)} pairs; hold out "
                           "fewer than that")
    return (subset_pairs(pairs, order[:len(order) - holdout]),
            subset_pairs(pairs, order[len(order) - holdout:]))


def _cached_dataset(pairs: Any, input_hw: tuple[int, int], augment: Any) -> Any:
    """``DetectionDataset`` whose pre-processed (not augmented) samples are kept in memory."""
    from dlrmamba_core.data.torch_dataset import DetectionDataset

    class CachedDetectionDataset(DetectionDataset):
        """Decodes and letterboxes each pair once (a few dozen pairs fit in memory)."""

        _memo: dict[int, Any]

        def prepared(self, i: int) -> Any:
            memo = self.__dict__.setdefault("_memo", {})
            if i not in memo:
                memo[i] = super().prepared(i)
            rgb, thermal, boxes, labels, meta = memo[i]
            return rgb.copy(), thermal.copy(), boxes.copy(), labels.copy(), dict(meta)

    return CachedDetectionDataset(pairs, input_hw, augment=True, config=augment)


def finetune_model(
    init: str | os.PathLike[str] | Any,
    train_pairs: Any,
    out_dir: str | os.PathLike[str],
    cfg: TrainConfig | None = None,
    class_map: str | None = None,
    freeze: int = DEFAULT_FREEZE,
    val_pairs: Any = None,
    augment: Any = None,
    init_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``init`` on ``train_pairs`` (see the module docstring).

    Args:
        init: model file (``.onnx`` / ``.pt``) or an already loaded ``DetectorNet`` (then
            ``init_meta`` gives its ``class_names``, ``input_hw`` and ``variant``).
        train_pairs: a reader ``PairDataset`` (any format of ``data.readers``).
        out_dir: run folder.
        cfg: hyper-parameters (default :data:`FINETUNE_DEFAULTS`).
        class_map: ``MODEL=DATA,...`` (None: match by name, ``data.classmap``).
        freeze: backbone stages frozen after the fusion and stem (0..3).
        val_pairs: validation ``PairDataset`` (None: the last EMA model is ``best.pt``).
        augment: ``AugmentConfig`` (default: :func:`strong_augment`).
        init_meta: meta of a loaded ``init``.

    Returns:
        The trainer's summary plus ``class_map``, ``frozen_parameters``, ``init`` and
        ``conversion`` (for an ONNX start).

    Raises:
        ConfigError: the class map matches nothing and names nothing new to learn.
    """
    import torch

    from dlrmamba_core.data.classmap import match_classes
    from dlrmamba_core.engine.fileio import write_json
    from dlrmamba_core.engine.trainer import DetectionTask, RunMeta, Trainer
    from dlrmamba_core.models.io import save_model

    cfg = cfg or FINETUNE_DEFAULTS
    t0 = time.monotonic()
    if isinstance(init, (str, os.PathLike)):
        model, meta = load_init(init)
        init_name = str(init)
    else:
        model, meta, init_name = init, dict(init_meta or {}), "<model>"
    if getattr(getattr(model, "cfg", None), "task", "detect") == "segment":
        raise ConfigError(f"finetune: {init_name} is a segment model; its mask branch is not "
                          "fine-tuned here yet: use `dlrmamba train --task segment --init "
                          f"{init_name}` on a dataset with masks and the same classes")
    hw = (int(meta["input_hw"][0]), int(meta["input_hw"][1]))
    data_names = list(train_pairs.class_names)
    mapping = match_classes(list(meta["class_names"]), data_names, class_map)
    for line in mapping.describe():
        log.info("class map: %s", line)
    model = remap_classes(model, mapping)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"init": init_name, "class_map": mapping.to_dict(), "freeze": freeze}
    save_model(out / "init.pt", model, data_names, hw, extra={"kind": "finetune-init", **extra})
    frozen = freeze_early(model, freeze)
    n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("fine-tuning %s: %d classes %s, %d pairs, %d of %d parameters trainable "
             "(fusion, stem and %d stages frozen; BatchNorm statistics frozen)",
             meta.get("variant"), len(data_names), data_names, len(train_pairs), n_train,
             sum(p.numel() for p in model.parameters()), freeze)
    train_set = _cached_dataset(train_pairs, hw, augment or strong_augment())
    torch.manual_seed(cfg.seed)
    task = _FrozenBNTask(DetectionTask(model, cfg.modality))
    run = RunMeta("finetune", str(meta.get("variant", model.cfg.variant)), data_names, hw,
                  extra)
    trainer = Trainer(task, model, train_set, val_pairs, cfg, out, run)
    result = trainer.fit()
    summary = {**result, "class_map": mapping.to_dict(), "frozen_parameters": len(frozen),
               "trainable_parameters": n_train, "init": init_name,
               "conversion": meta.get("conversion"), "train_pairs": len(train_pairs),
               "total_seconds": round(time.monotonic() - t0, 1),
               "train_config": dataclasses.asdict(trainer.cfg)}
    write_json(out / "finetune.json", summary)
    return summary


def _frozen_bn_task(inner: Any) -> Any:
    import torch

    class FrozenBNTask(torch.nn.Module):
        """The detection task with every BatchNorm kept in eval mode during training."""

        def __init__(self, task: Any) -> None:
            super().__init__()
            self.inner = task

        def train(self, mode: bool = True) -> FrozenBNTask:
            super().train(mode)
            for m in self.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
            return self

        def forward(self, *args: Any) -> Any:
            return self.inner(*args)

    return FrozenBNTask(inner)


_FrozenBNTask = _frozen_bn_task


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def cmd_finetune(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba finetune``."""
    from dlrmamba_core.engine.cli import config_from_args
    from dlrmamba_core.engine.runs import open_pairs

    cfg = config_from_args(TrainConfig, args)
    cfg.validate()
    pairs = open_pairs(args.data_format, args.data, args.split or None)
    val = None
    if args.holdout:
        pairs, val = split_holdout(pairs, args.holdout)
    elif args.val_split:
        val = open_pairs(args.data_format, args.data, args.val_split)
    result = finetune_model(args.model, pairs, args.out, cfg, class_map=args.class_map,
                            freeze=args.freeze, val_pairs=val)
    print(json.dumps({k: result[k] for k in ("best", "seconds", "global_step", "epoch",
                                             "best_metrics", "class_map", "conversion")},
                     indent=2))
    print(next_steps(result, args.data, args.data_format, args.out))
    return 0


def next_steps(result: dict[str, Any], data: str, data_format: str, out: str) -> str:
    """The commands that evaluate and export a fine-tune's model: its ``best.pt``, or its
    ``last.pt`` when no validation ran (e.g. ``--max-steps`` ended it within the first
    epoch), said so."""
    ckpt, note = result.get("best"), ""
    if ckpt is None:
        ckpt = result.get("last") or os.path.join(out, "last.pt")
        note = " (no validation ran, so there is no best.pt: these use the last weights)"
    return (f"next{note}: dlrmamba eval {ckpt} --data {data} --data-format {data_format}; "
            f"dlrmamba export {ckpt} --out {out}/model.onnx")


def register(subparsers: Any) -> None:
    """Add ``finetune`` to the ``dlrmamba`` command."""
    from dlrmamba_core.engine.cli import add_config_args

    p = subparsers.add_parser(
        "finetune", help="fine-tune a shipped or trained model on a few labelled pairs",
        description="Start from a model (.onnx of models/ or a .pt), keep the classes the data "
                    "shares with it, learn new ones, train a short schedule with strong "
                    "augmentation and frozen early stages (~10 min on a 2-core CPU). See "
                    "docs/finetune.md.")
    p.add_argument("model", help="starting model: a shipped .onnx (the default is "
                   "models/dlrmamba_student_p5.onnx) or a .pt")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--data-format", default="yolo",
                   help="dataset reader with options, e.g. yolo:thermal_dir=ir (see docs/"
                        "data_formats.md); default: yolo")
    p.add_argument("--split", default="", help="split to train on ('' = the whole folder)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--class-map", default=None, metavar="MODEL=DATA,...",
                   help="model class -> data class, e.g. person=person,car=vehicle; classes "
                        "not named are matched by name (default: by name only)")
    p.add_argument("--freeze", type=int, default=DEFAULT_FREEZE,
                   help="backbone stages frozen after the fusion and stem, 0..3 (default "
                        f"{DEFAULT_FREEZE})")
    p.add_argument("--holdout", type=int, default=0, metavar="N",
                   help="hold out the last N pairs (image-id order) for validation")
    p.add_argument("--val-split", default=None, help="validation split (instead of --holdout)")
    add_config_args(p.add_argument_group("training hyper-parameters (small-data defaults)"),
                    FINETUNE_DEFAULTS)
    p.set_defaults(func=cmd_finetune)

