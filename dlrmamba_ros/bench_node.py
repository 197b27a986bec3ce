"""Benchmark of the detector node itself (not a test): overhead, bounded latency, flat memory.

    python -m dlrmamba_ros.bench_node --build-nano --duration 120
    python -m dlrmamba_ros.bench_node --model models/dlrmamba_student_p5.onnx --duration 600

Everything runs in one process over real rclpy (loopback DDS): a peer node publishes
SYNTHETIC 640x512 RGB (rgb8) + thermal (mono16) frames, the DetectorNode (lifecycle,
configured and activated) detects, the peer receives the Detection2DArray messages.

Phase 1 (overhead): one pair at a time, spaced so that the worker is idle when it arrives.
    node overhead = (inputs complete -> detections published) - Detector.detect wall time,
    i.e. decode + hand-off to the worker + vision_msgs conversion + publish;
    end-to-end = publisher's publish() -> detections received by the peer (includes DDS
    transport of the two images) minus Detector.detect.
Phase 2 (load): both inputs at --rate Hz (default 30) for --duration s while inference is
    slower than that; reports latency per third of the run (bounded = no growth), frames
    skipped because a newer pair arrived, and the process RSS over time (flat = no leak).

The table is printed and written (atomically) to --out (default docs/node_benchmark.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import datetime as dt
import os
from pathlib import Path
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

from dlrmamba_core.engine.fileio import write_text
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.sysinfo import cpu_model as _cpu_model


def _rss_mb(key: str = "VmRSS") -> float:
    """Resident set size of this process (MiB), from /proc/self/status; ``key="VmHWM"``
    gives the peak resident set size so far."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if values else float("nan")


def _frames(n: int, hw: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """n SYNTHETIC pairs at hw=(H, W): the data package's generator when present."""
    import cv2

    out = []
    synth: Any = None
    try:
        from dlrmamba_core.data import synthetic as synth
    except ImportError:
        synth = None
    rng = np.random.default_rng(0)
    for k in range(n):
        if synth is not None:
            s = synth.generate_frame(synth.SynthConfig(), k)
            rgb = cv2.resize(s.rgb, (hw[1], hw[0]))
            th = cv2.resize(s.thermal, (hw[1], hw[0]))
            if th.dtype != np.uint16:
                th = th.astype(np.uint16) * 257  # 8 -> 16 bit full scale
        else:
            rgb = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
            th = rng.integers(27000, 32000, hw, dtype=np.uint16)
        out.append((rgb, th))
    return out


def build_nano(out_dir: Path, input_hw: tuple[int, int]) -> str:
    """Export the UNTRAINED nano variant (seed 0) for timing only (needs torch)."""
    import torch

    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model

    torch.manual_seed(0)
    model = build_model("nano", num_classes=3).eval()
    ckpt = save_model(out_dir / "nano.pt", model, ["person", "car", "boat"], input_hw)
    return str(export_onnx(ckpt, out_dir / "nano.onnx", parity_samples=0).onnx_path)


@dataclass
class Sent:
    publish_ns: int


class Bench:
    """The node under test plus the peer (publishers, detection subscriber)."""

    def __init__(self, model: str, threads: int) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.lifecycle import TransitionCallbackReturn
        from rclpy.parameter import Parameter
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        from dlrmamba_ros.detector_node import DetectorNode

        ns = f"/bench{os.getpid()}"
        self.node = DetectorNode(namespace=ns, parameter_overrides=[
            Parameter("model", value=model), Parameter("threads", value=threads),
            Parameter("thermal_timeout_s", value=5.0)])
        self.peer = rclpy.create_node("bench_camera", namespace=ns)
        self.pub_rgb = self.peer.create_publisher(Image, "rgb/image", qos_profile_sensor_data)
        self.pub_th = self.peer.create_publisher(Image, "thermal/image",
                                                 qos_profile_sensor_data)
        self.sent: dict[int, int] = {}
        self.track_e2e = True
        self.e2e: list[tuple[int, float]] = []  # (stamp ns, publish -> receive ms)
        self._lock = threading.Lock()
        self.peer.create_subscription(Detection2DArray, "detections", self._on_dets, 10)
        self.executor = MultiThreadedExecutor(num_threads=3)
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        ok = TransitionCallbackReturn.SUCCESS
        if self.node.trigger_configure() != ok or self.node.trigger_activate() != ok:
            raise ConfigError(f"the detector node did not start with model {model}")
        self.rss_loaded_mb = _rss_mb()  # model loaded, node active, no frame yet
        deadline = time.monotonic() + 10
        while (self.pub_rgb.get_subscription_count() < 1
               or self.pub_th.get_subscription_count() < 1):
            if time.monotonic() > deadline:
                raise ConfigError("the node's subscriptions never matched the bench publishers")
            time.sleep(0.01)

    def _on_dets(self, msg: Any) -> None:
        now = time.monotonic_ns()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if not self.track_e2e:
            return
        with self._lock:
            t = self.sent.pop(stamp, None)
            if t is not None:
                self.e2e.append((stamp, (now - t) / 1e6))

    def publish(self, msgs: tuple[Any, Any], stamp_ns: int) -> None:
        rgb, th = msgs
        sec, nsec = divmod(stamp_ns, 1_000_000_000)
        for m in (rgb, th):
            m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
        self.pub_th.publish(th)
        if self.track_e2e:
            with self._lock:
                self.sent[stamp_ns] = time.monotonic_ns()
        self.pub_rgb.publish(rgb)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5)
        self.thread.join(timeout=10)
        self.node.close()
        self.node.destroy_node()
        self.peer.destroy_node()


