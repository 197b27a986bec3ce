"""``dlrmamba export | quantize | bench``: the torch-side deployment tools.

``quantize`` needs only onnxruntime; ``export`` and ``bench`` import torch inside their
handlers, so registering these commands (``dlrmamba --help``) works without torch.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from dlrmamba_core.errors import ConfigError

log = logging.getLogger(__name__)


def parse_hw(text: str) -> tuple[int, int]:
    """``"512x640"`` -> (512, 640): height x width, both positive multiples of 32."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError as exc:
        raise ConfigError(f"input size {text!r}: write it as HxW, e.g. 512x640") from exc
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ConfigError(f"input size {text!r}: height and width must be positive multiples "
                          "of 32, e.g. 512x640")
    return h, w


def _cmd_export(args: argparse.Namespace) -> int:
    from dlrmamba_core.deploy.export import export_onnx

    hw = parse_hw(args.input_size) if args.input_size else None
    res = export_onnx(args.checkpoint, args.out, input_hw=hw, opset=args.opset,
                      dynamo=args.dynamo, parity_samples=args.parity_samples)
    print(f"wrote {res.onnx_path} ({res.onnx_bytes / 1e6:.2f} MB, opset {res.opset}, "
          f"{res.exporter} exporter, input {res.info.input_hw[0]}x{res.info.input_hw[1]}, "
          f"{res.info.num_classes} classes) and {res.card_path}")
    if res.parity is not None:
        p = res.parity
        print(f"parity vs torch on {p.samples} synthetic frames: max abs diff {p.max_abs_diff:.2e}"
              f" (boxes {p.max_abs_diff_boxes:.2e} px, scores {p.max_abs_diff_scores:.2e}); "
              f"detections per frame {p.detections}, identical after NMS: {p.ok}")
    return 0


def _open_split(root: str, fmt: str, split: str) -> Any:
    from dlrmamba_core.data.readers import open_dataset

    return open_dataset(fmt, root, split=split)


def _cmd_quantize(args: argparse.Namespace) -> int:
    from dlrmamba_core.deploy.quantize import quantize_model

    calib = _open_split(args.calib, args.calib_format, args.calib_split)
    samples = (calib[i] for i in range(min(len(calib), args.num_calib)))
    res = quantize_model(args.model, args.out, samples, num_calibration=args.num_calib,
                         method=args.method, per_channel=not args.per_tensor)
    print(f"wrote {res.onnx_path} ({res.int8_bytes / 1e6:.2f} MB, fp32 "
          f"{res.fp32_bytes / 1e6:.2f} MB), calibrated on {res.calibration_pairs} pairs of "
          f"{args.calib} [{args.calib_split}]")
    if args.eval_split:
        from dlrmamba_core.deploy.quantize import compare_int8

        rep = compare_int8(args.model, res.onnx_path, _open_split(
            args.calib, args.calib_format, args.eval_split), limit=args.eval_limit)
        print(f"mAP50 on {args.calib} [{args.eval_split}] ({rep['images']} images): fp32 "
              f"{rep['fp32_mAP50']:.2f}, int8 {rep['int8_mAP50']:.2f} "
              f"(change {rep['mAP50_change']:+.2f})")
        if args.max_drop is not None and -rep["mAP50_change"] > args.max_drop:
            res.onnx_path.unlink(missing_ok=True)
            if res.card_path is not None:
                res.card_path.unlink(missing_ok=True)
            print(f"mAP50 drop {-rep['mAP50_change']:.2f} > --max-drop {args.max_drop}: "
                  "removed the INT8 model (ship the fp32 one)")
            return 1
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from dlrmamba_core.deploy.bench import run_from_args

    return run_from_args(args)


def register(subparsers: Any) -> None:
    """Add ``export``, ``quantize`` and ``bench`` to the ``dlrmamba`` CLI."""
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX (+ model card)",
                              description="Export a .pt checkpoint to ONNX with metadata, "
                              "onnx.checker and a parity check against torch.")
    p.add_argument("checkpoint", help=".pt checkpoint (best.pt of `dlrmamba train` / `distill`)")
    p.add_argument("--out", required=True, help="destination .onnx (card: same stem .json)")
    p.add_argument("--input-size", default=None, metavar="HxW",
                   help="fixed input size, e.g. 512x640 (default: the checkpoint's)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--dynamo", action="store_true",
                   help="use the dynamo exporter (default: TorchScript, faster ORT graph here)")
    p.add_argument("--parity-samples", type=int, default=2,
                   help="synthetic frames for the torch/ORT parity check (0: skip)")
    p.set_defaults(func=_cmd_export)

    p = subparsers.add_parser("quantize", help="INT8 static quantization (QDQ) of an ONNX model")
    p.add_argument("model", help="fp32 .onnx written by `dlrmamba export`")
    p.add_argument("--calib", required=True, help="dataset root with calibration images")
    p.add_argument("--calib-format", default="synth", help="dataset reader (default: synth)")
    p.add_argument("--calib-split", default="val", help="split used for calibration")
    p.add_argument("--num-calib", type=int, default=32, help="calibration pairs")
    p.add_argument("--method", choices=("minmax", "percentile", "entropy"), default="minmax")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales")
    p.add_argument("--out", required=True, help="destination .onnx")
    p.add_argument("--eval-split", default=None,
                   help="also compare fp32 vs int8 mAP50 on this split of --calib")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate only N images")
    p.add_argument("--max-drop", type=float, default=None,
                   help="remove the INT8 model (exit 1) if mAP50 drops by more than this")
    p.set_defaults(func=_cmd_quantize)

    from dlrmamba_core.deploy.bench import add_arguments

    p = subparsers.add_parser("bench", help="latency / FPS / memory of models x backends x "
                              "threads, writes docs/benchmarks.md")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)
