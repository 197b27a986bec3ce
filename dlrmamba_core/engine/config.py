"""The configuration dataclasses of training and distillation (torch-free).

They are the single source of every default: ``dlrmamba train`` / ``dlrmamba distill`` build
their options from these fields (name, type, default, and the help text from the
``Attributes:`` section of the docstring; ``engine.cli``), the pipeline calls that CLI, and the
trainer reads the resulting object without changing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import typing
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
        fit_to_time: with ``max_time_min``, set ``epochs`` after each epoch of the first 20%
            of the schedule (at least the first three) so the whole schedule (warmup + cosine
            to its floor) fits the time left: from epoch 1's time, then from the mean
            training time of the epochs since (the first pays for start-up and for other runs
            still building their caches) plus the end-of-epoch work (validation, checkpoints)
            of the last validation cycle (the first validations of a poor model cost several
            times the later ones). A schedule shortened by a slow start is lengthened again;
            the learning rate then follows the longer cosine from that step on; ``epochs``
            stays the upper bound.
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
class TaskConfig:
    """What the network learns (``dlrmamba train --task``): boxes, or boxes + instance masks.

    Attributes:
        task: "detect" (boxes) or "segment" (boxes + instance masks from a prototype-mask
            branch; the dataset must have masks; docs/models.md "Instance segmentation
            head").
        num_protos: segment: K, prototype masks = mask coefficients per anchor (model config
            field ``num_protos``).
        mask_gain: segment: weight of the mask loss beside the detection loss (the box
            term's weight, 7.5, by default: both measure localization).
        dice_gain: segment: weight of the dice term added to the mask BCE inside the box
            (0: BCE only).
    """

    task: Literal["detect", "segment"] = "detect"
    num_protos: int = 32
    mask_gain: float = 7.5
    dice_gain: float = 0.0

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values."""
        if self.task not in ("detect", "segment"):
            raise ConfigError(f"task must be detect or segment, got {self.task!r}")
        if self.num_protos < 1:
            raise ConfigError(f"num_protos must be >= 1, got {self.num_protos}")
        if self.mask_gain < 0 or self.dice_gain < 0:
            raise ConfigError(f"mask_gain ({self.mask_gain}) and dice_gain ({self.dice_gain}) "
                              "must be >= 0")

    @property
    def segment(self) -> bool:
        """Whether this is an instance segmentation run."""
        return self.task == "segment"


@dataclass
class DistillWeights:
    """Loss weights of the distillation phase; a weight of 0 switches that term off
    (ablations). ``--method sad`` uses task, svd, state and feat (paper: 1.0 / 0.5 / 0.1 /
    1.5), ``--method rs4d`` uses task and rs4d; the other method's weights are not used.

    Attributes:
        task: detection loss.
        svd: L_SVD, factor distance to the teacher's truncated SVD.
        state: L_state, chunk-boundary hidden states vs the projected teacher states.
        feat: L_feat, SS2D block outputs vs the teacher's.
        rs4d: RS4D, reconstruction of the teacher's clean P3-P5 features from the masked,
            noised input (relative error, losses.rs4d).
    """

    task: float = 1.0
    svd: float = 0.5
    state: float = 0.1
    feat: float = 1.5
    rs4d: float = 1.0

    @classmethod
    def parse(cls, text: str) -> DistillWeights:
        """``task=1,svd=0.5,state=0.1,feat=1.5`` -> weights (omitted keys keep defaults).

        Raises:
            ConfigError: an unknown key, a value that is not a number, or a negative one.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        w = cls()
        for key, value in _pairs(text, "--weights", names,
                                 "e.g. task=1,svd=0.5,state=0.1,feat=1.5"):
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


def _pairs(text: str, flag: str, names: list[str], example: str) -> list[tuple[str, str]]:
    """``k=v,k=v`` -> [(k, v), ...] with every k in ``names``.

    Raises:
        ConfigError: an item without ``=`` or with a key not in ``names``.
    """
    out = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in names:
            raise ConfigError(f"{flag}: bad item {item!r}; expected key=value with key in "
                              f"{', '.join(names)} ({example})")
        out.append((key, value.strip()))
    return out


FeatureLevel = Literal["backbone", "neck"]
DistillMethod = Literal["sad", "rs4d"]
DISTILL_METHODS: tuple[str, ...] = typing.get_args(DistillMethod)
StudentInit = Literal["svd", "random"]
STUDENT_INITS: tuple[str, ...] = typing.get_args(StudentInit)


@dataclass
class RS4DConfig:
    """Masking, noise and the adaptive rule of RS4D distillation (``--method rs4d``;
    docs/distillation.md explains each choice).

    The input (both cameras, same positions) is cut into ``patch`` x ``patch`` pixel squares;
    a share ``r`` of them is replaced by the image's per-channel mean plus Gaussian noise of
    ``s`` times its per-channel standard deviation. One *difficulty* ``d`` in [0, 1] sets both:
    ``r = mask_min + d (mask_max - mask_min)``, ``s = d * noise_max``. After every step
    ``d += adapt_rate * clip((target - L) / target, -1, 1)`` with ``L`` the step's
    reconstruction error (mean over levels): easier when the student misses the target,
    harder when it beats it.

    Attributes:
        patch: side of a masked square in input pixels (32 = one P5 cell, 4x4 P3 cells); must
            divide the input height and width.
        mask_min: share of masked squares at difficulty 0.
        mask_max: share of masked squares at difficulty 1.
        noise_max: noise std at difficulty 1, in units of the image's per-channel std.
        start: difficulty at the first step.
        target: reconstruction error (1 - R^2 of the teacher's features, 0 perfect, 1 = no
            better than the per-channel mean) the difficulty is steered to.
        adapt_rate: difficulty change per step at full error (0: fixed difficulty ``start``).
        features: which P3-P5 maps are reconstructed: "backbone" outputs (the encoder, as in
            RS4D) or "neck" outputs (what the head reads).
    """

    patch: int = 32
    mask_min: float = 0.1
    mask_max: float = 0.6
    noise_max: float = 1.0
    start: float = 0.5
    target: float = 0.35
    adapt_rate: float = 0.01
    features: FeatureLevel = "backbone"

    @classmethod
    def parse(cls, text: str) -> RS4DConfig:
        """``mask_max=0.7,target=0.3`` -> settings (omitted keys keep defaults).

        Raises:
            ConfigError: an unknown key or a value of the wrong type (range checks:
                :meth:`validate`).
        """
        kinds = typing.get_type_hints(cls)
        cfg = cls()
        for key, value in _pairs(text, "--rs4d", list(kinds), "e.g. mask_max=0.7,target=0.3"):
            kind = kinds[key]
            try:
                if typing.get_origin(kind) is Literal:
                    if value not in typing.get_args(kind):
                        raise ValueError(f"choose one of {typing.get_args(kind)}")
                    setattr(cfg, key, value)
                else:
                    setattr(cfg, key, kind(value))
            except ValueError as exc:
                raise ConfigError(f"--rs4d: {key}={value!r}: {exc}") from exc
        return cfg

    def format(self) -> str:
        """The ``--rs4d`` text of these settings."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in values.items())

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values."""
        if self.patch < 1:
            raise ConfigError(f"--rs4d patch={self.patch}: must be >= 1 (pixels)")
        if not 0.0 <= self.mask_min <= self.mask_max < 1.0:
            raise ConfigError(f"--rs4d mask_min={self.mask_min}, mask_max={self.mask_max}: "
                              "need 0 <= mask_min <= mask_max < 1")
        if self.noise_max < 0:
            raise ConfigError(f"--rs4d noise_max={self.noise_max}: must be >= 0")
        if not 0.0 <= self.start <= 1.0:
            raise ConfigError(f"--rs4d start={self.start}: the difficulty is in [0, 1]")
        if self.target <= 0:
            raise ConfigError(f"--rs4d target={self.target}: must be > 0 (a relative error, "
                              "e.g. 0.35)")
        if not 0.0 <= self.adapt_rate <= 1.0:
            raise ConfigError(f"--rs4d adapt_rate={self.adapt_rate}: must be in [0, 1] "
                              "(0 keeps the difficulty fixed)")
        if self.features not in ("backbone", "neck"):
            raise ConfigError(f"--rs4d features={self.features!r}: backbone or neck")


DISTILL_EPOCHS = 50
"""Default epochs of the distillation phase (``dlrmamba distill --epochs``)."""


@dataclass
class DistillConfig:
    """What ``dlrmamba distill`` adds to the training hyper-parameters.

    Attributes:
        method: "sad" (Structure-Aware Distillation: SVD factors, scan states, SS2D outputs;
            needs the SVD-built student) or "rs4d" (the student reconstructs the teacher's
            clean P3-P5 features from a masked, noised input; any teacher/student pair).
        student: registry variant of the student, built from scratch (rs4d only, e.g.
            "student" from a fusion_mamba teacher); default: the low-rank student built
            from the teacher by truncated SVD at rank_ratio / state_ratio.
        rank_ratio: rank of each factorized matrix / min(m, n), paper sweeps 0.50..0.65;
            defaults to the registry's student (models.config.STUDENT_RANK_RATIO).
        state_ratio: r_state / N, r_state = ceil(state_ratio * N); defaults to the
            registry's student (models.config.STUDENT_STATE_RATIO).
        student_init: "svd" (the teacher's truncated SVD, the paper's low-rank init) or
            "random" (the same student shape with freshly drawn weights: does distillation
            help without the SVD init?).
        weights: loss weights as key=value pairs (0 switches a loss off): task, and svd,
            state, feat (sad) or rs4d (rs4d).
        rs4d: RS4D masking as key=value pairs: patch (pixels), mask_min, mask_max,
            noise_max, start, target, adapt_rate, features (backbone or neck); see
            engine.config.RS4DConfig and docs/distillation.md.
        finetune_epochs: epochs of the fine-tune phase after distillation (0: none).
        finetune_lr: fine-tune peak lr as a fraction of the distillation lr.
        terms_epochs: SAD's structural terms (svd, state, feat) only in the first N epochs of
            the distillation phase; the later ones train on the task loss alone and the teacher
            no longer runs, so they cost what task-only epochs cost (default: every epoch).
    """

    method: DistillMethod = "sad"
    student: str | None = None
    rank_ratio: float = STUDENT_RANK_RATIO
    state_ratio: float = STUDENT_STATE_RATIO
    student_init: StudentInit = "svd"
    weights: DistillWeights = dataclasses.field(default_factory=DistillWeights)
    rs4d: RS4DConfig = dataclasses.field(default_factory=RS4DConfig)
    finetune_epochs: int = 10
    finetune_lr: float = 0.2
    terms_epochs: int | None = None

    def validate(self) -> None:
        """Raise ConfigError on out-of-range values or combinations."""
        if self.method not in DISTILL_METHODS:
            raise ConfigError(f"method must be one of {DISTILL_METHODS}, got {self.method!r}")
        if self.student is not None and self.method != "rs4d":
            raise ConfigError(f"--student {self.student}: SAD compares the factors and scan "
                              "states of a student built from the teacher by SVD, so it "
                              "takes no other student; use --method rs4d, or drop --student")
        if self.student_init not in STUDENT_INITS:
            raise ConfigError(f"student_init must be one of {STUDENT_INITS}, got "
                              f"{self.student_init!r}")
        if self.student is not None and self.student_init != "svd":
            raise ConfigError(f"--student {self.student} is built from scratch already; "
                              "--student-init applies to the student built from the teacher")
        for name in ("rank_ratio", "state_ratio"):
            val = getattr(self, name)
            if not 0.0 < val <= 1.0:
                raise ConfigError(f"{name} must be in (0, 1]; got {val}")
        if self.finetune_epochs < 0 or self.finetune_lr <= 0:
            raise ConfigError(f"finetune_epochs ({self.finetune_epochs}) must be >= 0 and "
                              f"finetune_lr ({self.finetune_lr}) > 0")
        if self.method == "rs4d" and self.weights.task == 0 and self.weights.rs4d == 0:
            raise ConfigError("--weights task=0,rs4d=0 leaves --method rs4d nothing to train; "
                              "give one of them a weight > 0")
        if self.terms_epochs is not None:
            if self.terms_epochs < 1:
                raise ConfigError(f"terms_epochs must be >= 1 (or unset: every epoch), got "
                                  f"{self.terms_epochs}; for no structural terms at all pass "
                                  "--weights svd=0,state=0,feat=0")
            if self.method != "sad":
                raise ConfigError("--terms-epochs applies to SAD's structural terms; RS4D's "
                                  "adaptive masking runs every epoch (drop --terms-epochs)")
        self.rs4d.validate()

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
