"""1280x1024 rgb8 + 640x512 mono16 at 30 Hz over best-effort QoS: delivery with the shipped
DDS profile (issue 21 item 1). Publisher and node are separate processes, as in the field."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCH_FILE = REPO / "launch" / "detector.launch.py"
PROFILE = REPO / "config" / "fastdds_large_images.xml"
N_PAIRS, RATE_HZ = 150, 30.0

PUBLISHER = """
import sys, time
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
ns, n, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node("big_camera", namespace=ns)
pubs = [node.create_publisher(Image, t, qos_profile_sensor_data) for t in ("rgb_in", "th_in")]
deadline = time.monotonic() + 60
while min(p.get_subscription_count() for p in pubs) < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
time.sleep(1.0)
def msg(h, w, enc, ch, bpp, k):
    m = Image(height=h, width=w, encoding=enc, step=w * ch * bpp)
    m.header.stamp.sec, m.header.stamp.nanosec = 1_700_000_000 + k // 30, (k % 30) * 33_000_000
    m.header.frame_id = "cam"
    m.data = bytes(h * w * ch * bpp)  # SYNTHETIC: blank frames
    return m
rgb = [msg(1024, 1280, "rgb8", 3, 1, k) for k in range(n)]
th = [msg(512, 640, "mono16", 1, 2, k) for k in range(n)]
t0 = time.monotonic()
for k in range(n):
    pubs[1].publish(th[k])
    pubs[0].publish(rgb[k])
    time.sleep(max(0.0, t0 + (k + 1) / rate - time.monotonic()))
print("published", n, flush=True)
time.sleep(1.0)
node.destroy_node()
rclpy.shutdown()
"""


def _launch(ns: str, model: str, profile: str) -> subprocess.Popen:
    args = {"namespace": ns, "model": model, "rgb_topic": "rgb_in", "thermal_topic": "th_in",
            "dds_profile": profile, "log_level": "warn"}
    code = (
        "import sys\n"
        "from launch import LaunchService\n"
        "from launch.actions import IncludeLaunchDescription\n"
        "from launch.launch_description_sources import PythonLaunchDescriptionSource\n"
        "ls = LaunchService(noninteractive=True)\n"
        f"ls.include_launch_description(IncludeLaunchDescription(PythonLaunchDescriptionSource("
        f"{str(LAUNCH_FILE)!r}), launch_arguments={args!r}.items()))\n"
        "sys.exit(ls.run())\n"
    )
    env = {k: v for k, v in os.environ.items() if "PROFILES_FILE" not in k}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd="/", env=env)


def _node_subprocess(ns: str, model: str, env: dict[str, str]) -> subprocess.Popen:
    """The same node without launch: configure + activate by a small driver."""
    code = (
        "import rclpy, sys\n"
        "from rclpy.executors import SingleThreadedExecutor\n"
        "from rclpy.parameter import Parameter\n"
        "from dlrmamba_ros.detector_node import DetectorNode\n"
        "rclpy.init()\n"
        f"n = DetectorNode(namespace={ns!r}, parameter_overrides=[Parameter('model', value="
        f"{model!r})], cli_args=['--ros-args', '-r', 'rgb/image:=rgb_in', '-r', "
        "'thermal/image:=th_in'])\n"
        "n.trigger_configure(); n.trigger_activate()\n"
        "ex = SingleThreadedExecutor(); ex.add_node(n)\n"
        "try:\n    ex.spin()\nexcept BaseException:\n    pass\n"
        "n.close(); n.destroy_node(); rclpy.try_shutdown()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env)


def delivered_pairs(ns: str, model: str,
                    with_profile: bool) -> tuple[int, str, dict[str, str], dict[str, str]]:
    """Run node + publisher; return (pairs the node's synchronizer made, node output, the
    last values of the node's ``inputs`` and ``detector`` diagnostic statuses)."""
    import rclpy

    env = {k: v for k, v in os.environ.items() if "PROFILES_FILE" not in k}
    if with_profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILE)
    use_launch = importlib.util.find_spec("launch_ros") is not None
    proc = (_launch(ns, model, "fastdds" if with_profile else "none") if use_launch
            else _node_subprocess(ns, model, env))
    probe = rclpy.create_node("large_image_probe")
    latest: dict[str, str] = {}
    inputs: dict[str, str] = {}

    def on_diag(arr: DiagnosticArray) -> None:
        for st in arr.status:
            if st.hardware_id != f"{ns}/dlrmamba_detector":
                continue
            target = latest if st.name.endswith(": detector") else inputs
            if st.name.endswith((": detector", ": inputs")):
                target.clear()
                target.update({kv.key: kv.value for kv in st.values})

    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    out = ""
    try:
        deadline = time.monotonic() + 60
        while latest.get("state") != "active" and time.monotonic() < deadline:
            rclpy.spin_once(probe, timeout_sec=0.2)
        assert latest.get("state") == "active", "the node never became active"
        pub = subprocess.Popen([sys.executable, "-c", PUBLISHER, ns, str(N_PAIRS),
                                str(RATE_HZ)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60 + N_PAIRS / RATE_HZ
        while pub.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(probe, timeout_sec=0.2)
        pub_out = pub.communicate(timeout=30)[0]
        assert f"published {N_PAIRS}" in pub_out, pub_out
        end = time.monotonic() + 2.5  # two more diagnostics periods
        while time.monotonic() < end:
            rclpy.spin_once(probe, timeout_sec=0.2)
        pairs = int(latest.get("rgb_paired", "0"))
    finally:
        probe.destroy_node()
        proc.send_signal(signal.SIGINT)
        try:
            out = proc.communicate(timeout=30)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
    return pairs, out, dict(inputs), dict(latest)


@pytest.mark.slow
@pytest.mark.ros
def test_large_images_arrive_with_the_shipped_profile(nano_model: str, ros_context) -> None:
    pairs, out, inputs, _latest = delivered_pairs(f"/big{os.getpid()}", nano_model,
                                                  with_profile=True)
    assert "XMLPARSER" not in out, out
    assert pairs >= 0.95 * N_PAIRS, f"{pairs}/{N_PAIRS} pairs delivered:\n{out}"
    assert not any(k.startswith("low_delivery") for k in inputs), inputs


@pytest.mark.slow
@pytest.mark.ros
def test_stock_dds_loses_large_images_and_the_node_says_so(nano_model: str,
                                                           ros_context) -> None:
    """The control: without the profile (stock Fast DDS) pairs are lost, and the node's
    inputs diagnostic names the problem and the fix."""
    pairs, _out, inputs, latest = delivered_pairs(f"/stock{os.getpid()}", nano_model,
                                                 with_profile=False)
    assert pairs < 0.5 * N_PAIRS, f"stock DDS delivered {pairs}/{N_PAIRS}: control invalid"
    texts = [v for k, v in inputs.items() if k.startswith("low_delivery")]
    assert texts and all("dds_profile:=fastdds" in t for t in texts), (inputs, latest)
    if latest.get("rgb_lost_in_dds", "0") != "0":  # the rmw reports its losses: exact counts
        assert any("DDS lost" in t for t in texts), texts
