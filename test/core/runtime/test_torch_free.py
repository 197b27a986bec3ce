"""The runtime path imports and runs with torch made unimportable (as on a Raspberry Pi).

Every module of ``dlrmamba_core/runtime`` is imported: the robot imports that one folder.
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import numpy as np

_BLOCKED_RUN = r"""
import importlib.abc, json, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import of {name})")
        return None

sys.meta_path.insert(0, BlockTorch())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the torch blocker does not work")

import importlib, pkgutil
import numpy as np
import dlrmamba_core.runtime as rt
from dlrmamba_core.runtime import Detector, Detections
# every module of the robot's folder, not only the ones the Detector happens to use
runtime_modules = sorted(m.name for m in pkgutil.iter_modules(rt.__path__,
                                                            "dlrmamba_core.runtime."))
for name in runtime_modules:
    importlib.import_module(name)
import dlrmamba_core.data
from dlrmamba_core.data.synthetic import SynthConfig, generate_frame
from dlrmamba_core.cli import build_parser  # the `dlrmamba` command (every subcommand's parser)

build_parser()

s = generate_frame(SynthConfig(), 11)
det = Detector(sys.argv[1], threads=1, require_card=True)
d = det.detect(s.rgb, s.thermal, s.homography)
assert isinstance(d, Detections)
print(json.dumps({"n": len(d), "boxes": d.boxes.tolist(), "classes": d.class_ids.tolist(),
                  "runtime_modules": runtime_modules,
                  "torch_loaded": any(m == "torch" or m.startswith("torch.")
                                      for m in sys.modules)}))
"""


def test_runtime_runs_with_torch_blocked(nano_onnx: Path, synth_frames: list[Any]) -> None:
    proc = subprocess.run([sys.executable, "-c", _BLOCKED_RUN, str(nano_onnx)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] is False
    # Every .py file of dlrmamba_core/runtime was imported with torch blocked.
    import dlrmamba_core.runtime

    folder = Path(dlrmamba_core.runtime.__file__).parent
    files = sorted(f"dlrmamba_core.runtime.{f.stem}" for f in folder.glob("*.py")
                   if f.stem != "__init__")
    assert out["runtime_modules"] == files and len(files) >= 8
    # Same detections as in this (torch-enabled) process.
    from dlrmamba_core.runtime import Detector

    s = synth_frames[0]
    d = Detector(nano_onnx, threads=1).detect(s.rgb, s.thermal, s.homography)
    assert out["n"] == len(d) > 0
    assert out["classes"] == d.class_ids.tolist()
    np.testing.assert_allclose(np.asarray(out["boxes"]), d.boxes, atol=1e-3)


_CLOSURE = r"""
import importlib, json, pkgutil, sys
import numpy as np

before = set(sys.modules)
import dlrmamba_core.runtime as rt

for m in pkgutil.iter_modules(rt.__path__, "dlrmamba_core.runtime."):
    importlib.import_module(m.name)
pair = np.load(sys.argv[2])
d = rt.Detector(sys.argv[1], threads=1).detect(pair["rgb"], pair["thermal"], pair["h"])
print(json.dumps({"n": len(d), "loaded": sorted(m for m in set(sys.modules) - before
                                                if m.startswith("dlrmamba_core"))}))
"""


def test_runtime_reaches_outside_its_folder_only_for_preprocessing(
        nano_onnx: Path, synth_frames: list[Any], tmp_path: Path) -> None:
    """Importing every runtime module and detecting loads, besides the runtime folder, only
    data's numpy pre-processing (shared with training) and errors: no engine, models, bag,
    deploy or research module."""
    s = synth_frames[0]
    np.savez(tmp_path / "pair.npz", rgb=s.rgb, thermal=s.thermal, h=s.homography)
    proc = subprocess.run([sys.executable, "-c", _CLOSURE, str(nano_onnx),
                           str(tmp_path / "pair.npz")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] > 0
    loaded = out["loaded"]
    assert "dlrmamba_core.runtime.detector" in loaded and "dlrmamba_core.data.preprocess" in loaded
    outside = [m for m in loaded if not m.startswith(("dlrmamba_core.runtime",
                                                      "dlrmamba_core.data"))]
    assert outside == ["dlrmamba_core", "dlrmamba_core.errors"], outside


def test_blocker_really_blocks_torch_users() -> None:
    """Control: the same blocker makes a torch-side module fail, so the test above can fail."""
    code = _BLOCKED_RUN.split("import numpy as np")[0] + "import dlrmamba_core.models.detector\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode != 0
    assert "torch is blocked" in proc.stderr
