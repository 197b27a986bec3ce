"""Child-process helpers shared by the pipeline and the demo (standard library only)."""

from __future__ import annotations

import subprocess
from typing import Any

__all__ = ["stop_process"]


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 20.0) -> None:
    """Terminate ``proc`` (SIGTERM), then kill it if it is still alive after ``grace_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
