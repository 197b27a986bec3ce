"""RS4D-style adaptive noise + masking feature distillation (``dlrmamba distill --method rs4d``).

The student sees a corrupted input and must produce, through one light projection per level,
the features the frozen teacher computes from the *clean* input, at P3, P4 and P5:

1. **Masking in input space.** Both images are cut into ``patch`` x ``patch`` squares on one
   grid; a share ``r`` of the squares (the same ones in RGB and thermal, so neither camera
   gives the other's hidden content away) is replaced by the image's per-channel mean plus
   Gaussian noise of ``s`` times its per-channel standard deviation (:func:`patch_mask`,
   :func:`corrupt`). Masking the input rather than a feature map means the student's own
   backbone, including its SS2D scans, must carry the context into the hidden squares; a 1x1
   projection after a masked feature map could not fill a hidden position at all, and a
   spatial "generator" there would do the work in a module that is thrown away. It also
   needs no hook inside any architecture: every registry model takes (rgb, thermal).
2. **Light projection.** Per level a 1x1 convolution maps the student's channels to the
   teacher's (:class:`LevelProjection`; identity at init when the widths agree), so any
   teacher/student pair of the registry works, e.g. a ``fusion_mamba`` teacher and a
   ``student``.
3. **Relative error.** Per level, ``MSE(P(s), t) / mean_c Var(t_c)`` with the per-channel
   variance over batch and positions (detached): ``1 - R^2`` of the teacher's features, 0
   for a perfect reconstruction and 1 for predicting each channel's mean. Every level and
   every teacher lands on one scale, so one ``target`` means the same everywhere.
4. **Adaptive difficulty.** One difficulty ``d`` in [0, 1] sets the mask share and the noise:
   ``r = mask_min + d (mask_max - mask_min)``, ``s = d * noise_max``. After each training
   step ``d += adapt_rate * clip((target - L) / target, -1, 1)`` with ``L`` the step's error
   (mean over levels, averaged over processes under DDP): an integral controller that holds
   the reconstruction error near ``target``. A student that reconstructs well gets more and
   noisier holes; one that cannot gets fewer (down to plain feature distillation at
   ``mask_min = 0``). The loss itself is therefore held near the target, not driven to 0;
   the rising difficulty is the sign of progress (logged as ``mask_ratio`` and ``noise``).

The masked pass runs with the student's batch-norm running statistics frozen
(:func:`frozen_norm_stats`): the student is evaluated on clean images, so its running
statistics must describe clean images (the clean pass of the task loss updates them).

``engine.distill.DistillTask`` adds the task loss on the clean input and the weights.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from dlrmamba_core.errors import ConfigError

if TYPE_CHECKING:
    from dlrmamba_core.engine.config import RS4DConfig

LEVELS = ("p3", "p4", "p5")


def patch_mask(batch: int, height: int, width: int, patch: int, ratio: float,
               device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> Tensor:
    """Random square mask: exactly ``round(ratio * n)`` of the n patches of each image.

    A fixed count (not a Bernoulli draw per patch) keeps every image of a batch at the same
    difficulty.

    Args:
        batch: images B.
        height: image height H in pixels (a multiple of ``patch``).
        width: image width W in pixels (a multiple of ``patch``).
        patch: side of a square in pixels.
        ratio: share of masked squares in [0, 1).
        device: where the mask is made.
        generator: random source (default: torch's global one, so a run is reproducible from
            its seed and resumable from its RNG state).

    Returns:
        (B, 1, H, W) float mask, 1 on masked pixels, 0 elsewhere.

    Raises:
        ConfigError: ``patch`` does not divide H and W.
    """
    if height % patch or width % patch:
        raise ConfigError(f"RS4D patch {patch} px does not divide the input {height}x{width}; "
                          "pass --rs4d patch=P with P dividing both (e.g. 32 or 16)")
    gh, gw = height // patch, width // patch
    n = gh * gw
    k = round(ratio * n)
    mask = torch.zeros(batch, n, device=device)
    if k > 0:
        order = torch.rand(batch, n, device=device, generator=generator).argsort(1)
        mask.scatter_(1, order[:, :k], 1.0)  # k random patches per image
    mask = mask.view(batch, 1, gh, gw)  # (B, 1, H/patch, W/patch)
    return mask.repeat_interleave(patch, 2).repeat_interleave(patch, 3)  # (B, 1, H, W)


def corrupt(image: Tensor, mask: Tensor, noise: float,
            generator: torch.Generator | None = None) -> Tensor:
    """Replace masked pixels by the image's per-channel mean + noise, clipped to [0, 1].

    Args:
        image: (B, C, H, W) in [0, 1].
        mask: (B, 1, H, W), 1 where masked.
        noise: noise std in units of each image's per-channel std (0: flat mean).
        generator: random source (default: torch's global one).

    Returns:
        (B, C, H, W); unmasked pixels are ``image`` exactly. A constant channel (e.g. a
        blanked modality, all zeros) stays constant.
    """
    mean = image.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    fill = mean.expand_as(image)
    if noise > 0:
        std = image.std(dim=(2, 3), keepdim=True, correction=0)  # (B, C, 1, 1)
        eps = torch.randn(image.shape, device=image.device, dtype=image.dtype,
                          generator=generator)
        fill = (fill + noise * std * eps).clamp(0.0, 1.0)
    return torch.lerp(image, fill, mask.to(image.dtype))


@contextlib.contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """Inside, batch norms in train mode normalise with batch statistics but update neither
    their running mean/var nor their batch counter (eval-mode norms are unaffected)."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
             and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False  # train mode + not tracked: batch stats, no update
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def level_channels(model: nn.Module, features: str) -> tuple[int, ...]:
    """Channels of the P3-P5 maps a detector gives at ``features`` ("backbone" or "neck").

    Raises:
        ConfigError: ``model`` is not a detector of ``models.build_model`` (no ``cfg``) or
            ``features`` is unknown.
    """
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ConfigError(f"{type(model).__name__} has no detector config; RS4D distills "
                          "between detectors built by models.build_model")
    if features == "backbone":
        return tuple(cfg.widths)
    if features == "neck":
        return tuple(cfg.neck)
    raise ConfigError(f"RS4D features {features!r}: choose backbone or neck")


def pyramid(model: nn.Module, rgb: Tensor, thermal: Tensor, features: str) -> list[Tensor]:
    """[P3, P4, P5] of a detector: backbone outputs (B, widths[i], H/s, W/s) or neck outputs
    (B, neck[i], H/s, W/s), s = 8, 16, 32.

    The backbone path is the detector's ``forward_features`` without the neck (pixel fusion in
    front, except for fusion_mamba, whose backbone takes both images).
    """
    if features == "neck":
        return list(model.forward_features(rgb, thermal))  # type: ignore[operator]
    fusion = getattr(model, "fusion", None)
    backbone: Any = model.backbone
    return list(backbone(rgb, thermal) if fusion is None else backbone(fusion(rgb, thermal)))


def relative_error(pred: Tensor, target: Tensor) -> Tensor:
    """``MSE(pred, target) / mean_c Var(target_c)`` (1 - R^2), normaliser detached.

    Args:
        pred: (B, C, H, W) projected student features.
        target: (B, C, H, W) teacher features.

    Returns:
        Scalar: 0 for a perfect reconstruction, 1 for predicting each channel's mean.
    """
    p, t = pred.float(), target.float()
    var = t.detach().var(dim=(0, 2, 3), correction=0).mean().clamp_min(1e-8)
    return F.mse_loss(p, t) / var


class LevelProjection(nn.Module):
    """1x1 convolution from the student's channels to the teacher's at one level.

    Identity at init when the widths agree: a student equal to the teacher then starts at
    zero error, and an SVD-built student starts from a plain comparison. Otherwise torch's
    default init (the map is learned from the first step).

    Args:
        c_student: student channels.
        c_teacher: teacher channels.
    """

    def __init__(self, c_student: int, c_teacher: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_student, c_teacher, 1)
        if c_student == c_teacher:
            with torch.no_grad():
                self.conv.weight.copy_(torch.eye(c_teacher)[:, :, None, None])
                cast(Tensor, self.conv.bias).zero_()
        # Decay would shrink the map, i.e. rescale the target the student chases, not make
        # the student simpler.
        for p in self.conv.parameters():
            p._no_weight_decay = True  # type: ignore[attr-defined]

    def forward(self, x: Tensor) -> Tensor:
        """(B, c_student, H, W) -> (B, c_teacher, H, W)."""
        return self.conv(x)


class AdaptiveMaskedDistillation(nn.Module):
    """The RS4D loss: projections, the difficulty state and the masked pass.

    Holds no reference to either model: both are passed to :meth:`forward`. Its state (the
    projections and the ``difficulty`` buffer) is saved with the distillation task, so a
    resumed run continues at the same difficulty.

    Args:
        student: the student detector (any registry variant).
        teacher: the frozen teacher detector (any registry variant; same input size).
        cfg: masking, noise and adaptive-rule settings (``engine.config.RS4DConfig``).

    Raises:
        ConfigError: invalid settings, or a model that is not a detector.
    """

    difficulty: Tensor

    def __init__(self, student: nn.Module, teacher: nn.Module, cfg: RS4DConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        s_ch = level_channels(student, cfg.features)
        t_ch = level_channels(teacher, cfg.features)
        self.proj = nn.ModuleList(LevelProjection(cs, ct)
                                  for cs, ct in zip(s_ch, t_ch, strict=True))
        self.register_buffer("difficulty", torch.tensor(float(cfg.start)))

    def mask_ratio(self) -> float:
        """Share of masked squares at the current difficulty."""
        c = self.cfg
        return c.mask_min + float(self.difficulty) * (c.mask_max - c.mask_min)

    def noise_scale(self) -> float:
        """Noise std (units of the image std) at the current difficulty."""
        return float(self.difficulty) * self.cfg.noise_max

    @torch.no_grad()
    def adapt(self, error: Tensor) -> None:
        """One controller step from this step's mean reconstruction error (see the module
        docstring); averaged over processes first under DDP, so every rank keeps the same
        difficulty."""
        err = error.detach().float().reshape(()).to(self.difficulty.device).clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(err)
            err /= torch.distributed.get_world_size()
        step = ((self.cfg.target - err) / self.cfg.target).clamp(-1.0, 1.0)
        self.difficulty.add_(self.cfg.adapt_rate * step).clamp_(0.0, 1.0)

    def forward(self, student: nn.Module, teacher: nn.Module, rgb: Tensor, thermal: Tensor
                ) -> dict[str, Tensor]:
        """Teacher on the clean input, student on the masked one; the reconstruction errors.

        Adapts the difficulty when this module is in train mode.

        Args:
            student: the student (its train/eval mode is kept; norms' running statistics are
                not updated by this pass).
            teacher: the frozen teacher (run under ``no_grad``).
            rgb: (B, 3, H, W) in [0, 1].
            thermal: (B, 1, H, W) in [0, 1].

        Returns:
            ``rs4d`` (mean over levels, with gradients), ``rs4d_p3`` / ``_p4`` / ``_p5``
            (detached), and the ``mask_ratio`` and ``noise`` this step used (0-dim tensors).

        Raises:
            ConfigError: the patch does not divide the input, or the two models' maps differ
                in size.
        """
        ratio, noise = self.mask_ratio(), self.noise_scale()
        b, _, h, w = rgb.shape
        mask = patch_mask(b, h, w, self.cfg.patch, ratio, rgb.device)
        with torch.no_grad():
            rgb_m, thermal_m = corrupt(rgb, mask, noise), corrupt(thermal, mask, noise)
            t_feats = pyramid(teacher, rgb, thermal, self.cfg.features)
        with frozen_norm_stats(student):
            s_feats = pyramid(student, rgb_m, thermal_m, self.cfg.features)
        errors = []
        with torch.autocast(device_type=rgb.device.type, enabled=False):
            for level, proj, s, t in zip(LEVELS, self.proj, s_feats, t_feats, strict=True):
                if s.shape[-2:] != t.shape[-2:]:
                    raise ConfigError(f"RS4D {level}: student map {tuple(s.shape[-2:])} != "
                                      f"teacher map {tuple(t.shape[-2:])}; both models must "
                                      "downsample by 8, 16, 32")
                errors.append(relative_error(proj(s.float()), t))
        loss = torch.stack(errors).mean()
        if self.training:
            self.adapt(loss)
        dev = rgb.device
        return {"rs4d": loss,
                **{f"rs4d_{lv}": e.detach() for lv, e in zip(LEVELS, errors, strict=True)},
                "mask_ratio": torch.tensor(float(mask.mean()), device=dev),
                "noise": torch.tensor(noise, device=dev)}
