"""Exponential moving average of model weights (evaluated and shipped instead of the raw
weights: it smooths the last epochs' SGD noise)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """EMA of a model's parameters and buffers.

    The decay ramps up as ``decay * (1 - exp(-updates / tau))`` so the first updates follow the
    (random-init) weights closely instead of averaging them for thousands of steps.

    Args:
        model: the model to track (unwrapped, not DDP).
        decay: asymptotic decay per update.
        tau: ramp length in updates (optimizer steps).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 1000.0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0

    def current_decay(self) -> float:
        """Decay used by the next update."""
        return self.decay * (1.0 - math.exp(-(self.updates + 1) / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current weights in (integer buffers are copied)."""
        d = self.current_decay()
        self.updates += 1
        src = model.state_dict()
        for name, ema_v in self.module.state_dict().items():
            v = src[name].detach()
            if ema_v.dtype.is_floating_point:
                ema_v.mul_(d).add_(v.to(ema_v.dtype), alpha=1.0 - d)
            else:
                ema_v.copy_(v)

    def state_dict(self) -> dict[str, Any]:
        """Weights and the update counter (the decay ramp depends on it)."""
        return {"module": self.module.state_dict(), "updates": self.updates,
                "decay": self.decay, "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state["decay"])
        self.tau = float(state["tau"])
