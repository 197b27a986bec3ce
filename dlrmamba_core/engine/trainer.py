"""The training loop shared by ``dlrmamba train``, ``dlrmamba distill`` and the pipeline.

What a run does (paper recipe where it has one):

* optimizer: SGD lr 0.01, momentum 0.937, Nesterov, weight decay 5e-4 (the paper's settings)
  or AdamW; no weight decay on norms, biases, ``A_log`` and ``D`` (decaying them pulls the
  state dynamics towards zero, not towards a simpler model);
* schedule: linear warmup from ``warmup_start_factor * lr`` then cosine to
  ``min_lr_ratio * lr``, computed from the global step (so the scheduler's whole state is the
  step counter);
* bf16 autocast on CUDA (no loss scaling needed for bf16), fp32 on CPU;
* EMA of the weights; the EMA model is validated and saved;
* gradient clipping (global L2 norm);
* checkpoints: ``last.pt`` holds the exact training state (model, EMA, optimizer, step, epoch,
  position inside the epoch, RNG states) and is loaded with ``weights_only=True``; a killed
  run resumed from it continues with identical state; ``best.pt`` is the best EMA model on
  the validation split as a ``models.io`` model file;
* logs: tqdm progress, ``metrics.csv``, TensorBoard (``tb/``), ``curves.png``;
* DDP under ``torchrun``: the sampler shards each epoch's permutation over ranks; rank 0 logs,
  validates and writes checkpoints.

A *task* module wraps what is trained: :class:`DetectionTask` (detector + detection loss) or
``distill.DistillTask``. Its ``forward(rgb, thermal, targets)`` returns ``(loss, parts)``, so
one DDP wrapper covers both.
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
import dataclasses
from dataclasses import dataclass
import gc
import io
import logging
import math
import os
from pathlib import Path
import time
from typing import Any

import torch
from torch import nn

from dlrmamba_core.engine import distributed as ddp_utils
from dlrmamba_core.engine.config import TrainConfig
from dlrmamba_core.engine.ema import ModelEMA
from dlrmamba_core.engine.evaluate import blank_modality, evaluate
from dlrmamba_core.engine.fileio import save_figure, torch_save, write_text
from dlrmamba_core.engine.sampling import ResumableSampler, SeededDataset
from dlrmamba_core.engine.state import capture_rng, restore_rng
from dlrmamba_core.errors import ConfigError, DatasetError, ModelFileError

log = logging.getLogger(__name__)

#: Seconds between "still training" log lines when the progress bar is off.
HEARTBEAT_S = 60.0
#: fit_to_time refits the schedule after every epoch of its first this share (at least 3).
FIT_REFIT_SHARE = 0.2

STATE_FORMAT = "dlrmamba-train-state"


def lr_factor(step: int, total_steps: int, warmup_steps: int, start_factor: float,
              min_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: linear warmup, then cosine decay.

    Args:
        step: optimizer steps taken so far.
        total_steps: steps of the whole run.
        warmup_steps: warmup length in steps.
        start_factor: multiplier at step 0.
        min_ratio: multiplier at the last step.
    """
    if step < warmup_steps:
        return start_factor + (1.0 - start_factor) * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min((step - warmup_steps) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def _no_decay(name: str, p: nn.Parameter) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return (p.ndim <= 1 or leaf in ("bias", "A_log", "D") or "norm" in name.lower()
            or bool(getattr(p, "_no_weight_decay", False)))


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov) or AdamW with two groups: with and without weight decay."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (no_decay if _no_decay(name, p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


