"""Measure large-image delivery with and without config/fastdds_large_images.xml.

    python tools/dds_delivery.py [--model models/dlrmamba_student_p5.onnx]

Publishes 150 SYNTHETIC 1280x1024 rgb8 + 640x512 mono16 pairs at 30 Hz (best effort) from
one process to the detector node in another (through launch/detector.launch.py when
launch_ros is importable) and prints the pairs the node's synchronizer made, per setting.
Same code as test/ros/test_large_images.py.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import platform
import sys

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test" / "ros"))


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the platform's machine name."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "models" / "dlrmamba_student_p5.onnx"))
    args = ap.parse_args()
    import rclpy
    from test_large_images import N_PAIRS, RATE_HZ, delivered_pairs

    rclpy.init()
    try:
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
        for with_profile in (False, True):
            pairs, _, _ = delivered_pairs(f"/dds{os.getpid()}_{int(with_profile)}", args.model,
                                       with_profile)
            name = "fastdds_large_images.xml" if with_profile else "stock Fast DDS"
            print(f"{name}: {pairs}/{N_PAIRS} pairs at {RATE_HZ:.0f} Hz "
                  f"({100 * pairs / N_PAIRS:.0f} %)")
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
