"""``dlrmamba train | distill | eval`` (torch is imported inside the handlers)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from dlrmamba_core.errors import ConfigError

log = logging.getLogger(__name__)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--data-format", default="synth",
                   help="dataset reader (see `dlrmamba data --help`), with reader options "
                        "after a colon, e.g. vedai:size=1024 or dronevehicle:labels=union; "
                        "default: synth")


def _train_args(p: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, plots)")
    p.add_argument("--resume", default=None, help="last.pt of an interrupted run")
    p.add_argument("--modality", choices=("fused", "rgb", "thermal"), default="fused",
                   help="rgb/thermal: same detector with the other input zeroed")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=8, help="per process (paper: 8)")
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--warmup-epochs", type=float, default=3.0)
    p.add_argument("--workers", type=int, default=4, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    p.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                   help="also write last.pt every N steps (default: epoch ends only)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after N optimizer steps (checkpointed; resume continues)")
    p.add_argument("--max-time-min", type=float, default=None,
                   help="time budget: validate and save the models when it runs out")
    p.add_argument("--fit-to-time", action="store_true",
                   help="with --max-time-min: shorten --epochs after the first two so the whole "
                        "lr schedule fits the budget")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="pre-process each split once into DIR and train from it (fast on GPU; "
                        "same paired augmentation, applied to the cached arrays)")
    p.add_argument("--cache-workers", type=int, default=None,
                   help="processes that build the cache (default: --workers)")
    p.add_argument("--val-every", type=int, default=1, metavar="EPOCHS")
    p.add_argument("--val-max-images", type=int, default=None)
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val", help="'none' to skip validation")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _config(args: argparse.Namespace, **over: Any) -> Any:
    from dlrmamba_core.engine.trainer import TrainConfig

    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
        num_workers=args.workers, device=args.device, seed=args.seed, amp=not args.no_amp,
        checkpoint_every=args.checkpoint_every, max_steps=args.max_steps,
        val_every=args.val_every, val_max_images=args.val_max_images, modality=args.modality,
        progress=not args.no_progress, fit_to_time=args.fit_to_time,
        max_time_s=None if args.max_time_min is None else 60.0 * args.max_time_min)
    for k, v in over.items():
        setattr(cfg, k, v)
    cfg.validate()
    return cfg


def _cache(args: argparse.Namespace) -> dict[str, Any]:
    workers = args.workers if args.cache_workers is None else args.cache_workers
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
    from dlrmamba_core.engine.distill import DistillWeights

    w = DistillWeights()
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in ("task", "svd", "state", "feat"):
            raise ConfigError(f"--weights: bad item {item!r}; expected key=value with key in "
                              "task, svd, state, feat (e.g. task=1,svd=0.5,state=0.1,feat=1.5)")
        try:
            val = float(value)
        except ValueError as exc:
            raise ConfigError(f"--weights: {key}={value!r} is not a number") from exc
        if val < 0:
            raise ConfigError(f"--weights: {key}={val} must be >= 0 (0 switches it off)")
        setattr(w, key, val)
    return w


def cmd_train(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba train``."""
    from dlrmamba_core.engine.runs import train_model

    overrides = {k: v for k, v in (("rank_ratio", args.rank_ratio), ("d_state", args.d_state))
                 if v is not None}
    result = train_model(args.variant, args.data_format, args.data, args.out, _config(args),
                         input_hw=parse_input_size(args.input_size), resume=args.resume,
                         init=args.init, train_split=args.train_split,
                         val_split=_val_split(args), overrides=overrides,
                         **_cache(args))
    print(json.dumps(result, indent=2))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba distill``."""
    import dataclasses

    from dlrmamba_core.engine.runs import distill_model

    cfg = _config(args)
    ft = None
    if args.finetune_epochs > 0:
        ft = dataclasses.replace(cfg, epochs=args.finetune_epochs, lr=args.lr * args.finetune_lr,
                                 warmup_epochs=min(cfg.warmup_epochs, 1.0), seed=cfg.seed + 1)
    result = distill_model(args.teacher, args.data_format, args.data, args.out, cfg, ft,
                           rank_ratio=args.rank_ratio, state_ratio=args.state_ratio,
                           weights=parse_weights(args.weights), resume=args.resume,
                           train_split=args.train_split, val_split=_val_split(args),
                           **_cache(args))
    print(json.dumps(result, indent=2))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Handler of ``dlrmamba eval``."""
    from dlrmamba_core.engine.evaluate import summarize
    from dlrmamba_core.engine.runs import evaluate_file

    metrics = evaluate_file(args.model, args.data_format, args.data, args.split, args.out,
                            modality=args.modality, batch_size=args.batch_size,
                            device=args.device or "cpu", limit=args.limit,
                            group_by=args.group_by)
    print(summarize(metrics))
    if args.out:
        print(f"wrote {args.out}/metrics.json, pr_curves.png, confusion_matrix.png")
    return 0


