"""Detector variants: ``build_model(name, num_classes)``, the registry, student from teacher."""

from __future__ import annotations

from typing import Any

from dlrmamba_core.models.config import (
    DetectorConfig,
    get_config,
    list_variants,
    register_variant,
    variant_description,
)
from dlrmamba_core.models.detector import Detector
from dlrmamba_core.models.student import student_from_teacher


def build_model(variant: str, num_classes: int, **overrides: Any) -> Detector:
    """Build a registered variant with ``num_classes`` classes and config field overrides.

    Raises:
        ConfigError: unknown variant or override name, or num_classes < 1.
    """
    return build_from_config(get_config(variant, num_classes, **overrides))


def build_from_config(cfg: DetectorConfig) -> Detector:
    """Build a detector from a full config (e.g. one read from a checkpoint)."""
    return Detector(cfg)


__all__ = [
    "Detector",
    "DetectorConfig",
    "build_from_config",
    "build_model",
    "get_config",
    "list_variants",
    "register_variant",
    "student_from_teacher",
    "variant_description",
]
