"""The configuration dataclasses of training and distillation (torch-free).

They are the single source of every default: ``dlrmamba train`` / ``dlrmamba distill`` build
their options from these fields (name, type, default, and the help text from the
``Attributes:`` section of the docstring; ``engine.cli``), the pipeline calls that CLI, and the
trainer reads the resulting object without changing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.models.config import STUDENT_RANK_RATIO, STUDENT_STATE_RATIO

MODALITIES = ("fused", "rgb", "thermal")


@dataclass
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per optimizer step *per process*.
        optimizer: "sgd" (paper) or "adamw".
        lr: peak learning rate.
        momentum: SGD momentum (AdamW beta1).
        weight_decay: L2 decay on weights (not on norms, biases, A_log, D).
        nesterov: Nesterov momentum for SGD.
        warmup_epochs: linear warmup length (fractions allowed).
        warmup_start_factor: lr multiplier at step 0.
        min_lr_ratio: final lr as a fraction of ``lr`` (cosine floor).
        ema_decay: asymptotic EMA decay.
        ema_tau: EMA ramp length in steps.
        grad_clip: max global gradient L2 norm (0 disables).
        amp: bf16 autocast on CUDA.
        num_workers: DataLoader worker processes (CLI: ``--workers``).
        seed: seeds the init, the data order and the augmentations.
        checkpoint_every: also write ``last.pt`` every N steps (0: only at epoch ends).
        val_every: validate every N epochs (and always after the last one).
        val_max_images: validate on at most this many images (None: all).
        max_steps: stop after this many optimizer steps in total, checkpointed (None: run all
            epochs). The schedule still spans ``epochs``, so a resumed run continues it.
        max_time_min: time budget (minutes of this process): when it runs out, validate and
            save the models (None: no budget).
        pause_after_min: stop at the first epoch end after this many minutes of this
            process, schedule intact, so ``--resume last.pt`` continues exactly where it
            stopped (training in time slices, e.g. a GPU lent for minutes at a time); unlike
            ``max_time_min`` nothing is cut short (None: no pause).
        fit_to_time: with ``max_time_min``, shorten ``epochs`` after the first and second
            epochs so the whole schedule (warmup + cosine to its floor) fits the time left,
            measured from those epochs (``epochs`` stays the upper bound).
        modality: "fused", or "rgb"/"thermal" to train a single-modality model (the other
            input is zeroed).
        progress: show tqdm progress bars.
        device: "cpu", "cuda" or None (CUDA if available).
        find_unused_parameters: DDP option, needed when some parameters get no gradient.
    """

    epochs: int = 100
    batch_size: int = 8  # the paper's
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.937
    weight_decay: float = 5e-4
    nesterov: bool = True
    warmup_epochs: float = 3.0
    warmup_start_factor: float = 0.1
    min_lr_ratio: float = 0.01
    ema_decay: float = 0.9998
    ema_tau: float = 1000.0
    grad_clip: float = 10.0
    amp: bool = True
    num_workers: int = dataclasses.field(default=4, metadata={"flag": "--workers"})
    seed: int = 0
    checkpoint_every: int = 0
    val_every: int = 1
    val_max_images: int | None = None
    max_steps: int | None = None
    max_time_min: float | None = None
    pause_after_min: float | None = None
    fit_to_time: bool = False
    modality: Literal["fused", "rgb", "thermal"] = "fused"
    progress: bool = True
    device: str | None = None
    find_unused_parameters: bool = False

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values."""
        if self.optimizer not in ("sgd", "adamw"):
            raise ConfigError(f"optimizer must be sgd or adamw, got {self.optimizer!r}")
        if self.modality not in MODALITIES:
            raise ConfigError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"epochs ({self.epochs}) and batch size ({self.batch_size}) "
                              "must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.max_time_min is not None and self.max_time_min <= 0:
            raise ConfigError(f"max_time_min must be > 0 (or None), got {self.max_time_min}")
        if self.pause_after_min is not None and self.pause_after_min <= 0:
            raise ConfigError(f"pause_after_min must be > 0 (or None), got "
                              f"{self.pause_after_min}")

    @property
    def max_time_s(self) -> float | None:
        """The time budget in seconds (None: no budget)."""
        return None if self.max_time_min is None else 60.0 * self.max_time_min


@dataclass
class DistillWeights:
    """Loss weights of Structure-Aware Distillation (paper: task 1.0, SVD 0.5, state 0.1,
    feat 1.5); a weight of 0 switches that term off (ablations).

    Attributes:
        task: detection loss.
        svd: L_SVD, factor distance to the teacher's truncated SVD.
        state: L_state, chunk-boundary hidden states vs the projected teacher states.
        feat: L_feat, SS2D block outputs vs the teacher's.
    """

    task: float = 1.0
    svd: float = 0.5
    state: float = 0.1
    feat: float = 1.5

    @classmethod
    def parse(cls, text: str) -> DistillWeights:
        """``task=1,svd=0.5,state=0.1,feat=1.5`` -> weights (omitted keys keep defaults).

        Raises:
            ConfigError: an unknown key, a value that is not a number, or a negative one.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        w = cls()
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise ConfigError(f"--weights: bad item {item!r}; expected key=value with key "
                                  f"in {', '.join(names)} (e.g. task=1,svd=0.5,state=0.1,"
                                  "feat=1.5)")
            try:
                val = float(value)
            except ValueError as exc:
                raise ConfigError(f"--weights: {key}={value!r} is not a number") from exc
            if val < 0:
                raise ConfigError(f"--weights: {key}={val} must be >= 0 (0 switches it off)")
            setattr(w, key, val)
        return w

    def format(self) -> str:
        """The ``--weights`` text of these weights."""
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in dataclasses.fields(self))


