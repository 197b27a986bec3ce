"""Atomic writes: the one helper (engine.fileio) leaves no temporary file and gives the
umask's mode; the synthetic dataset writer uses it (it had its own 0600 copy)."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import stat

import pytest

from dlrmamba_core.engine.fileio import atomic_write, write_text


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_atomic_write_keeps_old_content_on_failure(tmp_path: Path, umask_022: None) -> None:
    dest = write_text(tmp_path / "sub" / "a.txt", "old\n")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644

    def broken(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(dest, broken)
    assert dest.read_text() == "old\n"
    assert [p.name for p in dest.parent.iterdir()] == ["a.txt"]  # no temporary left


def test_synthetic_dataset_files_follow_the_umask(tmp_path: Path, umask_022: None) -> None:
    from dlrmamba_core.data.synthetic import SynthConfig, write_frame_dataset

    write_frame_dataset(tmp_path, 2, (("train", 1.0),), seed=0,
                        cfg=SynthConfig(rgb_size=(64, 48), thermal_size=(32, 24)))
    texts = [p for p in tmp_path.rglob("*") if p.suffix in (".json", ".txt")]
    assert texts and (tmp_path / "dataset.json") in texts
    for p in texts:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary left
