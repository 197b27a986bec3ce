"""The install works and fails loudly: share files are found, broken set-ups name their step."""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_share_directory_has_launch_config_models() -> None:
    pytest.importorskip("ament_index_python")
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("dlrmamba_ros"))
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "detector.launch.py").is_file()
    assert (share / "config" / "detector.yaml").is_file()
    assert (share / "models").is_dir()
    # The shipped default model (models/default.json names it) is resolvable from the share
    # directory, with its model card beside it.
    import json

    default = share / "models" / "default.json"
    assert default.is_file(), f"{default}: the shipped default model is not installed"
    model = share / "models" / json.loads(default.read_text())["model"]
    assert model.is_file() and model.with_suffix(".json").is_file(), model


def test_console_scripts_installed() -> None:
    bindir = Path(sys.executable).parent
    assert (bindir / "dlrmamba").exists()
    assert (bindir / "detector_node").exists()
    out = subprocess.run(
        [str(bindir / "dlrmamba"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "dlrmamba" in out.stdout


def test_install_without_python311_names_the_step(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ROS_DISTRO"}
    env.update(PYTHON=str(tmp_path / "no-such-python3.11"), VENV=str(tmp_path / "venv"))
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "install.sh")], capture_output=True, text=True, env=env,
        timeout=60,
    )
    assert out.returncode != 0
    assert "FAILED at step: 1/5 find the Python interpreter" in out.stderr
    assert "was not found" in out.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_broken_vision_msgs_build_reports_cmake_failure(tmp_path: Path) -> None:
    pkg = tmp_path / "vision_msgs"
    shutil.copytree(ROOT / "tools" / "vision_msgs", pkg)
    (pkg / "msg" / "Point2D.msg").write_text("float64 x\nnot_a_type y\n")
    venv = Path(sys.prefix)
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_vision_msgs.py"), "--venv", str(venv),
         "--pkg", str(pkg), "--prefix", str(tmp_path / "prefix"), "--force"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode != 0
    assert "cmake step failed" in out.stderr
    assert not (tmp_path / "prefix" / "share" / "vision_msgs").exists()
