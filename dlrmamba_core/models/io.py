"""Checkpoint files of a detector: a plain dict loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from dlrmamba_core.engine.fileio import torch_save
from dlrmamba_core.errors import ConfigError, ModelFileError
from dlrmamba_core.models.config import DetectorConfig

_REQUIRED = ("variant", "config", "num_classes", "class_names", "input_hw", "state_dict")


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module,
    class_names: list[str],
    input_hw: tuple[int, int],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder, then rename).

    Args:
        path: destination (.pt); parent folders are created.
        model: a :class:`~dlrmamba_core.models.DetectorNet` (anything with ``cfg`` and
            ``num_classes``).
        class_names: one name per class, in class-id order.
        input_hw: network input (height, width) in pixels the model was trained for.
        extra: more plain data to store (metrics, epoch, ...): only str/int/float/bool/None,
            lists, tuples and dicts of them, and tensors (weights_only loading rejects the rest).

    Returns:
        The path written.

    Raises:
        ConfigError: class_names does not match the model's number of classes.
    """
    cfg = cast(DetectorConfig, model.cfg)
    num_classes = int(cast(int, model.num_classes))
    if len(class_names) != num_classes:
        raise ConfigError(
            f"{len(class_names)} class names given for a model with {num_classes} "
            "classes; pass one name per class"
        )
    ckpt = {
        "variant": cfg.variant,
        "config": cfg.to_dict(),
        "num_classes": num_classes,
        "class_names": list(class_names),
        "input_hw": [int(input_hw[0]), int(input_hw[1])],
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    return torch_save(path, ckpt)  # atomic, with the umask's mode


def checkpoint_problem(path: Path, exc: BaseException) -> str:
    """One short phrase for why ``torch.load`` failed (torch's own text runs ~400 chars)."""
    import zipfile

    text = str(exc)
    try:
        with open(path, "rb") as fh:
            starts_like_zip = fh.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
        cut_zip = starts_like_zip and not zipfile.is_zipfile(path)  # no end record: cut short
    except OSError:
        cut_zip = False
    if cut_zip or "central directory" in text or isinstance(exc, EOFError):
        return f"the file is truncated or corrupt ({path.stat().st_size} bytes; an interrupted " \
               "copy or write?)"
    if "weights_only" in text or "Unsupported global" in text:
        return "it holds Python objects beyond tensors and plain data, so it is not a " \
               "dlrmamba model file (those load with weights_only=True)"
    return f"it is not a PyTorch checkpoint ({type(exc).__name__}: {text.splitlines()[0][:80]})"


def load_model(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_model`.

    Returns:
        (model in eval mode, meta): meta has every checkpoint key except ``state_dict``.

    Raises:
        ModelFileError: missing file, not a checkpoint, missing keys, or weights that do not
            fit the stored config.
    """
    from dlrmamba_core.models import build_from_config

    src = Path(path)
    if not src.is_file():
        raise ModelFileError(f"checkpoint {src} does not exist; check the path")
    try:
        ckpt = torch.load(src, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/foreign files
        raise ModelFileError(
            f"{src} is not a readable dlrmamba model file: {checkpoint_problem(src, exc)}; "
            "copy it again or pass the best.pt / final.pt of `dlrmamba train` or `distill`"
        ) from exc
    if not isinstance(ckpt, dict):
        raise ModelFileError(f"{src} holds a {type(ckpt).__name__}, not a dlrmamba model file; "
                             "pass the best.pt that `dlrmamba train` or `distill` wrote")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise ModelFileError(f"{src} lacks checkpoint keys {missing} (a last.pt training state "
                             "or another program's checkpoint?); pass the best.pt or final.pt "
                             "that `dlrmamba train` or `distill` wrote")
    try:
        cfg = DetectorConfig.from_dict(ckpt["config"])
    except (ConfigError, TypeError) as exc:
        raise ModelFileError(f"{src}: invalid model config: {exc}") from exc
    model = build_from_config(cfg)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"{src}: weights do not match its config: {exc}") from exc
    model.to(map_location).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model, meta
