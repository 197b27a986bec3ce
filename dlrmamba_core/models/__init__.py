"""Detector variants: ``build_model(name, num_classes)``, the registry, student from teacher.

Importing this package does not import torch: the registry (``models.config``) is read by
command-line parsers that must work on a robot without torch; the torch modules (``DetectorNet``,
``student_from_teacher``) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dlrmamba_core.models.config import (
    DetectorConfig,
    get_config,
    list_variants,
    register_variant,
    variant_description,
)

if TYPE_CHECKING:
    from dlrmamba_core.models.detector import DetectorNet
    from dlrmamba_core.models.student import student_from_teacher

_LAZY = {"DetectorNet": "dlrmamba_core.models.detector",
         "student_from_teacher": "dlrmamba_core.models.student"}


def __getattr__(name: str) -> Any:
    """``DetectorNet`` and ``student_from_teacher``, imported (with torch) on first access."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(variant: str, num_classes: int, **overrides: Any) -> DetectorNet:
    """Build a registered variant with ``num_classes`` classes and config field overrides.

    Raises:
        ConfigError: unknown variant or override name, or num_classes < 1.
    """
    return build_from_config(get_config(variant, num_classes, **overrides))


def build_from_config(cfg: DetectorConfig) -> DetectorNet:
    """Build a detector from a full config (e.g. one read from a checkpoint)."""
    from dlrmamba_core.models.detector import DetectorNet

    return DetectorNet(cfg)


__all__ = [
    "DetectorConfig",
    "DetectorNet",
    "build_from_config",
    "build_model",
    "get_config",
    "list_variants",
    "register_variant",
    "student_from_teacher",
    "variant_description",
]