class DetectionTask(nn.Module):
    """Detector + detection loss (a segment model: + mask loss); ``forward`` returns
    ``(loss, parts)``.

    Args:
        detector: a model of ``models.build_model`` (train-mode output: per-level maps; a
            segment model's: (per-level maps, protos)).
        modality: "fused", "rgb" or "thermal" (zeroes the unused input).
        mask_gain: segment models: weight of the mask loss (``losses.SegmentLoss``).
        dice_gain: segment models: weight of the dice term of the mask loss.
    """

    def __init__(self, detector: nn.Module, modality: str = "fused", mask_gain: float = 7.5,
                 dice_gain: float = 0.0) -> None:
        super().__init__()
        from dlrmamba_core.losses import DetectionLoss, SegmentLoss

        self.detector = detector
        self.modality = modality
        self.segment = getattr(getattr(detector, "cfg", None), "task", "detect") == "segment"
        self.criterion: nn.Module = SegmentLoss(detector, mask_gain, dice_gain) \
            if self.segment else DetectionLoss(detector)

    def forward(self, rgb: torch.Tensor, thermal: torch.Tensor, targets: torch.Tensor,
                masks: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """rgb (B,3,H,W), thermal (B,1,H,W), targets (M,6) [, masks (M,H/4,W/4) for a segment
        model] -> (scalar loss, parts).

        Raises:
            DatasetError: a segment model without masks.
        """
        rgb, thermal = blank_modality(rgb, thermal, self.modality)
        preds = self.detector(rgb, thermal)
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            if self.segment:
                if masks is None:
                    raise DatasetError("a segment model trains on batches with instance "
                                       "masks; build the dataset with masks=True")
                levels, protos = preds
                loss, parts = self.criterion(([p.float() for p in levels], protos.float()),
                                             targets, masks)
            else:
                loss, parts = self.criterion([p.float() for p in preds], targets)
        return loss, {"task": loss.detach(), **_detach(parts)}


def _detach(parts: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: (v.detach() if torch.is_tensor(v) else torch.tensor(float(v)))
            for k, v in parts.items()}


@dataclass
class RunMeta:
    """What identifies a run (checked on resume).

    Attributes:
        kind: "train" or "distill" (or "finetune").
        variant: model variant name.
        class_names: the class map.
        input_hw: network input (h, w) in pixels.
        extra: plain-typed extras stored in the model files (e.g. distillation settings).
    """

    kind: str
    variant: str
    class_names: list[str]
    input_hw: tuple[int, int]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def hw(self) -> tuple[int, int]:
        """``input_hw`` as a tuple of two ints (it may arrive as a list from a checkpoint)."""
        return int(self.input_hw[0]), int(self.input_hw[1])


class Trainer:
    """Runs a task over a dataset with the recipe of the module docstring.

    Args:
        task: the module trained (``forward(rgb, thermal, targets) -> (loss, parts)``).
        detector: the detector inside ``task`` (tracked by the EMA, validated, saved).
        train_set: a ``DetectionDataset`` (augmenting) of the training split.
        val_set: a ``PairDataset`` of the validation split, or None (no validation, the last
            EMA model is saved as best).
        cfg: hyper-parameters.
        out_dir: run folder (checkpoints, logs, plots).
        meta: the run's identity (checked on resume).
        info: distributed info (``distributed.setup()``), single process by default.
    """

    def __init__(self, task: nn.Module, detector: nn.Module, train_set: Any, val_set: Any,
                 cfg: TrainConfig, out_dir: str | os.PathLike[str], meta: RunMeta,
                 info: ddp_utils.DistInfo | None = None) -> None:
        cfg.validate()
        self.cfg = dataclasses.replace(cfg)  # a copy: fit_to_time changes ``epochs``
        self._epochs_cap = cfg.epochs  # fit_to_time's upper bound
        # fit_to_time: (training s, end-of-epoch s) of each epoch from the second on
        self._fit_costs: list[tuple[float, float]] = []
        # ... and from which of them the training time is averaged (see _fit_schedule)
        self._fit_from, self._fit_kind = 0, None
        self.info = info or ddp_utils.DistInfo(
            device=torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")))
        self.out = Path(out_dir)
        self.meta = meta
        self.task = task.to(self.info.device)
        self.detector = detector
        self.train_set = train_set
        self.val_set = val_set
        self.sampler = ResumableSampler(len(train_set), seed=cfg.seed, shuffle=True,
                                        rank=self.info.rank, world_size=self.info.world_size)
        self.steps_per_epoch = self.sampler.per_rank() // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DatasetError(
                f"the training split has {len(train_set)} samples, fewer than one batch of "
                f"{cfg.batch_size} per process x {self.info.world_size} processes; lower "
                "--batch-size or add data")
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.warmup_steps = min(max(round(cfg.warmup_epochs * self.steps_per_epoch), 1),
                                max(self.total_steps // 2, 1))
        self.optimizer = build_optimizer(self.task, cfg)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.ema = ModelEMA(detector, cfg.ema_decay, cfg.ema_tau)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.best_fitness = -1.0
        self.best_metrics: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, float] = {}
        self.epoch_wait_s = 0.0  # seconds this epoch spent waiting for the data loader
        self.model_ddp: nn.Module = self.task
        if self.info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.model_ddp = DistributedDataParallel(
                self.task, device_ids=[self.info.local_rank] if self.info.device.type == "cuda"
                else None, find_unused_parameters=cfg.find_unused_parameters)
        self._tb: Any = None

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The complete training state (plain types + tensors: ``weights_only`` loadable)."""
        return {
            "format": STATE_FORMAT, "version": 1,
            "kind": self.meta.kind, "variant": self.meta.variant,
            "class_names": list(self.meta.class_names),
            "num_classes": len(self.meta.class_names),
            "input_hw": list(self.meta.input_hw), "extra": self.meta.extra,
            "train_config": dataclasses.asdict(self.cfg),
            "task": self.task.state_dict(), "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step, "total_steps": self.total_steps,
            "best_fitness": self.best_fitness, "best_metrics": self.best_metrics,
            "history": self.history, "epoch_sums": dict(self.epoch_sums),
            "epochs": self.cfg.epochs,
            "world_size": self.info.world_size, "rng": capture_rng(),
        }

    def save_state(self) -> Path | None:
        """Write ``last.pt`` atomically (rank 0 only)."""
        if not self.info.is_main:
            return None
        return torch_save(self.out / "last.pt", self.state_dict())

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Resume from a ``last.pt`` written by a run with the same variant, classes and size.

        Raises:
            ModelFileError: the file is missing or not a training checkpoint.
            ConfigError: it belongs to another variant, class map, input size or run kind, or
                its weights do not fit the task (written by another version of it).
        """
        state = load_train_state(path)
        checks = [("variant", state["variant"], self.meta.variant),
                  ("kind", state["kind"], self.meta.kind),
                  ("class names", state["class_names"], list(self.meta.class_names)),
                  ("input size", list(state["input_hw"]), list(self.meta.input_hw))]
        for what, theirs, ours in checks:
            if theirs != ours:
                raise ConfigError(
                    f"--resume {path}: that checkpoint's {what} is {theirs}, this run's is "
                    f"{ours}; resume with a checkpoint of the same run (its last.pt), or "
                    "start without --resume")
        if state["world_size"] != self.info.world_size:
            raise ConfigError(f"--resume {path}: written by {state['world_size']} processes, "
                              f"this run has {self.info.world_size}; the data order differs, "
                              "resume with the same number of processes")
        try:
            self.task.load_state_dict(state["task"])
        except RuntimeError as exc:  # torch reports missing / unexpected / mis-shaped keys
            raise ConfigError(
                f"--resume {path}: its weights do not fit this run's {self.meta.kind} task "
                f"({str(exc).splitlines()[0]} ...); it was written by another version of the "
                "task (e.g. a distillation checkpoint from before the per-direction state "
                "projections); start without --resume") from exc
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "epochs" in state and state["epochs"] != self.cfg.epochs:
            # A fit_to_time run shortened its schedule: continue that schedule.
            self._set_epochs(int(state["epochs"]))
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.global_step = int(state["global_step"])
        self.best_fitness = float(state["best_fitness"])
        self.best_metrics = dict(state["best_metrics"])
        self.history = list(state["history"])
        self.epoch_sums = dict(state["epoch_sums"])
        restore_rng(state["rng"])
        log.info("resumed %s at epoch %d, step %d (batch %d of the epoch)", path, self.epoch,
                 self.global_step, self.batch_in_epoch)

    def _set_epochs(self, epochs: int) -> None:
        """Change the schedule length (the cosine horizon follows)."""
        self.cfg.epochs = epochs
        self.total_steps = epochs * self.steps_per_epoch
        self.warmup_steps = min(max(round(self.cfg.warmup_epochs * self.steps_per_epoch), 1),
                                max(self.total_steps // 2, 1))

    def _fit_schedule(self, elapsed_s: float, epoch_s: float,
                      train_s: float | None = None) -> None:
        """After each epoch of the first :data:`FIT_REFIT_SHARE` of the schedule (at least the
        first 3): as many epochs as fit the time budget (see TrainConfig).

        Args:
            elapsed_s: seconds since ``fit`` started.
            epoch_s: the wall time of the epoch that just ended, its end-of-epoch work
                (validation, checkpoints) included.
            train_s: the part of ``epoch_s`` spent training (None: all of it).
        """
        if not (self.cfg.fit_to_time and self.cfg.max_time_s):
            return
        if self.epoch > max(3, math.ceil(FIT_REFIT_SHARE * self.cfg.epochs)):
            return
        if self.epoch >= 2:
            # An epoch costs its training time (mean from epoch 2 on: epoch 1 pays for the
            # start-up) plus its share of the end-of-epoch work, taken from the last full
            # validation cycle: early validations of a poor model (thousands of boxes through
            # NMS and COCO matching) cost several times the later ones.
            train = epoch_s if train_s is None else min(train_s, epoch_s)
            # A task whose steps change cost mid-run (SAD's terms in the first epochs only:
            # ``DistillTask.terms_on``) starts a new training-time mean when they do; the
            # epochs before no longer say what the next ones cost.
            kind = getattr(self.task, "terms_on", None)
            if kind != self._fit_kind:
                self._fit_from = len(self._fit_costs)
            self._fit_kind = kind
            self._fit_costs.append((train, epoch_s - train))
            same = self._fit_costs[self._fit_from:]
            window = self._fit_costs[-max(int(self.cfg.val_every), 1):]
            epoch_s = (sum(t for t, _ in same) / len(same)
                       + sum(x for _, x in window) / len(window))
        left = self.cfg.max_time_s - elapsed_s
        fit = self.epoch + max(int(0.95 * left / max(epoch_s, 1e-3)), 0)
        epochs = int(min(self._epochs_cap, max(fit, self.epoch + 1)))
        if self.info.distributed:
            t = torch.tensor([epochs], device=self.info.device)
            torch.distributed.broadcast(t, 0)
            epochs = int(t.item())
        if epochs != self.cfg.epochs:
            log.info("%s %s: %.1f s per epoch, %.0f s left: schedule set to %d epochs",
                     self.meta.kind, self.meta.variant, epoch_s, left, epochs)
            self._set_epochs(epochs)

    # ---------------------------------------------------------------- loop
    def _loader(self) -> torch.utils.data.DataLoader:
        from dlrmamba_core.engine.datasets import collate

        workers = self.cfg.num_workers
        return torch.utils.data.DataLoader(
            SeededDataset(self.train_set, self.cfg.seed), batch_size=self.cfg.batch_size,
            sampler=self.sampler, num_workers=workers, collate_fn=collate, drop_last=True,
            pin_memory=self.info.device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None)

    def _set_lr(self) -> float:
        f = lr_factor(self.global_step, self.total_steps, self.warmup_steps,
                      self.cfg.warmup_start_factor, self.cfg.min_lr_ratio)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * f
        return self.base_lrs[0] * f

    def _step(self, batch: dict[str, Any]) -> dict[str, float]:
        dev = self.info.device
        rgb = batch["rgb"].to(dev, non_blocking=True)
        thermal = batch["thermal"].to(dev, non_blocking=True)
        targets = batch["targets"].to(dev, non_blocking=True)
        # Instance masks (segment runs) travel as a 4th argument; detection batches have none.
        extra = [batch["masks"].to(dev, non_blocking=True)] if "masks" in batch else []
        lr = self._set_lr()
        use_amp = self.cfg.amp and dev.type == "cuda"
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
            loss, parts = self.model_ddp(rgb, thermal, targets, *extra)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss {loss.item()} at step {self.global_step}; lower --lr or "
                f"check the data (parts: { {k: float(v) for k, v in parts.items()} })")
        loss.backward()
        gnorm = 0.0
        if self.cfg.grad_clip > 0:
            gnorm = float(torch.nn.utils.clip_grad_norm_(self.task.parameters(),
                                                         self.cfg.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.detector)
        self.global_step += 1
        out = {k: float(v) for k, v in parts.items()}
        out["loss"] = float(loss.detach())
        out["lr"] = lr
        out["grad_norm"] = gnorm
        return out

    def validate(self) -> dict[str, Any]:
        """COCO metrics of the EMA model on the validation split (rank 0)."""
        if self.val_set is None:
            return {}
        return evaluate(self.ema.module, self.val_set, list(self.meta.class_names),
                        self.meta.hw(), batch_size=max(self.cfg.batch_size, 8),
                        device=str(self.info.device), modality=self.cfg.modality,
                        limit=self.cfg.val_max_images)

    def fit(self) -> dict[str, Any]:
        """Train until the last epoch (or ``max_steps`` / ``max_time_s``).

        Returns:
            ``{"finished": bool, "global_step", "epoch", "best_metrics", "best": path or
            None, "last": path}``.
        """
        from tqdm import tqdm

        t0 = time.monotonic()
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            write_text(self.out / "config.json", _json(dataclasses.asdict(self.cfg)))
        # Garbage (e.g. a previous Trainer's loader or CUDA tensors in reference cycles) must
        # be collected here, not inside the forked workers, where freeing it crashes them.
        gc.collect()
        loader = self._loader()
        stopped = truncated = paused = False
        heartbeat = time.monotonic()
        while self.epoch < self.cfg.epochs and not stopped:
            t_epoch = time.monotonic()
            # Train mode every epoch: a model loaded from a file (``--init``) arrives in eval
            # mode, whose outputs are the decoded boxes, not the per-level maps the loss needs.
            self.model_ddp.train()
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch * self.cfg.batch_size)
            if hasattr(self.task, "set_epoch"):  # e.g. SAD's terms for the first epochs only
                self.task.set_epoch(self.epoch)
            bar = tqdm(total=self.steps_per_epoch, initial=self.batch_in_epoch,
                       desc=f"{self.meta.kind} {self.meta.variant} epoch {self.epoch + 1}/"
                            f"{self.cfg.epochs}",
                       disable=not (self.cfg.progress and self.info.is_main),
                       mininterval=5.0, leave=False)
            t_ready = time.monotonic()
            for batch in loader:
                # Time from the end of the previous step to a batch in hand: the loader wait
                # (its share of the epoch tells a data-bound run from a compute-bound one).
                self.epoch_wait_s += time.monotonic() - t_ready
                parts = self._step(batch)
                self.batch_in_epoch += 1
                for k, v in parts.items():
                    if k not in ("lr", "grad_norm"):
                        self.epoch_sums[k] = self.epoch_sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(loss=f"{parts['loss']:.3f}", lr=f"{parts['lr']:.2e}")
                if bar.disable and self.info.is_main \
                        and time.monotonic() - heartbeat >= HEARTBEAT_S:
                    # Without a progress bar, a line a minute shows the run is alive (the
                    # pipeline stops runs whose log stays silent).
                    heartbeat = time.monotonic()
                    log.info("%s %s epoch %d: step %d/%d, loss %.4f", self.meta.kind,
                             self.meta.variant, self.epoch + 1, self.batch_in_epoch,
                             self.steps_per_epoch, parts["loss"])
                self._tb_scalars({f"train/{k}": v for k, v in parts.items()})
                if self.cfg.checkpoint_every and self.global_step % self.cfg.checkpoint_every \
                        == 0:
                    self.save_state()
                if self.cfg.max_steps is not None and self.global_step >= self.cfg.max_steps:
                    stopped = True
                    break
                if self.cfg.max_time_s is not None and \
                        time.monotonic() - t0 >= self.cfg.max_time_s:
                    stopped = truncated = True
                    break
                t_ready = time.monotonic()
            bar.close()
            if truncated:
                # Time budget spent: validate and save the models now (the schedule is cut).
                log.warning("%s %s: time budget of %.0f s reached at step %d of %d; "
                            "finishing early", self.meta.kind, self.meta.variant,
                            self.cfg.max_time_s, self.global_step, self.total_steps)
                self._end_epoch(time.monotonic() - t_epoch, final=True)
                break
            if stopped and self.batch_in_epoch < self.steps_per_epoch:
                self.save_state()
                break
            self._end_epoch(time.monotonic() - t_epoch)
            self._fit_schedule(time.monotonic() - t0, time.monotonic() - t_epoch,
                               float(self.history[-1]["epoch_s"]))
            if self._pause_due(time.monotonic() - t0):
                stopped = paused = True
        # Persistent workers end with the loader: here, in this process, not whenever the
        # collector meets it (possibly inside the next fit's workers, see above).
        del loader
        gc.collect()
        ddp_utils.barrier(self.info)
        if self._tb is not None:
            self._tb.close()
        best = self.out / "best.pt"
        return {"finished": self.epoch >= self.cfg.epochs, "truncated": truncated,
                "paused": paused,
                "global_step": self.global_step, "total_steps": self.total_steps,
                "epoch": self.epoch, "best_metrics": self.best_metrics,
                "seconds": round(time.monotonic() - t0, 1),
                "best": str(best) if best.exists() else None,
                "last": str(self.out / "last.pt")}

    def _pause_due(self, elapsed_s: float) -> bool:
        """True at an epoch end once ``pause_after_min`` has passed (every process agrees:
        one process's clock is enough). ``last.pt`` of that epoch end is the resume point."""
        if self.cfg.pause_after_min is None or self.epoch >= self.cfg.epochs:
            return False
        due = float(elapsed_s >= 60.0 * self.cfg.pause_after_min)
        if ddp_utils.all_reduce_mean(due, self.info) == 0.0:
            return False
        log.info("%s %s: paused after %.1f min at the end of epoch %d of %d; continue with "
                 "--resume %s", self.meta.kind, self.meta.variant, elapsed_s / 60.0,
                 self.epoch, self.cfg.epochs, self.out / "last.pt")
        return True

    def _end_epoch(self, epoch_s: float, final: bool = False) -> None:
        n = max(self.batch_in_epoch, 1)
        row: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step,
                               "lr": self.optimizer.param_groups[0]["lr"],
                               "epoch_s": round(epoch_s, 2),
                               "data_wait_s": round(self.epoch_wait_s, 2)}
        row.update({f"train_{k}": round(v / n, 5) for k, v in self.epoch_sums.items()})
        last_epoch = final or self.epoch + 1 == self.cfg.epochs
        metrics: dict[str, Any] = {}
        if self.info.is_main and (last_epoch or (self.epoch + 1) % self.cfg.val_every == 0):
            metrics = self.validate()
        if metrics:
            row["val_mAP50"] = metrics["mAP50"]
            row["val_mAP50_95"] = metrics["mAP50_95"]
            self._tb_scalars({"val/mAP50": metrics["mAP50"],
                              "val/mAP50_95": metrics["mAP50_95"]})
            if "segm" in metrics:  # segment models: mask mAP too (fitness stays on boxes)
                row["val_segm_mAP50"] = metrics["segm"]["mAP50"]
                row["val_segm_mAP50_95"] = metrics["segm"]["mAP50_95"]
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_sums = {}
        self.epoch_wait_s = 0.0
        self.history.append(row)
        if self.info.is_main:
            fitness = (0.1 * metrics["mAP50"] + 0.9 * metrics["mAP50_95"]) if metrics else None
            if (fitness is not None and fitness > self.best_fitness) or (
                    self.val_set is None and last_epoch):
                self.best_fitness = fitness if fitness is not None else self.best_fitness
                self.best_metrics = {k: metrics[k] for k in ("mAP50", "mAP50_95")} \
                    if metrics else {}
                self.save_model(self.out / "best.pt", {"epoch": self.epoch,
                                                       "val": self.best_metrics})
            if last_epoch:
                self.save_model(self.out / "final.pt", {"epoch": self.epoch, "truncated": final,
                                                        "val": {k: metrics.get(k) for k in
                                                                ("mAP50", "mAP50_95")}})
            self.save_state()
            self._write_logs()
            log.info("%s %s epoch %d/%d: %s", self.meta.kind, self.meta.variant, self.epoch,
                     self.cfg.epochs, {k: v for k, v in row.items() if k != "epoch"})

    def save_model(self, path: Path, extra: dict[str, Any]) -> None:
        """Save the EMA detector as a ``models.io`` model file."""
        from dlrmamba_core.models.io import save_model

        info = {"modality": self.cfg.modality, "kind": self.meta.kind, **self.meta.extra,
                **extra}
        save_model(path, self.ema.module, list(self.meta.class_names),
                   self.meta.hw(), extra=info)

    # ---------------------------------------------------------------- logs
    def _tb_scalars(self, scalars: dict[str, float]) -> None:
        if not self.info.is_main:
            return
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tb"))
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, self.global_step)

    def _write_logs(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        write_text(self.out / "metrics.csv", buf.getvalue())
        plot_history(self.history, self.out / "curves.png",
                     f"{self.meta.kind} {self.meta.variant} ({self.cfg.modality})")


def plot_history(history: Sequence[dict[str, Any]], path: str | os.PathLike[str],
                 title: str) -> Path:
    """Training losses and validation mAP per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [r["epoch"] for r in history]
    for key in sorted({k for r in history for k in r if k.startswith("train_")}):
        ax1.plot(epochs, [r.get(key, float("nan")) for r in history], label=key[6:])
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.set_yscale("log")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    for key in ("val_mAP50", "val_mAP50_95"):
        pts = [(r["epoch"], r[key]) for r in history if key in r]
        if pts:
            ax2.plot(*zip(*pts, strict=True), marker="o", label=key[4:])
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("val mAP (%)")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(path, fig)


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2) + "\n"


def load_train_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a ``last.pt`` training state with ``weights_only=True``.

    Raises:
        ModelFileError: missing, unreadable, or not a training state.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"{p}: no such checkpoint; pass the last.pt of an earlier run")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        raise ModelFileError(f"{p}: cannot be read as a training checkpoint ({exc}); "
                             "pass the last.pt of an earlier run") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ModelFileError(f"{p}: not a training checkpoint (no '{STATE_FORMAT}' marker); "
                             "--resume takes the last.pt of a run, not a model file")
    return state
