"""``dlrmamba detect``: one RGB + thermal image pair through the torch-free Detector.

The torch-side commands (``export``, ``quantize``, ``bench``) are in
:mod:`dlrmamba_core.deploy.cli`.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dlrmamba_core.errors import InputError

log = logging.getLogger(__name__)


def load_homography(path: str | None) -> np.ndarray | None:
    """Read a (3, 3) thermal -> RGB homography from ``.npy``, ``.json`` or text (9 numbers).

    Raises:
        InputError: missing file or not 3x3 numbers.
    """
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--homography {p}: no such file (give a .npy, .json or .txt 3x3)")
    try:
        if p.suffix == ".npy":
            h = np.load(p, allow_pickle=False)
        elif p.suffix == ".json":
            obj = json.loads(p.read_text(encoding="utf-8"))
            h = np.asarray(obj.get("homography", obj) if isinstance(obj, dict) else obj,
                           np.float64)
        else:
            h = np.loadtxt(p, dtype=np.float64)
    except (ValueError, OSError) as exc:
        raise InputError(f"--homography {p}: cannot read 3x3 numbers ({exc})") from exc
    h = np.asarray(h, np.float64)
    if h.size != 9:
        raise InputError(f"--homography {p}: has {h.size} numbers, expected 9 (a 3x3 matrix)")
    return h.reshape(3, 3)


def _cmd_detect(args: argparse.Namespace) -> int:
    from dlrmamba_core.data.readers.base import read_rgb, read_thermal_raw, thermal_to_gray
    from dlrmamba_core.runtime.detector import Detector
    from dlrmamba_core.runtime.input_checks import THERMAL_COLOUR, check_pair

    det = Detector(args.model, backend=args.backend, threads=args.threads,
                   conf_threshold=args.conf, iou_threshold=args.iou,
                   max_detections=args.max_det)
    rgb = read_rgb(Path(args.rgb))
    raw_thermal = read_thermal_raw(Path(args.thermal))
    hm = load_homography(args.homography)
    # colour is only visible before the file is converted to grey; the rest detect() checks
    det.record_input_warnings([w for w in check_pair(rgb.shape[:2], raw_thermal, hm)
                               if w.code == THERMAL_COLOUR])
    result = det.detect(rgb, thermal_to_gray(raw_thermal), homography=hm)
    if det.input_warnings:  # each was logged once as a WARNING line with what to do
        print(f"input warnings: {', '.join(det.input_warnings)} (see the WARNING lines)")
    rows = result.to_list()
    print(f"{len(rows)} detections in {args.rgb} ({rgb.shape[1]}x{rgb.shape[0]} px); "
          f"network {result.inference_ms:.1f} ms, total {result.timings_ms['total']:.1f} ms")
    for r in rows:
        x1, y1, x2, y2 = r["box_xyxy"]
        print(f"  {r['class_name']:<14} {r['score']:.3f}  "
              f"[{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]")
    if args.json:
        from dlrmamba_core.engine.fileio import write_json

        if result.masks is not None:  # a segment model: each detection's mask as COCO RLE
            from dlrmamba_core.data.masks import rle_encode

            for r, m in zip(rows, result.masks, strict=True):
                r["mask_rle"] = rle_encode(m)
        write_json(args.json, {"rgb": str(args.rgb), "thermal": str(args.thermal),
                               "model": str(args.model), "detections": rows,
                               "timings_ms": result.timings_ms,
                               "input_warnings": det.input_warning_messages})
        print(f"wrote {args.json}")
    if args.draw:
        from dlrmamba_core.data.viz import draw_boxes, draw_masks, write_image_atomic

        names = [f"{result.class_names[int(c)]} {s:.2f}"
                 for c, s in zip(result.class_ids, result.scores, strict=True)]
        img = rgb
        if result.masks is not None:  # a segment model: masks under the boxes, same colours
            img = draw_masks(rgb, result.masks, np.arange(len(names)))
        img = draw_boxes(img, result.boxes, np.arange(len(names)), names)
        write_image_atomic(args.draw, img)
        print(f"wrote {args.draw}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``detect`` to the ``dlrmamba`` CLI."""
    p = subparsers.add_parser("detect", help="detect objects in one RGB + thermal image pair")
    p.add_argument("model", help=".onnx model (or .pt with --backend torch)")
    p.add_argument("rgb", help="RGB image file")
    p.add_argument("thermal", help="thermal image file (8/16-bit PNG keeps raw counts)")
    p.add_argument("--homography", default=None,
                   help="thermal->RGB 3x3 homography (.npy, .json or .txt); default: resize")
    p.add_argument("--backend", choices=("onnxruntime", "torch"), default="onnxruntime")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--conf", type=float, default=0.25, help="score threshold")
    p.add_argument("--iou", type=float, default=0.5, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=100)
    p.add_argument("--draw", default=None, metavar="OUT.png",
                   help="write the RGB with boxes (and a segment model's instance masks)")
    p.add_argument("--json", default=None, metavar="OUT.json",
                   help="write detections as JSON (a segment model's: with mask_rle, COCO RLE "
                        "in RGB pixels)")
    p.set_defaults(func=_cmd_detect)
