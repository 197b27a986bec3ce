"""``dlrmamba synth-bag | bag-eval | bag-play | make-bag | bag-export`` (heavy imports inside
the handlers)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
from typing import Any

from dlrmamba_core.errors import BagError, ConfigError


def register(subparsers: Any) -> None:
    """Add the bag subcommands to the top-level ``dlrmamba`` parser."""
    p = subparsers.add_parser(
        "synth-bag", help="write a synthetic RGB + thermal rosbag2 with ground truth",
        description="Write a rosbag2 of a synthetic RGB + thermal sequence (moving objects, "
        "RGB and thermal at their own rates and stamps) with a ground-truth Detection2DArray "
        "topic. The bag is marked synthetic in its metadata.")
    p.add_argument("out", type=Path, help="bag directory to create")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of data (default 10)")
    p.add_argument("--storage", default="sqlite3", help="sqlite3 (default) or mcap")
    p.add_argument("--compressed", action="store_true",
                   help="also write CompressedImage topics (JPEG RGB, 16-bit PNG thermal)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--rgb-hz", type=float, default=30.0, help="RGB frame rate (default 30)")
    p.add_argument("--thermal-hz", type=float, default=9.0, help="thermal rate (default 9)")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None,
                   help="RGB image size in pixels (default: the generator's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    p.set_defaults(func=_synth_bag)

    p = subparsers.add_parser(
        "bag-eval", help="run the detector over a rosbag offline (as the node would)",
        description="Pair RGB and thermal frames of a rosbag2 (sqlite3 or mcap) with the "
        "node's pairing, run the detector, and write a detections bag, metrics.json, an "
        "annotated video and report.md into --out.")
    p.add_argument("bag", type=Path, help="rosbag2 directory or .db3/.mcap file")
    p.add_argument("--rgb-topic", default="/camera/rgb/image_raw",
                   help="RGB Image/CompressedImage topic (default /camera/rgb/image_raw)")
    p.add_argument("--thermal-topic", default="/camera/thermal/image_raw",
                   help="thermal topic (default /camera/thermal/image_raw)")
    p.add_argument("--gt", default=None, metavar="TOPIC_OR_FILE",
                   help="ground truth: a Detection2DArray topic of the bag, a COCO .json or a "
                   "YOLO label dir keyed by RGB stamp (ns)")
    p.add_argument("--model", default=None,
                   help="model .onnx or model card .json (default: models/default.json)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--slop", type=float, default=0.05, help="pairing slop, s (default 0.05)")
    p.add_argument("--queue-size", type=int, default=10, help="pairing queue (default 10)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default 2)")
    p.add_argument("--conf", type=float, default=None, help="score threshold (model default)")
    p.add_argument("--homography", default=None,
                   help="thermal->RGB homography: JSON 3x3 list or a .json/.npy file "
                   "(default: from the bag's metadata, else none)")
    p.add_argument("--no-video", action="store_true", help="skip the annotated video")
    p.add_argument("--instance-masks", action="store_true",
                   help="a segment model: also write its instance masks to the detections "
                   "bag (topic /dlrmamba/instance_masks, index images as the node's "
                   "~/instance_masks)")
    p.add_argument("--out-storage", default="mcap", choices=("mcap", "sqlite3"),
                   help="storage of the detections bag (default mcap: opens in Foxglove)")
    p.add_argument("--max-pairs", type=int, default=None, help="stop after N pairs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_bag_eval)

    p = subparsers.add_parser(
        "bag-play", help="publish a rosbag over ROS 2 (rclpy) with its timing, /clock",
        description="Publish a rosbag2 over rclpy with its original timing (or --rate times "
        "faster), optionally /clock, and optionally record a Detection2DArray topic.")
    from dlrmamba_core.bag import _player_args

    _player_args.add_arguments(p)
    p.set_defaults(func=_bag_play)

    from dlrmamba_core.bag import from_images

    from_images.register(subparsers)  # make-bag: a bag from RGB + thermal image folders
    from dlrmamba_core.bag import export

    export.register(subparsers)  # bag-export: a bag's pairs as RGB + thermal PNG folders


def _synth_bag(args: argparse.Namespace) -> int:
    from dlrmamba_core.bag.synth import write_synthetic_bag

    if args.duration <= 0:
        raise ConfigError(f"--duration must be > 0 s, got {args.duration}")
    s = write_synthetic_bag(args.out, duration_s=args.duration, storage=args.storage,
                            compressed=args.compressed, seed=args.seed, rgb_hz=args.rgb_hz,
                            thermal_hz=args.thermal_hz,
                            size=tuple(args.size) if args.size else None,
                            overwrite=args.overwrite)
    print(f"wrote synthetic bag {s.path} ({s.storage}, {s.duration_s:.2f} s)")
    for topic, n in s.counts.items():
        print(f"  {topic}: {n} msgs")
    return 0


def _parse_homography(text: str | None) -> Any:
    if text is None:
        return None
    import numpy as np

    p = Path(text)
    try:
        if p.suffix == ".npy" and p.is_file():
            h = np.load(p, allow_pickle=False)
        elif p.is_file():
            h = np.asarray(json.loads(p.read_text()), np.float64)
        else:
            h = np.asarray(json.loads(text), np.float64)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--homography {text!r}: not a 3x3 JSON list or .npy/.json file "
                          f"({exc})") from exc
    if h.shape != (3, 3):
        raise ConfigError(f"--homography must be 3x3, got shape {h.shape}")
    return h


def _bag_eval(args: argparse.Namespace) -> int:
    from dlrmamba_core.bag.evaluate import EvalInterrupted, EvalOptions, evaluate_bag

    opts = EvalOptions(
        rgb_topic=args.rgb_topic, thermal_topic=args.thermal_topic, gt=args.gt,
        model=args.model, slop_s=args.slop, queue_size=args.queue_size, threads=args.threads,
        conf_threshold=args.conf, homography=_parse_homography(args.homography),
        video=not args.no_video, out_storage=args.out_storage, overwrite=args.overwrite,
        progress=True, max_pairs=args.max_pairs, instance_masks=args.instance_masks)
    try:
        res = evaluate_bag(args.bag, args.out, opts)
    except EvalInterrupted as exc:
        print_summary(exc.result.metrics, exc.result.out)
        print(f"dlrmamba bag-eval: interrupted while {exc.result.metrics['interrupted_during']}"
              f"; the partial output in {exc.result.out} is closed and marked \"partial\": "
              "true (run again without Ctrl-C for the whole bag)", file=sys.stderr)
        return 130
    print_summary(res.metrics, res.out)
    return 0


def print_summary(metrics: dict[str, Any], out: Path) -> None:
    """Print the headline numbers of a bag evaluation and where its files are."""
    pr, lat = metrics["pairing"], metrics["latency_ms"]["decode_and_detect"]
    print(f"pairs: {pr['pairs']} (rgb {pr['rgb']['received']} received, "
          f"{pr['rgb']['dropped']} dropped; thermal {pr['thermal']['received']} received, "
          f"{pr['thermal']['dropped']} dropped)")
    print(f"latency per pair: p50 {lat['p50']} ms, p95 {lat['p95']} ms "
          f"({metrics['latency_ms']['cpu']}, {metrics['latency_ms']['threads']} threads)")
    coco = metrics.get("coco")
    if coco:
        print(f"COCO: mAP50 {coco['mAP50']:.1f}  mAP50:95 {coco['mAP50_95']:.1f} "
              f"({coco['frames_evaluated']} frames, {coco['num_gt']} objects)")
    for code, message in (metrics.get("input_warnings") or {}).items():
        print(f"input warning ({code}): {message}")
    outputs = metrics["outputs"]
    print(f"outputs in {out}/: metrics.json, {outputs['report']}, "
          f"{outputs['detections_bag']}/ (Detection2DArray + LabelInfo)"
          + (f", {outputs['video']}" if outputs.get("video") else ""))


def _bag_play(args: argparse.Namespace) -> int:
    try:
        from dlrmamba_ros import bag_player
    except ImportError as exc:
        raise BagError(f"bag-play needs rclpy and the dlrmamba_ros package ({exc}); run "
                       "`make install` or source a ROS 2 installation") from exc
    return bag_player.run(args)
