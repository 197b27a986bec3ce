"""Where the memory goes after an input burst (issue 21 item 9; a measurement, not a test).

    python -m dlrmamba_ros.bench_burst --model models/dlrmamba_student_p5.onnx

One process over real rclpy (loopback): a peer publishes SYNTHETIC 640x512 rgb8 + mono16
pairs at --rate Hz (default 200) for --seconds s to an active DetectorNode, then stays idle.
Prints RSS (MiB) and Python allocated blocks before any frame, after a 5 Hz warm-up, at
the end of the burst, 3 s after it, after
``gc.collect()`` and after glibc's ``malloc_trim(0)``: what ``malloc_trim`` returns was held
by the C allocator (freed image buffers kept in its arenas), not by live objects.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import threading
import time

import numpy as np

from dlrmamba_core.sysinfo import cpu_model as cpu_name
from dlrmamba_ros.bench_node import _rss_mb
from dlrmamba_ros.detector_node import DetectorNode


def _sample(label: str) -> tuple[str, float, int]:
    return label, _rss_mb(), sys.getallocatedblocks()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/dlrmamba_student_p5.onnx")
    ap.add_argument("--rate", type=float, default=200.0, help="burst input rate (Hz)")
    ap.add_argument("--seconds", type=float, default=5.0, help="burst length (s)")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    rclpy.init()
    node = DetectorNode(namespace=f"/burst{os.getpid()}", parameter_overrides=[
        Parameter("model", value=args.model), Parameter("threads", value=2)])
    peer = rclpy.create_node("burst_camera", namespace=f"/burst{os.getpid()}")
    pubs = [peer.create_publisher(Image, t, qos_profile_sensor_data)
            for t in ("rgb/image", "thermal/image")]
    ex = MultiThreadedExecutor(num_threads=3)
    ex.add_node(node)
    ex.add_node(peer)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    rows = []
    try:
        node.trigger_configure()
        node.trigger_activate()
        while min(p.get_subscription_count() for p in pubs) < 1:
            time.sleep(0.05)
        rgb = np.random.default_rng(0).integers(0, 255, (512, 640, 3), np.uint8)
        thermal = np.full((512, 640), 28000, np.uint16)

        def msg(img: np.ndarray, enc: str, k: int) -> Image:
            m = Image(height=img.shape[0], width=img.shape[1], encoding=enc,
                      step=img.strides[0])
            m.header.stamp.sec, m.header.stamp.nanosec = 1_700_000_000 + k // 1000, \
                (k % 1000) * 1_000_000
            m.data = img.tobytes()  # a fresh buffer per message, as a driver produces
            return m

        rows.append(_sample("model loaded, active, no frame yet"))
        for k in range(20):  # warm-up at 5 Hz: first inferences size onnxruntime's memory
            pubs[1].publish(msg(thermal, "mono16", k))
            pubs[0].publish(msg(rgb, "rgb8", k))
            time.sleep(0.2)
        time.sleep(2.0)
        rows.append(_sample(f"after 20 pairs at 5 Hz ({node.counters.processed} detected)"))
        n = int(args.rate * args.seconds)
        t0 = time.monotonic()
        for k in range(20, 20 + n):
            pubs[1].publish(msg(thermal, "mono16", k))
            pubs[0].publish(msg(rgb, "rgb8", k))
            time.sleep(max(0.0, t0 + (k + 1) / args.rate - time.monotonic()))
        rows.append(_sample(f"end of burst ({n} pairs, {n / (time.monotonic() - t0):.0f} Hz)"))
        time.sleep(3.0)
        rows.append(_sample("3 s idle after the burst"))
        gc.collect()
        rows.append(_sample("after gc.collect()"))
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        rows.append(_sample("after malloc_trim(0)"))
        processed = node.counters.processed
    finally:
        ex.shutdown(timeout_sec=10)
        node.close()
        node.destroy_node()
        peer.destroy_node()
        rclpy.try_shutdown()
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; model {args.model}; "
          f"node processed {processed} pairs")
    print("| moment | RSS (MiB) | Python allocated blocks |")
    print("|---|---|---|")
    for label, rss, blocks in rows:
        print(f"| {label} | {rss:.1f} | {blocks} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
