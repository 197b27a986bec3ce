"""``dlrmamba data ...``: gen | stats | show | register | sheets | bench.

All but bench need numpy and OpenCV only (no torch).
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
import os
import time
from typing import Any

from dlrmamba_core.errors import ConfigError, DatasetError

__all__ = ["register"]


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"size {text!r}: use WxH, e.g. 640x480") from exc
    return w, h


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its subcommands to the top-level CLI."""
    from dlrmamba_core.data.readers import FORMATS

    p = subparsers.add_parser("data", help="datasets: generate, inspect, register")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    g = sub.add_parser("gen", help="generate the SYNTHETIC RGB-thermal benchmark")
    g.add_argument("--out", required=True, help="output directory (new or empty)")
    g.add_argument("--num", type=int, default=2000, help="number of pairs (default 2000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    g.add_argument("--rgb-size", type=_size, default=None, help="RGB WxH (default 640x480)")
    g.add_argument("--thermal-size", type=_size, default=None,
                   help="thermal WxH (default 320x256)")
    g.add_argument("--splits", default="train=0.8,val=0.1,test=0.1",
                   help="split fractions, e.g. train=0.8,val=0.1,test=0.1")
    g.add_argument("--synth-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="generator setting (SynthConfig field), e.g. night_light=0.0005,0.0015")
    g.add_argument("--png", action="store_true", help="write RGB as PNG instead of JPEG q95")
    g.add_argument("--overwrite", action="store_true",
                   help="allow writing into an existing synthetic dataset directory")
    g.add_argument("--yolo-seg", action="store_true",
                   help="labels/ as YOLO-seg polygon rows (the instance masks' outlines) "
                        "instead of box rows; annotations.json has the masks either way")
    g.set_defaults(func=_gen)

    fmts = sorted(FORMATS)
    s = sub.add_parser("stats", help="pairs, unpaired files, image sizes, boxes per class")
    s.add_argument("--format", required=True, choices=fmts)
    s.add_argument("--root", required=True)
    s.add_argument("--split", default=None)
    s.add_argument("--reader-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. size=1024 (vedai), labels=union (dronevehicle)")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--sizes", type=int, default=20,
                   help="read the first N pairs to report image sizes (0: skip)")
    s.set_defaults(func=_stats)

    sh = sub.add_parser("show", help="contact sheet PNG: RGB | thermal | overlay with boxes "
                                     "and instance masks (where the dataset has them)")
    sh.add_argument("--format", required=True, choices=fmts)
    sh.add_argument("--root", required=True)
    sh.add_argument("--split", default=None)
    sh.add_argument("--reader-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. size=1024 (vedai), labels=union (dronevehicle)")
    sh.add_argument("--out", required=True, help="output PNG")
    sh.add_argument("--num", type=int, default=6, help="pairs to show")
    sh.add_argument("--start", type=int, default=0, help="first pair index")
    sh.add_argument("--width", type=int, default=320, help="panel width, pixels")
    sh.set_defaults(func=_show)

    r = sub.add_parser("register", help="estimate the thermal->RGB homography from pairs")
    r.add_argument("--format", required=True, choices=fmts)
    r.add_argument("--root", required=True)
    r.add_argument("--split", default=None)
    r.add_argument("--reader-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option, e.g. size=1024 (vedai), labels=union (dronevehicle)")
    r.add_argument("--num", type=int, default=5, help="pairs to use")
    r.add_argument("--motion", choices=["homography", "affine"], default="homography")
    r.add_argument("--out", default=None, help="write the homography as JSON here")
    r.set_defaults(func=_register)

    c = sub.add_parser("sheets", help="one contact sheet per SYNTHETIC condition "
                                      "(maritime and aerial rows) -> DIR/data_<condition>.png")
    c.add_argument("--out-dir", default="docs/images")
    c.add_argument("--seed", type=int, default=7, help="frame seeds start here")
    c.add_argument("--per-scene", type=int, default=1, help="rows per scene type")
    c.add_argument("--width", type=int, default=192,
                   help="panel width, pixels (192: each docs/images sheet stays under 400 KB)")
    c.set_defaults(func=_sheets)

    from dlrmamba_core.data import bench_loader

    b = sub.add_parser("bench", help="time generation and pairs/s into the network "
                                     "-> docs/loader_benchmark.md")
    bench_loader.add_arguments(b)
    b.set_defaults(func=lambda args: bench_loader.run(args, "dlrmamba data bench"))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def reader_options(items: list[str]) -> dict[str, Any]:
    """``--reader-opt`` values as keyword arguments of the reader."""
    from dlrmamba_core.data.readers import parse_options

    return parse_options(items)


def _parse_splits(text: str) -> tuple[tuple[str, float], ...]:
    out = []
    for part in text.split(","):
        name, _, frac = part.partition("=")
        try:
            out.append((name.strip(), float(frac)))
        except ValueError as exc:
            raise ConfigError(f"--splits {text!r}: use name=fraction,...") from exc
    return tuple(out)


def _gen(args: argparse.Namespace) -> int:
    from dlrmamba_core.data.synthetic import (
        SynthConfig,
        with_options,
        with_sizes,
        write_frame_dataset,
    )

    cfg = with_options(with_sizes(SynthConfig(), args.rgb_size, args.thermal_size),
                       args.synth_opt)
    t0 = time.perf_counter()
    info = write_frame_dataset(
        args.out, args.num, _parse_splits(args.splits), args.seed, cfg, workers=args.workers,
        rgb_ext=".png" if args.png else ".jpg", overwrite=args.overwrite, progress=True,
        yolo_seg=args.yolo_seg,
    )
    dt = time.perf_counter() - t0
    print(f"wrote {args.num} SYNTHETIC pairs to {args.out} in {dt:.1f} s "
          f"({args.num / dt:.1f} pairs/s, {args.workers} workers); splits {info['splits']}")
    return 0


def dataset_stats(ds: Any, sizes: int = 20) -> dict[str, Any]:
    """Statistics of an opened dataset (what ``data stats --json`` prints)."""
    per_class: Counter[str] = Counter()
    vis: Counter[str] = Counter()
    n_boxes = 0
    for e in ds.entries:
        n_boxes += len(e.labels)
        for lab in e.labels:
            per_class[ds.class_names[int(lab)]] += 1
        if e.visible is not None:
            for v in e.visible:
                vis["rgb_only" if v[0] and not v[1] else "thermal_only" if v[1] and not v[0]
                    else "both" if v[0] else "neither"] += 1
    rgb_sizes: Counter[str] = Counter()
    th_sizes: Counter[str] = Counter()
    for i in range(min(sizes, len(ds))):
        s = ds[i]
        rgb_sizes[f"{s.rgb.shape[1]}x{s.rgb.shape[0]}"] += 1
        th_sizes[f"{s.thermal.shape[1]}x{s.thermal.shape[0]} {s.thermal.dtype}"] += 1
    out: dict[str, Any] = {
        "format": ds.name, "root": str(ds.root), "pairs": len(ds),
        "unpaired": len(ds.unpaired), "unpaired_files": ds.unpaired[:50],
        "boxes": n_boxes,
        "boxes_per_class": {c: per_class.get(c, 0) for c in ds.class_names},
        "class_names": list(ds.class_names),
        "rgb_sizes": dict(rgb_sizes), "thermal_sizes": dict(th_sizes),
        # Instance masks: objects that have one (0 for a dataset without masks).
        "instance_masks": bool(getattr(ds, "has_masks", False)),
        "masks": sum(len(e.masks) for e in ds.entries if e.masks is not None),
    }
    if vis:
        out["visibility"] = dict(vis)
    conds = Counter(e.meta.get("condition") for e in ds.entries if "condition" in e.meta)
    if conds:
        out["conditions"] = dict(conds)
    return out


def _stats(args: argparse.Namespace) -> int:
    from dlrmamba_core.data.readers import open_dataset

    ds = open_dataset(args.format, args.root, args.split, **reader_options(args.reader_opt))
    st = dataset_stats(ds, args.sizes)
    if args.json:
        print(json.dumps(st))
        return 0
    print(f"{args.format} {args.root} split={args.split}: {st['pairs']} pairs, "
          f"{st['unpaired']} unpaired, {st['boxes']} boxes")
    for f in st["unpaired_files"]:
        print(f"  unpaired: {f}")
    print(f"  RGB sizes: {st['rgb_sizes']}  thermal: {st['thermal_sizes']}")
    print(f"  instance masks: {st['masks']} objects" if st["instance_masks"]
          else "  instance masks: none (boxes only)")
    for c, n in st["boxes_per_class"].items():
        print(f"  {c:16s} {n}")
    for key in ("visibility", "conditions"):
        if key in st:
            print(f"  {key}: {st[key]}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.viz import contact_sheet, write_image_atomic

    ds = open_dataset(args.format, args.root, args.split, **reader_options(args.reader_opt))
    if len(ds) == 0:
        raise DatasetError(f"{args.root}: no pairs found to show")
    idx = range(args.start, min(len(ds), args.start + args.num))
    samples = [ds[i] for i in idx]
    titles = [" ".join(str(x) for x in (s.image_id, s.meta.get("scene", ""),
                                         s.meta.get("condition", ""))) for s in samples]
    sheet = contact_sheet(samples, ds.class_names, args.width, titles)
    write_image_atomic(args.out, sheet)
    print(f"wrote {args.out} ({len(samples)} pairs)")
    return 0


def _sheets(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dlrmamba_core.data.synthetic import CONDITIONS, SYNTH_CLASSES, SynthConfig, generate_frame
    from dlrmamba_core.data.viz import contact_sheet, write_image_atomic

    cfg = SynthConfig()
    for k, cond in enumerate(CONDITIONS):
        samples, titles = [], []
        for scene in ("maritime", "aerial"):
            for j in range(args.per_scene):
                seed = args.seed + 1000 * k + 10 * j + (0 if scene == "maritime" else 5)
                s = generate_frame(cfg, seed, scene=scene, condition=cond)
                vis = s.visible if s.visible is not None else None
                seen = "" if vis is None or not len(vis) else (
                    f" | visible: RGB {int(vis[:, 0].sum())}/{len(vis)}, "
                    f"thermal {int(vis[:, 1].sum())}/{len(vis)}")
                samples.append(s)
                titles.append(f"SYNTHETIC {scene} {cond} (seed {seed}){seen}")
        out = Path(args.out_dir) / f"data_{cond}.png"
        write_image_atomic(out, contact_sheet(samples, list(SYNTH_CLASSES), args.width,
                                              titles))
        print(f"wrote {out}")
    return 0


def _register(args: argparse.Namespace) -> int:
    import numpy as np

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.data.registration import estimate_homography

    ds = open_dataset(args.format, args.root, args.split, **reader_options(args.reader_opt))
    n = min(args.num, len(ds))
    if n == 0:
        raise DatasetError(f"{args.root}: no pairs found to register")
    samples = [ds[i] for i in range(n)]
    init = samples[0].homography
    res = estimate_homography([s.rgb for s in samples], [s.thermal for s in samples],
                              init=None, motion=args.motion)
    np.set_printoptions(precision=5, suppress=True)
    print(f"homography (thermal -> RGB) from {n} pairs, motion={args.motion}:")
    print(res.homography)
    print(f"residual (1 - ECC of edge maps): {res.residual:.4f}; per pair "
          f"{[round(r, 4) for r in res.per_pair]}; converged {res.converged}")
    if init is not None:
        from dlrmamba_core.data.registration import corner_error

        err = corner_error(res.homography, init, samples[0].thermal.shape[:2])
        print(f"mean corner distance to the dataset's homography: {err:.2f} RGB px")
    if args.out:
        from dlrmamba_core.engine.fileio import write_text

        # abspath: a bare file name (``--out H.json``) has no folder part to create.
        write_text(os.path.abspath(args.out),
                   json.dumps({"homography": res.homography.tolist(),
                               "residual": res.residual}))
        print(f"wrote {args.out}")
    return 0
