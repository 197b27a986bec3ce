"""Helpers of the ROS tests (imported by the test modules and test/ros/conftest.py).

A module with a unique name: ``from conftest import ...`` would pick up whichever
conftest.py pytest imported first.
"""

from __future__ import annotations

from collections.abc import Callable
import itertools
import os
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dlrmamba_core.runtime import image_codec as ic

CLASS_NAMES = ["person", "car", "boat"]
INPUT_HW = (128, 160)
# A random-init model scores every class near its prior (~0.01): a low threshold makes the
# detections non-empty so the box comparison means something.
CONF = 0.001
_COUNTER = itertools.count()


def synthetic_pair(seed: int, rgb_hw: tuple[int, int] = (240, 320),
                   thermal_hw: tuple[int, int] = (120, 160)) -> tuple[np.ndarray, np.ndarray]:
    """A SYNTHETIC RGB (H, W, 3) uint8 + raw thermal (Ht, Wt) uint16 pair.

    Uses the data package's generator when it is installed; otherwise draws warm rectangles
    on gradients (also synthetic, only to exercise the node).
    """
    try:
        from dlrmamba_core.data.synthetic import SynthConfig, generate_frame
    except ImportError:
        generate_frame = None
    if generate_frame is not None:
        sample = generate_frame(SynthConfig(), seed)
        import cv2

        rgb = cv2.resize(sample.rgb, (rgb_hw[1], rgb_hw[0]))
        thermal = cv2.resize(sample.thermal, (thermal_hw[1], thermal_hw[0]))
        return rgb, thermal
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rgb_hw[0], 0:rgb_hw[1]]
    rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)
    thermal = np.full(thermal_hw, 28000, np.uint16) + rng.integers(0, 300, thermal_hw,
                                                                     dtype=np.uint16)
    for _ in range(3):
        y, x = rng.integers(10, rgb_hw[0] - 60), rng.integers(10, rgb_hw[1] - 60)
        h, w = rng.integers(15, 50, size=2)
        rgb[y:y + h, x:x + w] = rng.integers(0, 255, 3)
        ty, tx = y * thermal_hw[0] // rgb_hw[0], x * thermal_hw[1] // rgb_hw[1]
        thermal[ty:ty + h // 2, tx:tx + w // 2] = 31000
    return rgb, thermal


def header(stamp_ns: int, frame_id: str) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return h


def image_msg(img: np.ndarray, layout: str, stamp_ns: int, frame_id: str,
              **overrides: Any) -> Image:
    """A raw Image of ``img`` laid out as encoding ``layout``; ``overrides`` replace fields
    afterwards (to build broken messages)."""
    f = ic.numpy_to_image(img, layout)
    msg = Image(header=header(stamp_ns, frame_id), height=f.height, width=f.width,
                encoding=f.encoding, is_bigendian=0, step=f.step)
    msg.data = f.data
    for k, v in overrides.items():
        setattr(msg, k, v)
    return msg


def compressed_msg(img: np.ndarray, encoding: str, fmt: str, stamp_ns: int,
                   frame_id: str) -> CompressedImage:
    fmt_str, data = ic.numpy_to_compressed(img, encoding, fmt)
    msg = CompressedImage(header=header(stamp_ns, frame_id), format=fmt_str)
    msg.data = data
    return msg


class Harness:
    """A DetectorNode plus a peer node (camera publishers, output subscribers), spinning on a
    real multi-threaded executor in a background thread."""

    def __init__(self, model: str, **params: Any) -> None:
        from dlrmamba_ros.detector_node import DetectorNode

        self.ns = f"/t{os.getpid()}_{next(_COUNTER)}"
        overrides = {"model": model, "conf_threshold": CONF, "threads": 1, **params}
        self.node = DetectorNode(
            namespace=self.ns,
            parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        )
        self.peer = rclpy.create_node("fake_camera", namespace=self.ns)
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def publisher(self, msg_type: type, topic: str, qos: Any = qos_profile_sensor_data) -> Any:
        return self.peer.create_publisher(msg_type, topic, qos)

    def collect(self, msg_type: type, topic: str, qos: Any = 10) -> list[Any]:
        """Subscribe from the peer; returns the (live) list of received messages."""
        got: list[Any] = []
        lock = threading.Lock()

        def cb(msg: Any) -> None:
            with lock:
                got.append(msg)

        self.peer.create_subscription(msg_type, topic, cb, qos)
        return got

    def wait_for_subscribers(self, pub: Any, n: int = 1, timeout: float = 10.0) -> None:
        assert wait_for(lambda: pub.get_subscription_count() >= n, timeout), (
            f"no subscriber matched {pub.topic_name} within {timeout} s")

    def configure_activate(self) -> None:
        from rclpy.lifecycle import TransitionCallbackReturn

        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        # Stop spinning before anything is destroyed, so no callback runs on a dead entity.
        assert self.executor.shutdown(timeout_sec=10.0), "executor did not stop in 10 s"
        self._thread.join(timeout=10.0)
        self.executor.remove_node(self.node)
        self.executor.remove_node(self.peer)
        self.node.close()
        self.node.destroy_node()
        self.peer.destroy_node()


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, period: float = 0.01) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` (s) passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period)
    return bool(pred())


