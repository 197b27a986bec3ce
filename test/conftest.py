"""Test-session set-up shared by every test directory.

* ROS 2 isolation: each pytest process gets its own DDS domain and discovers on localhost
  only, so concurrent test runs (or a robot on the same network) never cross-talk.
* ``gpu`` tests skip cleanly without CUDA; ``ros`` tests skip cleanly without rclpy.
"""

from __future__ import annotations

import importlib.util
import os
import random

import pytest

# Must happen before rclpy is imported anywhere. Domain ids 0..101 are valid on every OS.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_rclpy = importlib.util.find_spec("rclpy") is not None
    has_cuda: bool | None = None
    for item in items:
        if "gpu" in item.keywords:
            if has_cuda is None:
                has_cuda = _cuda_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none here)"))
        if "ros" in item.keywords and not has_rclpy:
            item.add_marker(pytest.mark.skip(reason="needs rclpy (run make install)"))
