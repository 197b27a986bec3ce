"""Parameter / GFLOP table of every registered variant: ``python -m dlrmamba_core.models.table``.

GFLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` for one 640 x 512 (W x H)
RGB + thermal pair (2 FLOPs per multiply-add; it counts matmuls and convolutions, not
element-wise ops such as the selective scan's exp/mul/add). With ``--latency`` the table adds
the onnxruntime CPU p50 latency of each exported variant.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import statistics
import sys
import tempfile
import time
from typing import Any

import torch

from dlrmamba_core.models.config import list_variants, variant_description

INPUT_HW = (512, 640)
KEEP_MARKER = "<!-- hand-written below: kept when the table is regenerated -->"
"""Text from this line on in ``--out`` survives a regeneration (the variants' design notes)."""


def count(variant: str, num_classes: int = 7, input_hw: tuple[int, int] = INPUT_HW
          ) -> dict[str, Any]:
    """{"params", "gflops"} of one variant at ``input_hw`` (eval mode, batch 1)."""
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.measure import params_and_gflops

    model = build_model(variant, num_classes).eval()
    h, w = input_hw
    rgb, th = torch.rand(1, 3, h, w), torch.rand(1, 1, h, w)
    params, gflops = params_and_gflops(model, rgb, th)
    return {"params": params, "gflops": gflops, "model": model, "inputs": (rgb, th)}


def ort_latencies(models: dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, torch.Tensor]]],
                  threads: int, repeat: int) -> dict[str, float]:
    """Median onnxruntime CPU latency (ms) of each exported model.

    Runs are interleaved (one run of each model per round) so that load changes on a shared
    machine hit every model alike and the ratios stay meaningful.
    """
    from functools import partial
    import warnings

    from dlrmamba_core.models.measure import time_alternately
    from dlrmamba_core.runtime.ort_session import ort_session

    sessions, feeds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, inputs) in models.items():
            f = Path(tmp) / f"{name}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, inputs, str(f), opset_version=17, dynamo=False,
                                  input_names=["rgb", "thermal"], output_names=["predictions"])
            sessions[name] = ort_session(f, threads)
            feeds[name] = {"rgb": inputs[0].numpy(), "thermal": inputs[1].numpy()}
    times = time_alternately({name: partial(sess.run, None, feeds[name])
                              for name, sess in sessions.items()}, repeat)
    return {name: statistics.median(t for r in rounds for t in r)
            for name, rounds in times.items()}


def main(argv: list[str] | None = None) -> int:
    """Print the table and write it to ``--out`` (atomic)."""
    from dlrmamba_core.engine.fileio import write_text
    from dlrmamba_core.ops.bench_scan import cpu_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/models.md"))
    p.add_argument("--latency", action="store_true", help="add onnxruntime CPU p50 latency")
    p.add_argument("--threads", default="1,2",
                   help="comma list of onnxruntime intra-op thread counts (one column each)")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--variants", default=",".join(list_variants()))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    names = args.variants.split(",")
    rows = []
    results = {}
    threads = [int(t) for t in str(args.threads).split(",")]
    for name in names:
        results[name] = count(name)
    if args.latency:
        models = {n: (r["model"], r["inputs"]) for n, r in results.items()}
        for t in threads:
            for name, ms in ort_latencies(models, t, args.repeat).items():
                results[name][f"ms{t}"] = ms
    teacher = results.get("teacher")
    student = results.get("student") if args.latency else None
    for name in names:
        r = results[name]
        rel = f"{r['params'] / teacher['params']:.2f}" if teacher else "-"
        cells = [f"`{name}`", f"{r['params'] / 1e6:.3f}", rel, f"{r['gflops']:.2f}"]
        if args.latency:
            cells += [f"{r[f'ms{t}']:.1f}" for t in threads]
            if student is not None:  # ratios within one run are what a loaded machine keeps
                cells += [f"{r[f'ms{t}'] / student[f'ms{t}']:.2f}" for t in threads]
        cells.append(variant_description(name))
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    head = "| variant | params (M) | params / teacher | GFLOPs | "
    sep = "|---|---|---|---|"
    if args.latency:
        head += "".join(f"ORT p50 ms ({t} thr) | " for t in threads)
        sep += "---|" * len(threads)
        if student is not None:
            head += "".join(f"ms / student ({t} thr) | " for t in threads)
            sep += "---|" * len(threads)
    head += "description |"
    sep += "---|"
    lines = [
        "# Model variants",
        "",
        "Generated by `python -m dlrmamba_core.models.table "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). 7 classes, one 640 x 512 "
        "RGB + thermal pair. GFLOPs: torch FlopCounterMode (matmuls and convolutions, "
        "2 FLOPs per multiply-add; the selective scan's element-wise work is not counted).",
    ]
    if args.latency:
        lines.append(
            "Latency: onnxruntime CPU, batch 1, median of "
            f"{args.repeat} runs interleaved across variants, on {cpu_model()} (shared 2-core "
            f"machine, 1-min load average {os.getloadavg()[0]:.1f} at the end: compare ratios "
            "within a column, not absolute times)."
        )
    lines += ["", head, sep, *rows, ""]
    old = args.out.read_text() if args.out.is_file() else ""
    if KEEP_MARKER in old:
        lines.append(old[old.index(KEEP_MARKER):].rstrip("\n") + "\n")
    write_text(args.out, "\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