def register(subparsers: Any) -> None:
    """Add ``train``, ``distill`` and ``eval`` to the ``dlrmamba`` command."""
    p = subparsers.add_parser("train", help="train a detector variant",
                              description="Train a detector (works under torchrun for DDP).")
    p.add_argument("--variant", default="teacher", help="model variant (dlrmamba models)")
    _data_args(p)
    _train_args(p, epochs=100, lr=0.01)
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                   help="network input, multiples of 32 (default 256 320)")
    p.add_argument("--init", default=None, help="start from this model file's weights")
    p.add_argument("--rank-ratio", type=float, default=None,
                   help="override the variant's low-rank ratio (student variants)")
    p.add_argument("--d-state", type=int, default=None,
                   help="override the variant's SSM state size N")
    p.set_defaults(func=cmd_train)

    d = subparsers.add_parser(
        "distill", help="low-rank student from a teacher: SVD init -> SAD -> fine-tune",
        description="Structure-Aware Distillation (paper schedule). Loss weights "
                    "task/svd/state/feat; set one to 0 to switch it off (ablations).")
    d.add_argument("--teacher", required=True, help="teacher model file (best.pt of train)")
    _data_args(d)
    _train_args(d, epochs=50, lr=0.01)
    d.add_argument("--rank-ratio", type=float, default=0.6,
                   help="rank of each factorized matrix / min(m, n) (paper: 0.50..0.65)")
    d.add_argument("--state-ratio", type=float, default=0.5, help="r_state / N")
    d.add_argument("--weights", default="task=1,svd=0.5,state=0.1,feat=1.5",
                   help="loss weights (paper defaults); 0 switches a loss off")
    d.add_argument("--finetune-epochs", type=int, default=10, help="0: no fine-tune phase")
    d.add_argument("--finetune-lr", type=float, default=0.2,
                   help="fine-tune lr as a fraction of --lr")
    d.set_defaults(func=cmd_distill)

    e = subparsers.add_parser("eval", help="COCO mAP of a .pt or .onnx model on a dataset",
                              description="COCO mAP50, mAP50:95, per-class AP (pycocotools), "
                                          "PR curves and confusion matrix PNGs, metrics JSON.")
    e.add_argument("model", help="model file: .onnx (runtime Detector) or .pt")
    _data_args(e)
    e.add_argument("--split", default="test")
    e.add_argument("--out", default=None, help="folder for metrics.json and the PNGs")
    e.add_argument("--modality", choices=("fused", "rgb", "thermal"), default=None,
                   help="default: the model's own (from its checkpoint or model card)")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--device", default=None)
    e.add_argument("--limit", type=int, default=None, help="first N images only")
    e.add_argument("--group-by", default=None, metavar="ATTR",
                   help="also report mAP per value of an image attribute of the reader, e.g. "
                        "condition or scene (synthetic benchmark)")
    e.set_defaults(func=cmd_eval)