def _messages(frames: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[Any, Any]]:
    from std_msgs.msg import Header

    from dlrmamba_ros.conversions import numpy_to_image_msg

    return [(numpy_to_image_msg(rgb, "rgb8", Header(frame_id="bench_rgb")),
             numpy_to_image_msg(th, "mono16", Header(frame_id="bench_thermal")))
            for rgb, th in frames]


def run(args: argparse.Namespace) -> str:
    """Run both phases; return the markdown report."""
    import rclpy

    hw = (args.height, args.width)
    tmp = tempfile.TemporaryDirectory(prefix="bench_node_")
    model = args.model
    model_note = model
    if args.build_nano:
        model = build_nano(Path(tmp.name), (args.model_height, args.model_width))
        model_note = (f"nano variant, UNTRAINED (seed 0), exported at "
                      f"{args.model_height}x{args.model_width} (timing only)")
    if not model:
        raise ConfigError("pass --model FILE.onnx or --build-nano")
    msgs = _messages(_frames(8, hw))
    from dlrmamba_ros.detector_node import GIL_SWITCH_INTERVAL_S, tune_process

    if not args.default_switch_interval:
        tune_process()  # as the detector_node executable does
    switch_note = (f"GIL switch interval {sys.getswitchinterval() * 1e3:g} ms"
                   + (" (as detector_node sets it)" if not args.default_switch_interval
                      else f" (Python default; detector_node uses "
                           f"{GIL_SWITCH_INTERVAL_S * 1e3:g} ms)"))
    load0 = os.getloadavg()[0]
    rclpy.init()
    bench = Bench(model, args.threads)
    node = bench.node
    lines = []
    try:
        # ---- phase 1: isolated frames
        for k in range(5):  # warm-up (ORT allocations, first-call costs)
            bench.publish(msgs[k % len(msgs)], 1_000_000_000 * 10**9 + k * 10**8)
            _wait(lambda k=k: node.counters.processed >= k + 1, 30)
        n0 = len(node.timings)
        e0 = len(bench.e2e)
        for k in range(args.frames):
            done = node.counters.processed
            bench.publish(msgs[k % len(msgs)], 1_100_000_000 * 10**9 + k * 10**8)
            _wait(lambda d=done: node.counters.processed > d, 30)
            time.sleep(0.02)  # let the peer receive before the next frame
        t1 = list(node.timings)[n0:]
        overhead = [t.latency_ms - t.detect_ms for t in t1]
        parts = {
            "decode (Image -> numpy)": [t.decode_ms for t in t1],
            "convert + publish detections": [t.publish_ms for t in t1],
            "hand-off to the worker (wake-up)": [t.latency_ms - t.detect_ms - t.decode_ms
                                                 - t.publish_ms for t in t1],
            "CPU time of decode + convert + publish (worker thread, not wall)":
                [t.node_cpu_ms for t in t1],
        }
        detect = [t.detect_ms for t in t1]
        infer = [t.inference_ms for t in t1]
        detect_by_stamp = {t.stamp_ns: t.detect_ms for t in t1}
        with bench._lock:
            e2e_over = [ms - detect_by_stamp[s] for s, ms in bench.e2e[e0:]
                        if s in detect_by_stamp]
        # ---- phase 2: sustained load
        period = 1.0 / args.rate
        rss: list[tuple[float, float, int]] = []
        bench.track_e2e = False  # keep the bench's own memory flat during the long run
        node.timings.clear()  # drained below into two float lists (bounded node history)
        lat: list[float] = []
        load_detect: list[float] = []

        def drain() -> None:
            while node.timings:
                rec = node.timings.popleft()
                lat.append(rec.latency_ms)
                load_detect.append(rec.detect_ms)

        processed0, skipped0 = node.counters.processed, node.counters.skipped_stale
        start = time.monotonic()
        next_t, k, next_rss = start, 0, start
        while time.monotonic() - start < args.duration:
            now = time.monotonic()
            if now >= next_rss:
                rss.append((now - start, _rss_mb(), sys.getallocatedblocks()))
                next_rss += args.rss_every
            drain()
            bench.publish(msgs[k % len(msgs)], 1_200_000_000 * 10**9 + k * int(period * 1e9))
            k += 1
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - start
        time.sleep(1.0)
        drain()
        rss.append((time.monotonic() - start, _rss_mb(), sys.getallocatedblocks()))
        processed = node.counters.processed - processed0
        skipped = node.counters.skipped_stale - skipped0
        thirds = [lat[i * len(lat) // 3:(i + 1) * len(lat) // 3] for i in range(3)]
        after = [(s, m) for s, m, _ in rss if s >= min(10.0, args.duration / 3)]
        slope = (np.polyfit([s for s, _ in after], [m for _, m in after], 1)[0] * 60
                 if len(after) >= 2 else float("nan"))
        model_note += f". {switch_note}"
        lines = _report(args, model_note, hw, overhead, parts, detect, infer, e2e_over, lat,
                        thirds, k, elapsed, processed, skipped, rss, slope,
                        load_detect,
                        float(np.mean([t.n_detections for t in t1])) if t1 else float("nan"),
                        (load0, os.getloadavg()[0]))
        lines += [
            "",
            "## Memory",
            "",
            f"RSS with the model loaded and the node active, before any frame: "
            f"{bench.rss_loaded_mb:.1f} MiB; peak RSS (VmHWM) over the whole run: "
            f"{_rss_mb('VmHWM'):.1f} MiB (one process: publisher + node + subscriber, "
            f"{hw[1]}x{hw[0]} frames, CPU above).",
        ]
    finally:
        bench.close()
        rclpy.try_shutdown()
        tmp.cleanup()
    return "\n".join(lines) + "\n"


def _wait(pred: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise ConfigError(f"the node produced no detections within {timeout} s")
        time.sleep(0.002)


def _report(args: argparse.Namespace, model_note: str, hw: tuple[int, int],
            overhead: list[float], parts: dict[str, list[float]], detect: list[float],
            infer: list[float], e2e_over: list[float], lat: list[float],
            thirds: list[list[float]], sent: int, elapsed: float, processed: int,
            skipped: int, rss: list[tuple[float, float, int]], slope: float,
            load_detect: list[float], n_dets: float,
            load: tuple[float, float]) -> list[str]:
    f = "{:.2f}".format
    cmd = "python -m dlrmamba_ros.bench_node " + " ".join(sys.argv[1:])
    out = [
        "# Detector node benchmark",
        "",
        f"Generated by `{cmd}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M UTC}.",
        f"CPU: {_cpu_model()} ({os.cpu_count()} cores visible, shared with other work); "
        f"onnxruntime threads: {args.threads}. Frames: SYNTHETIC {hw[1]}x{hw[0]} rgb8 + "
        f"{hw[1]}x{hw[0]} mono16, raw sensor_msgs/Image over loopback DDS "
        "(publisher, node and subscriber in one process).",
        f"Model: {model_note}.",
        f"Machine load average (1 min) at start / end: {load[0]:.1f} / {load[1]:.1f} "
        "(other jobs share these cores: tails include their interference).",
        "",
        f"## Phase 1: node overhead, {len(overhead)} isolated pairs",
        "",
        f"Detections per frame: {n_dets:.1f} on average (the vision_msgs conversion costs "
        "about 10 us per detection).",
        "",
        "| quantity (ms) | p50 | p95 | max |",
        "|---|---|---|---|",
        f"| node overhead (inputs complete -> published, minus detect) | {f(_pct(overhead, 50))} "
        f"| {f(_pct(overhead, 95))} | {f(max(overhead, default=float('nan')))} |",
        *[f"| - {name} | {f(_pct(v, 50))} | {f(_pct(v, 95))} | "
          f"{f(max(v, default=float('nan')))} |" for name, v in parts.items()],
        f"| publish() -> detections received, minus detect | {f(_pct(e2e_over, 50))} | "
        f"{f(_pct(e2e_over, 95))} | {f(max(e2e_over, default=float('nan')))} |",
        f"| Detector.detect (pre + network + NMS) | {f(_pct(detect, 50))} | "
        f"{f(_pct(detect, 95))} | {f(max(detect, default=float('nan')))} |",
        f"| network forward alone | {f(_pct(infer, 50))} | {f(_pct(infer, 95))} | "
        f"{f(max(infer, default=float('nan')))} |",
        "",
        f"## Phase 2: both inputs at {args.rate:g} Hz for {elapsed:.0f} s",
        "",
        f"Sent {sent} pairs ({sent / elapsed:.1f} Hz achieved); the node processed {processed} "
        f"({processed / elapsed:.1f} Hz) and skipped {skipped} pairs superseded by newer ones "
        "(latest-pair policy).",
        "",
        "| part of the run | frames | latency p50 (ms) | p95 | max |",
        "|---|---|---|---|---|",
    ]
    for name, lt in zip(("first third", "second third", "last third"), thirds, strict=True):
        out.append(f"| {name} | {len(lt)} | {f(_pct(lt, 50))} | {f(_pct(lt, 95))} | "
                   f"{f(max(lt, default=float('nan')))} |")
    out += [
        f"| whole run | {len(lat)} | {f(_pct(lat, 50))} | {f(_pct(lat, 95))} | "
        f"{f(max(lat, default=float('nan')))} |",
        "",
        "Latency here = inputs complete -> detections published; under load it includes "
        "waiting for the inference in progress (at most one detect).",
        "",
        f"Bound check: max latency / max detect time under load = "
        f"{max(lat, default=float('nan')) / max(load_detect, default=float('nan')):.2f} "
        "(the latest-pair worker bounds it by ~2: one detect in progress + its own); "
        f"detect p50 under load {f(_pct(load_detect, 50))} ms.",
        "",
        "| t (s) | RSS (MiB) | Python allocated blocks |",
        "|---|---|---|",
        *[f"| {s:.0f} | {m:.1f} | {b} |" for s, m, b in rss],
        "",
        f"RSS slope after warm-up: {slope:+.2f} MiB/min (whole process: publisher + node). "
        "Python allocated blocks (sys.getallocatedblocks) separate Python objects from "
        "native memory (onnxruntime, DDS, allocator).",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlrmamba_ros.bench_node",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="", help="ONNX model to run")
    parser.add_argument("--build-nano", action="store_true",
                        help="export the untrained nano variant (needs torch) and use it")
    parser.add_argument("--model-height", type=int, default=512)
    parser.add_argument("--model-width", type=int, default=640)
    parser.add_argument("--height", type=int, default=512, help="camera frame height (px)")
    parser.add_argument("--width", type=int, default=640, help="camera frame width (px)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--frames", type=int, default=100, help="phase-1 isolated pairs")
    parser.add_argument("--rate", type=float, default=30.0, help="phase-2 input rate (Hz)")
    parser.add_argument("--duration", type=float, default=120.0, help="phase-2 length (s)")
    parser.add_argument("--rss-every", type=float, default=10.0, help="RSS sample period (s)")
    parser.add_argument("--default-switch-interval", action="store_true",
                        help="keep Python's 5 ms GIL switch interval (for comparison)")
    parser.add_argument("--out", default="docs/node_benchmark.md", help="markdown report")
    args = parser.parse_args(argv)
    try:
        report = run(args)
    except ConfigError as exc:
        print(f"bench_node: error: {exc}", file=sys.stderr)
        return 2
    print(report)
    if args.out:
        write_text(Path(args.out), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
