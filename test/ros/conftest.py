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
    collect_ignore = ["test_detector_node.py", "test_conversions.py", "ros_helpers.py"]


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
def segment_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ``nano`` segment model (K = 8 prototypes, seed 0, untrained) exported to ONNX.

    As test/core/deploy/test_export_segment.py does: BatchNorm statistics re-estimated on a
    few random inputs and the mask coefficients scaled up, so that the masks have object and
    background pixels (an untrained head's logits all sit near 0).
    """
    torch = pytest.importorskip("torch")
    from ros_helpers import CLASS_NAMES, INPUT_HW

    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("segment_model")
    model = build_model("nano", num_classes=len(CLASS_NAMES), task="segment", num_protos=8)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the passes below
    model.train()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 3, *INPUT_HW, generator=g),
                  torch.rand(4, 1, *INPUT_HW, generator=g))
        for lvl in model.mask_coef.levels:
            lvl[-1].weight.mul_(30.0)  # logits of either sign well away from 0
    ckpt = save_model(root / "seg.pt", model.eval(), CLASS_NAMES, INPUT_HW)
    result = export_onnx(ckpt, root / "seg.onnx", parity_samples=0)
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
    """Make Harness objects (the nano model unless ``model=``; closed at the end of the
    test)."""
    from ros_helpers import Harness

    made: list[Harness] = []

    def make(model: str | None = None, **params: Any) -> Harness:
        h = Harness(model or nano_model, **params)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
