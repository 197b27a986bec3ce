"""Atomic file writes: an output either appears complete or not at all.

Every writer goes to a temporary file in the destination folder and then renames it over the
destination (``os.replace`` is atomic on POSIX when both live on the same filesystem).
The temporary file gets the mode a plain ``open()`` would give (0666 minus the umask), not
``mkstemp``'s private 0600, so outputs are readable like every other tool's.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
import tempfile
from typing import Any


def umask_mode(base: int = 0o666) -> int:
    """``base`` minus the process umask: the mode ``open()`` gives a new file."""
    try:  # Linux: read the umask without changing it (os.umask is process-wide, racy)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return base & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return base & ~mask


def temp_file_for(dest: Path, suffix: str = ".tmp") -> str:
    """A new empty temporary file beside ``dest`` with the umask's mode (path returned).

    ``tempfile.mkstemp`` creates files 0600; renamed over the destination they would stay
    private, so the mode is set to :func:`umask_mode` here, once, for every atomic writer.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    try:
        os.fchmod(fd, umask_mode())
    finally:
        os.close(fd)
    return tmp


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
    tmp = temp_file_for(dest)
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
