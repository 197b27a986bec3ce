"""Fixtures of the ROS tests: a real nano ONNX model, real rclpy nodes over loopback.

Every test gets its own namespace; test/conftest.py already gives this pytest process its own
DDS domain on localhost, so parallel runs never see each other's topics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import importlib.util
from typing import Any

import pytest

HAVE_ROS = all(importlib.util.find_spec(m) is not None for m in ("rclpy", "vision_msgs"))
if not HAVE_ROS:
    # Without ROS 2 the node tests cannot even be imported; the launch-file checks still run.
    collect_ignore = ["test_detector_node.py", "ros_helpers.py"]


@pytest.fixture(scope="session")
def nano_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ``nano`` variant (seed 0, untrained) exported to ONNX by the runtime's exporter."""
    torch = pytest.importorskip("torch")
    from ros_helpers import CLASS_NAMES, INPUT_HW

    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("nano_model")
    model = build_model("nano", num_classes=len(CLASS_NAMES)).eval()
    ckpt = save_model(root / "nano.pt", model, CLASS_NAMES, INPUT_HW)
    result = export_onnx(ckpt, root / "nano.onnx", parity_samples=0)
    return str(result.onnx_path)


@pytest.fixture(scope="session")
def ros_context() -> Iterator[None]:
    """rclpy initialised once for the session."""
    if not HAVE_ROS:
        pytest.skip("needs rclpy and vision_msgs")
    import rclpy

    rclpy.init()
    try:
        yield
    finally:
        rclpy.try_shutdown()


@pytest.fixture
def harness_factory(nano_model: str, ros_context: None) -> Iterator[Callable[..., Any]]:
    """Make Harness objects (closed at the end of the test)."""
    from ros_helpers import Harness

    made: list[Harness] = []

    def make(**params: Any) -> Harness:
        h = Harness(nano_model, **params)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
