"""Dataclass configuration of the detector and the registry of named variants."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
import math
from typing import Any, Literal

from dlrmamba_core.errors import ConfigError

StageType = Literal["conv", "vss"]
Arch = Literal["dlrmamba", "fusion_mamba", "mobilemamba"]
Task = Literal["detect", "segment"]
TASKS: tuple[str, ...] = ("detect", "segment")
_SEGMENT_FIELDS = ("task", "num_protos", "proto_width")


@dataclass(frozen=True)
class DetectorConfig:
    """Every hyperparameter of a detector.

    Attributes:
        variant: registry name this config came from.
        num_classes: number of object classes.
        fusion_hidden: width of the pixel-fusion module (16 -> ~1.1k parameters).
        stem: channels of the two stride-2 stem convolutions (output at stride 4).
        widths: channels of the backbone stages at strides 8, 16, 32 (P3, P4, P5).
        depths: blocks per stage.
        stage_types: "conv" (inverted residual blocks) or "vss" (VSS blocks) per stage.
        d_state: SSM state size N (the student's r_state).
        scan_dirs: SS2D scan directions per stage: 4 = VMamba cross scan (row, column and both
            reversed), 2 = row-major forward + backward (half the scan, no transposes).
        ssm_ratio: SS2D expansion (d_inner = ssm_ratio * width).
        mlp_ratio: MLP expansion inside VSS blocks (0 = no MLP).
        conv_expand: expansion of the inverted residual blocks.
        rank_ratio: None = full-rank SS2D (teacher); else Low-Rank SS2D rank ratio (student).
        neck: channels of the PAN neck outputs at P3, P4, P5.
        head_width: channels of the head's box and class branches.
        reg_max: distribution-focal-loss bins per box side (distances 0..reg_max-1 strides).
        arch: "dlrmamba" (pixel fusion -> conv/VSS stages), "fusion_mamba" (two backbone
            streams, Fusion-Mamba Blocks at P3-P5, no pixel fusion) or "mobilemamba" (pixel
            fusion -> MRFFI stages); see models.backbones.
        dssf_blocks: fusion_mamba: DSSF modules per Fusion-Mamba Block at P3, P4, P5.
        mrffi_global: mobilemamba: share of channels in the WTE-Mamba branch per stage.
        mrffi_local: mobilemamba: share in the MK-DeConv branch per stage (identity: rest).
        mk_kernels: mobilemamba: MK-DeConv depthwise kernel sizes (one channel group each).
        task: "detect" (boxes) or "segment" (boxes + instance masks: a prototype-mask branch,
            models.segment; docs/models.md "Instance segmentation head").
        num_protos: segment: K, prototype masks of the protonet = mask coefficients per
            anchor.
        proto_width: segment: channels of the protonet's hidden convolutions.
    """

    variant: str = "custom"
    num_classes: int = 1
    fusion_hidden: int = 16
    stem: tuple[int, int] = (16, 32)
    widths: tuple[int, int, int] = (64, 128, 256)
    depths: tuple[int, int, int] = (1, 2, 2)
    stage_types: tuple[StageType, StageType, StageType] = ("conv", "vss", "vss")
    d_state: int = 16
    scan_dirs: tuple[int, int, int] = (4, 4, 4)
    ssm_ratio: float = 2.0
    mlp_ratio: float = 2.0
    conv_expand: float = 2.0
    rank_ratio: float | None = None
    neck: tuple[int, int, int] = (64, 96, 128)
    head_width: int = 64
    reg_max: int = 16
    arch: Arch = "dlrmamba"
    dssf_blocks: tuple[int, int, int] = (1, 1, 1)
    mrffi_global: tuple[float, float, float] = (0.8, 0.7, 0.6)  # MobileMamba's defaults
    mrffi_local: tuple[float, float, float] = (0.2, 0.2, 0.3)
    mk_kernels: tuple[int, ...] = (3, 5, 7)
    task: Task = "detect"
    num_protos: int = 32
    proto_width: int = 64

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}; got {self.task!r}")
        if self.num_protos < 1 or self.proto_width < 1:
            raise ConfigError(f"num_protos ({self.num_protos}) and proto_width "
                              f"({self.proto_width}) must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists for tuples), as stored in checkpoints.

        A detect config leaves out the segment fields (task, num_protos, proto_width), so it
        is the same dict as before they existed (checkpoints and model cards compare equal).
        """
        d = asdict(self)
        if self.task == "detect":
            for name in _SEGMENT_FIELDS:
                del d[name]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        """Inverse of :meth:`to_dict`; raises ConfigError on unknown keys."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown detector config keys {sorted(unknown)}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


_VARIANTS: dict[str, DetectorConfig] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_variant(cfg: DetectorConfig, description: str) -> None:
    """Add a named variant to the registry (name = ``cfg.variant``)."""
    _VARIANTS[cfg.variant] = cfg
    _DESCRIPTIONS[cfg.variant] = description


_STUDENT_OF: dict[str, str] = {"teacher": "student"}


def student_variant(teacher: DetectorConfig) -> str:
    """Registry name of the low-rank student distilled from ``teacher``: the registered pair
    (``teacher`` -> ``student``, ``teacher_fast`` -> ``student_fast``, ...), else
    ``student`` for the default architecture and ``<variant>_lr`` for the others."""
    if teacher.variant in _STUDENT_OF:
        return _STUDENT_OF[teacher.variant]
    return "student" if teacher.arch == "dlrmamba" else f"{teacher.variant}_lr"


def list_variants() -> list[str]:
    """Names of the registered variants."""
    return list(_VARIANTS)


def variant_description(name: str) -> str:
    """One-line description of a registered variant."""
    return _DESCRIPTIONS[name]


def get_config(variant: str, num_classes: int, **overrides: Any) -> DetectorConfig:
    """The registered config of ``variant`` with ``num_classes`` and field overrides."""
    if variant not in _VARIANTS:
        raise ConfigError(
            f"unknown model variant {variant!r}; choose one of {', '.join(_VARIANTS)}"
        )
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1; got {num_classes}")
    names = {f.name for f in fields(DetectorConfig)}
    bad = set(overrides) - names
    if bad:
        raise ConfigError(f"unknown config overrides {sorted(bad)}; valid: {sorted(names)}")
    return replace(_VARIANTS[variant], num_classes=num_classes, **overrides)


TEACHER = DetectorConfig(
    variant="teacher",
    widths=(64, 192, 384),
    depths=(1, 1, 2),  # one VSS block at stride 16 (L = 1280 at 640x512): it sets CPU cost
    stage_types=("conv", "vss", "vss"),
    d_state=16,
    ssm_ratio=1.0,
    mlp_ratio=4.0,
)
STUDENT_RANK_RATIO = 0.15
"""Default rank ratio of a Low-Rank SS2D student (the shipped student's; ``dlrmamba distill``,
``student_from_teacher`` and the ``*_lr`` variants all default to it)."""
STUDENT_STATE_RATIO = 0.25
"""Default ``r_state / N`` of a student (N = 16 -> r_state = 4, the shipped student's)."""


def state_size(state_ratio: float, d_state: int) -> int:
    """``r_state = ceil(state_ratio * N)``, at least 1: the one rounding rule of the state size.

    Raises:
        ConfigError: ``state_ratio`` outside (0, 1].
    """
    if not 0.0 < state_ratio <= 1.0:
        raise ConfigError(f"state_ratio must be in (0, 1]; got {state_ratio}")
    return max(1, math.ceil(state_ratio * d_state))


def student_config(teacher: DetectorConfig, rank_ratio: float = STUDENT_RANK_RATIO,
                   state_ratio: float = STUDENT_STATE_RATIO) -> DetectorConfig:
    """The config of the low-rank student of ``teacher`` (what ``student_from_teacher`` and
    ``dlrmamba distill`` build): rank ``rank_ratio``, ``r_state = state_size(state_ratio, N)``.

    Raises:
        ConfigError: the teacher is already low-rank, or a ratio is outside (0, 1].
    """
    if teacher.rank_ratio is not None:
        raise ConfigError(f"teacher variant {teacher.variant!r} is already low-rank")
    if not 0.0 < rank_ratio <= 1.0:
        raise ConfigError(f"rank_ratio must be in (0, 1]; got {rank_ratio}")
    return replace(teacher, variant=student_variant(teacher), rank_ratio=rank_ratio,
                   d_state=state_size(state_ratio, teacher.d_state))


register_variant(TEACHER, "full-rank SS2D teacher (VSS stages at strides 16 and 32, N = 16)")
register_variant(
    replace(
        TEACHER,
        variant="student",
        rank_ratio=STUDENT_RANK_RATIO,
        d_state=state_size(STUDENT_STATE_RATIO, TEACHER.d_state),
    ),
    f"Low-Rank SS2D student of the teacher (rank ratio {STUDENT_RANK_RATIO}, "
    f"r_state {state_size(STUDENT_STATE_RATIO, TEACHER.d_state)})",
)


def register_pair(teacher: DetectorConfig, student_name: str, description: str) -> None:
    """Register a full-rank teacher and its Low-Rank SS2D student (the shipped recipe: rank
    ratio ``STUDENT_RANK_RATIO``, ``r_state = state_size(STUDENT_STATE_RATIO, N)``), and record
    the pair so ``student_from_teacher`` names the distilled model ``student_name``."""
    r_state = state_size(STUDENT_STATE_RATIO, teacher.d_state)
    register_variant(teacher, f"full-rank teacher: {description}")
    register_variant(
        replace(teacher, variant=student_name, rank_ratio=STUDENT_RANK_RATIO, d_state=r_state),
        f"Low-Rank SS2D student of {teacher.variant} (rank ratio {STUDENT_RANK_RATIO}, "
        f"r_state {r_state}): {description}",
    )
    _STUDENT_OF[teacher.variant] = student_name


# The faster architectures ([speed], docs/profile.md): measured untrained at 640x512, 2 threads,
# against the cnn in one run; retrained by the pipeline's phase S.
register_pair(
    replace(TEACHER, variant="teacher_p5", stage_types=("conv", "conv", "vss"),
            scan_dirs=(2, 2, 2)),
    "student_p5",
    "SS2D only at stride 32 (a conv stage at stride 16), 2 scan directions",
)
register_pair(
    replace(TEACHER, variant="teacher_bidir", scan_dirs=(2, 2, 2), ssm_ratio=0.5, d_state=8),
    "student_bidir",
    "SS2D at strides 16 and 32 with 2 scan directions, half the inner width, N = 8",
)
# The paper's teacher size ([teacher]: does a bigger teacher help on our data?): teacher_p5's
# layout at 16.1 M parameters (the paper's teacher: ~17 M), 4.1x teacher_p5. Not a CPU model.
register_pair(
    replace(TEACHER, variant="teacher_p5_large", stage_types=("conv", "conv", "vss"),
            scan_dirs=(2, 2, 2), widths=(128, 320, 640), depths=(2, 2, 3),
            neck=(128, 160, 256), head_width=128),
    "student_p5_large",
    "teacher_p5's layout at the paper's teacher size (16.1 M parameters; wider, deeper)",
)
FAST_PAIRS: tuple[tuple[str, str], ...] = (("teacher_p5", "student_p5"),
                                           ("teacher_bidir", "student_bidir"))
"""(teacher, student) registry names of the faster architectures (pipeline phase S)."""

register_variant(
    DetectorConfig(
        variant="nano",
        fusion_hidden=8,
        stem=(8, 16),
        widths=(32, 48, 64),
        depths=(1, 1, 1),
        d_state=8,
        mlp_ratio=0.0,
        neck=(32, 48, 64),
        head_width=32,
    ),
    "tiny full-rank model for tests (< 0.5 M parameters)",
)
register_variant(
    DetectorConfig(
        variant="cnn",
        widths=(64, 128, 256),
        depths=(1, 2, 2),
        stage_types=("conv", "conv", "conv"),
        conv_expand=2.0,
    ),
    "same fusion, neck and head with a plain conv backbone: the yardstick",
)
FUSION_MAMBA = DetectorConfig(
    variant="fusion_mamba",
    arch="fusion_mamba",
    stem=(16, 32),
    widths=(32, 96, 192),  # 32 at P3: four SS2D there (L = 5120 at 640x512) set CPU cost
    depths=(1, 1, 1),
    stage_types=("conv", "conv", "conv"),  # CNN streams, as the paper's YOLO backbones
    d_state=8,
    ssm_ratio=1.0,
    mlp_ratio=0.0,
    dssf_blocks=(1, 1, 1),
)
register_variant(FUSION_MAMBA, "Fusion-Mamba: two conv streams (RGB, thermal), SSCS + DSSF "
                 "blocks at P3-P5, no pixel fusion")
register_variant(
    replace(
        FUSION_MAMBA,
        variant="fusion_mamba_lr",
        rank_ratio=STUDENT_RANK_RATIO,
        d_state=state_size(STUDENT_STATE_RATIO, FUSION_MAMBA.d_state),
    ),
    f"fusion_mamba with Low-Rank SS2D (rank ratio {STUDENT_RANK_RATIO}, r_state "
    f"{state_size(STUDENT_STATE_RATIO, FUSION_MAMBA.d_state)}), SVD-initialised from it",
)
MOBILEMAMBA = DetectorConfig(
    variant="mobilemamba",
    arch="mobilemamba",
    widths=(64, 128, 256),
    depths=(1, 2, 2),
    d_state=8,  # half the teacher's N: the scan tensor (dirs x channels x N x L) sets CPU cost
    ssm_ratio=1.0,
    mlp_ratio=2.0,
)
register_variant(MOBILEMAMBA, "MobileMamba: pixel fusion, three stages of MRFFI blocks "
                 "(WTE-Mamba, MK-DeConv 3/5/7, identity)")
register_variant(
    replace(
        MOBILEMAMBA,
        variant="mobilemamba_lr",
        rank_ratio=STUDENT_RANK_RATIO,
        d_state=state_size(STUDENT_STATE_RATIO, MOBILEMAMBA.d_state),
    ),
    f"mobilemamba with Low-Rank SS2D (rank ratio {STUDENT_RANK_RATIO}, r_state "
    f"{state_size(STUDENT_STATE_RATIO, MOBILEMAMBA.d_state)}), SVD-initialised from it",
)
