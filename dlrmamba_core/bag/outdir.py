"""Atomic output directories: a result directory appears complete (or marked partial) or not
at all.

Everything is written into a hidden sibling ``.<name>.tmp-<pid>-<n>/`` and renamed to the final
name at the end (``os.replace`` is atomic on POSIX within one filesystem). On an error the
temporary directory is removed, so a failed run never leaves output that looks complete.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
import shutil

from dlrmamba_core.errors import BagError

_counter = itertools.count()


class AtomicDir:
    """A temporary directory that becomes ``dest`` on :meth:`commit`.

    Args:
        dest: final path (must not exist unless ``overwrite``).
        overwrite: replace an existing ``dest`` at commit time.

    Raises:
        BagError: ``dest`` exists and ``overwrite`` is false.
    """

    def __init__(self, dest: str | Path, overwrite: bool = False) -> None:
        self.dest = Path(dest)
        if self.dest.exists() and not overwrite:
            raise BagError(f"{self.dest} exists already; remove it or pass --overwrite")
        self.overwrite = overwrite
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.parent / f".{self.dest.name}.tmp-{os.getpid()}-{next(_counter)}"
        self.tmp.mkdir()
        self.done = False

    def commit(self) -> Path:
        """Rename the temporary directory to ``dest`` (replacing it if ``overwrite``)."""
        if self.dest.exists():
            if not self.overwrite:
                raise BagError(f"{self.dest} appeared while writing; not overwriting it")
            old = self.dest.parent / f".{self.dest.name}.old-{os.getpid()}-{next(_counter)}"
            os.replace(self.dest, old)
            os.replace(self.tmp, self.dest)
            _remove(old)
        else:
            os.replace(self.tmp, self.dest)
        self.done = True
        return self.dest

    def discard(self) -> None:
        """Remove the temporary directory (after an error)."""
        if not self.done:
            _remove(self.tmp)
            self.done = True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
