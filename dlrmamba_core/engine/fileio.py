"""Atomic file writes: an output either appears complete or not at all.

Every writer goes to a temporary file in the destination folder and then renames it over the
destination (``os.replace`` is atomic on POSIX when both live on the same filesystem).
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
import tempfile
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``.

    Args:
        path: destination file; its parent folder is created if missing.
        write: writes the whole content to the path it is given.

    Returns:
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False)
            fh.write("\n")

    return atomic_write(path, _write)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a text file atomically."""

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, _write)


def torch_save(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save`` atomically (imports torch lazily)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_figure(path: str | os.PathLike[str], fig: Any) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    finally:
        plt.close(fig)