DISTILL_EPOCHS = 50
"""Default epochs of the distillation phase (``dlrmamba distill --epochs``)."""


@dataclass
class DistillConfig:
    """What ``dlrmamba distill`` adds to the training hyper-parameters.

    Attributes:
        rank_ratio: rank of each factorized matrix / min(m, n), paper sweeps 0.50..0.65;
            defaults to the registry's student (models.config.STUDENT_RANK_RATIO).
        state_ratio: r_state / N, r_state = ceil(state_ratio * N); defaults to the
            registry's student (models.config.STUDENT_STATE_RATIO).
        weights: loss weights as key=value pairs (0 switches a loss off).
        finetune_epochs: epochs of the fine-tune phase after distillation (0: none).
        finetune_lr: fine-tune peak lr as a fraction of the distillation lr.
    """

    rank_ratio: float = STUDENT_RANK_RATIO
    state_ratio: float = STUDENT_STATE_RATIO
    weights: DistillWeights = dataclasses.field(default_factory=DistillWeights)
    finetune_epochs: int = 10
    finetune_lr: float = 0.2

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values."""
        for name in ("rank_ratio", "state_ratio"):
            val = getattr(self, name)
            if not 0.0 < val <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1]; got {val}")
        if self.finetune_epochs < 0 or self.finetune_lr <= 0:
            raise ConfigError(f"finetune_epochs ({self.finetune_epochs}) must be >= 0 and "
                              f"finetune_lr ({self.finetune_lr}) > 0")

    def finetune_config(self, cfg: TrainConfig) -> TrainConfig | None:
        """The fine-tune phase's hyper-parameters from the distillation phase's (None: none).

        Same settings, ``finetune_epochs`` epochs at ``finetune_lr * lr``, at most one warmup
        epoch, the next seed.
        """
        if self.finetune_epochs == 0:
            return None
        return dataclasses.replace(cfg, epochs=self.finetune_epochs,
                                   lr=cfg.lr * self.finetune_lr,
                                   warmup_epochs=min(cfg.warmup_epochs, 1.0), seed=cfg.seed + 1)
