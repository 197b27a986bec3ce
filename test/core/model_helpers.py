"""Helpers shared by the runtime, deploy and models tests (imported by name: the test dirs are
not packages)."""

from __future__ import annotations

from pathlib import Path

#: Native input (h, w) of the test model: small, so export + inference take ~1 s.
TEST_HW = (128, 160)


def make_checkpoint(path: Path, variant: str = "nano", seed: int = 0) -> Path:
    """Save an untrained ``variant`` whose class scores are spread out (not ~0.01 ties)."""
    import torch

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(seed)
    model = build_model(variant, len(SYNTH_CLASSES))
    # Untrained, eval-mode BatchNorm (running var 1) lets activations shrink ~4x per conv
    # block, so the head sees ~1e-5 features (float noise) and every class score ties at the
    # prior. Re-estimate the BatchNorm statistics on a few inputs (as training would), then
    # re-draw each 1x1 logits conv so the logits have std ~2: detections pass 0.25 and their
    # scores are far apart.
    h, w = TEST_HW
    gen = torch.Generator().manual_seed(seed)
    batch = (torch.rand(4, 3, h, w, generator=gen), torch.rand(4, 1, h, w, generator=gen))
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(*batch)
    model.eval()
    feats: dict[int, torch.Tensor] = {}
    hooks = [seq[-1].register_forward_pre_hook(
        lambda _m, args, i=i: feats.__setitem__(i, args[0])) for i, seq in
        enumerate(model.head.cls)]
    with torch.no_grad():
        model(torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 1, h, w, generator=gen))
        for h_ in hooks:
            h_.remove()
        for i, seq in enumerate(model.head.cls):
            conv = seq[-1]
            f = feats[i]  # (1, C, Hi, Wi)
            scale = 2.0 / (float(f.std()) * f.shape[1] ** 0.5 + 1e-12)
            conv.weight.normal_(0.0, scale)
            conv.bias.fill_(-1.0)  # most anchors below 0.25, a few above
    return save_model(path, model, list(SYNTH_CLASSES), TEST_HW,
                      extra={"data": {"dataset": "none (untrained test model)"}})


def make_segment_checkpoint(path: Path, class_names: list[str], num_protos: int = 8,
                            seed: int = 0) -> Path:
    """Save an untrained ``nano`` segment model whose masks have object and background pixels.

    BatchNorm statistics are re-estimated on random inputs (as in :func:`make_checkpoint`) and
    the mask coefficients scaled up, so the logits ``coeffs . protos`` sit well away from 0.
    """
    import torch

    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(seed)
    model = build_model("nano", len(class_names), task="segment", num_protos=num_protos)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the passes below
    model.train()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 3, *TEST_HW, generator=gen),
                  torch.rand(4, 1, *TEST_HW, generator=gen))
        for lvl in model.mask_coef.levels:
            lvl[-1].weight.mul_(30.0)  # logits of either sign well away from 0
    return save_model(path, model.eval(), list(class_names), TEST_HW)
