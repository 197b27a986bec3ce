"""Benchmark of the selective scan: reference loop vs chunked, in torch and onnxruntime.

``python -m dlrmamba_core.ops.bench_scan`` measures, at batch 1 and detector-like sizes
(D channels, N states, L = H*W tokens up to 160 x 128 = 20,480):

* CPU torch: the reference loop vs the chunked scan (forward, no grad);
* onnxruntime (CPU) on the exported chunked scan, its max error vs torch, and its node count;
* CUDA rows (forward and forward+backward, fp32 and bf16) when a GPU is present
  (``--parts gpu``).

It prints a markdown table and writes it (atomically) to ``--out`` (docs/scan_benchmark.md).
"""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
import statistics
import time
from typing import Any

import numpy as np
import torch

from dlrmamba_core.engine.fileio import write_text
from dlrmamba_core.ops.selective_scan import selective_scan_chunked, selective_scan_ref
from dlrmamba_core.sysinfo import cpu_model

CPU_GRID = [(96, 1), (96, 16), (384, 4), (384, 16)]
LENGTHS = [1280, 5120, 20480]


def make_args(d: int, n: int, L: int, device: str = "cpu", seed: int = 0,
              dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Scan inputs shaped like one SS2D direction group (B = 1)."""
    g = torch.Generator().manual_seed(seed)
    t = {
        "u": torch.randn(1, d, L, generator=g),
        "delta": torch.randn(1, d, L, generator=g) - 2.0,  # softplus -> ~0.13, Mamba-like dt
        "A": -torch.exp(torch.rand(d, n, generator=g) * np.log(16.0)),
        "B": torch.randn(1, n, L, generator=g),
        "C": torch.randn(1, n, L, generator=g),
        "D": torch.ones(d),
    }
    out = {k: v.to(device) for k, v in t.items()}
    for k in ("u", "delta"):
        out[k] = out[k].to(dtype)
    return out


def timed(fn: Any, repeat: int, sync: bool = False) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after one warm-up, milliseconds."""
    fn()
    if sync:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


class _ScanModule(torch.nn.Module):
    def __init__(self, A: torch.Tensor, D: torch.Tensor):
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("D", D)

    def forward(self, u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor) -> torch.Tensor:
        return selective_scan_chunked(u, delta, self.A, B, C, self.D, delta_softplus=True)


def onnx_row(args: dict[str, torch.Tensor], threads: int, repeat: int
             ) -> tuple[float, float, int]:
    """(ORT median ms, max |ORT - torch chunked| / max |torch|, node count)."""
    import warnings

    import onnx

    from dlrmamba_core.runtime.ort_session import ort_session

    m = _ScanModule(args["A"], args["D"]).eval()
    inputs = (args["u"], args["delta"], args["B"], args["C"])
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, inputs, buf, opset_version=17, dynamo=False,
                          input_names=["u", "delta", "B", "C"], output_names=["y"])
    nodes = len(onnx.load_from_string(buf.getvalue()).graph.node)
    sess = ort_session(buf.getvalue(), threads)
    feeds = dict(zip(["u", "delta", "B", "C"], (x.numpy() for x in inputs), strict=True))
    ms = timed(lambda: sess.run(None, feeds), repeat)
    with torch.no_grad():
        ref = m(*inputs).numpy()
    got = sess.run(None, feeds)[0]
    err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    return ms, err, nodes


def cpu_limits(numel: int = 1 << 25, repeat: int = 5) -> tuple[float, float]:
    """This CPU's element rate of ``torch.exp`` (elements/s) and its streaming write+read
    bandwidth (``copy_``, GB/s), on fp32 tensors far larger than the caches, torch's threads.

    Every scan that keeps the chunk states needs one exp per (d, n, t) (the decay
    ``exp(dt * A)``) and writes the (D, N, L) state tensor at least once: both give a floor
    under its time that no rearrangement of torch ops can beat.
    """
    x = torch.rand(numel) - 1.0
    out = torch.empty_like(x)
    exp_s = timed(lambda: torch.exp(x, out=out), repeat) / 1e3
    copy_s = timed(lambda: out.copy_(x), repeat) / 1e3
    return numel / exp_s, 2 * 4 * numel / copy_s / 1e9


def cpu_rows(threads: int, repeat: int, lengths: list[int], with_onnx: bool,
             limits: tuple[float, float] | None = None) -> list[str]:
    """Markdown rows of the CPU (torch + onnxruntime) table; with ``limits`` (from
    :func:`cpu_limits`) three more columns: the time a 50x speed-up allows, and the exp and
    state-write floors for D * N * L elements."""
    rows = []
    for L in lengths:
        for d, n in CPU_GRID:
            a = make_args(d, n, L)
            with torch.no_grad():
                ref_ms = timed(lambda a=a: selective_scan_ref(**a, delta_softplus=True), 1)
                fast_ms = timed(lambda a=a: selective_scan_chunked(**a, delta_softplus=True),
                                repeat)
                y_ref = selective_scan_ref(**a, delta_softplus=True)
                y_fast = selective_scan_chunked(**a, delta_softplus=True)
            err = float((y_fast - y_ref).abs().max() / y_ref.abs().max())
            cells = [f"{d}", f"{n}", f"{L}", f"{ref_ms:.1f}", f"{fast_ms:.2f}",
                     f"{ref_ms / fast_ms:.2f}x", f"{err:.1e}"]
            if with_onnx:
                ort_ms, ort_err, nodes = onnx_row(a, threads, repeat)
                cells += [f"{ort_ms:.2f}", f"{ort_err:.1e}", f"{nodes}"]
            if limits is not None:
                elems = d * n * L
                cells += [f"{ref_ms / 50:.1f}", f"{elems / limits[0] * 1e3:.1f}",
                          f"{4 * elems / (limits[1] * 1e9) * 1e3:.1f}"]
            rows.append("| " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    return rows


def gpu_rows(repeat: int, lengths: list[int]) -> list[str]:
    """Markdown rows of the CUDA table (chunked scan, forward and forward+backward)."""
    rows = []
    for L in lengths:
        for d, n in CPU_GRID:
            for dtype in (torch.float32, torch.bfloat16):
                a = make_args(d, n, L, "cuda", dtype=dtype)
                with torch.no_grad():
                    fwd = timed(lambda a=a: selective_scan_chunked(**a, delta_softplus=True),
                                repeat, sync=True)
                    ref = selective_scan_ref(**{k: v.float() for k, v in a.items()},
                                             delta_softplus=True) if L <= 5120 else None
                    y = selective_scan_chunked(**a, delta_softplus=True).float()
                err = "-"
                if ref is not None:
                    err = f"{float((y - ref).abs().max() / ref.abs().max()):.1e}"
                g = {k: v.clone().requires_grad_(True) for k, v in a.items()}

                def fwd_bwd(g: dict[str, torch.Tensor] = g) -> None:
                    selective_scan_chunked(**g, delta_softplus=True).float().sum().backward()

                fb = timed(fwd_bwd, repeat, sync=True)
                name = "fp32" if dtype == torch.float32 else "bf16"
                rows.append(f"| {d} | {n} | {L} | {name} | {fwd:.2f} | {fb:.2f} | {err} |")
                print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="cpu,onnx", help="comma list of cpu, onnx, gpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: on a shared 2-core machine 2 OpenMP threads "
                   "spin-wait and run 10-100x slower)")
    p.add_argument("--ort-threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per row (median)")
    p.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    p.add_argument("--out", type=Path, default=Path("docs/scan_benchmark.md"))
    p.add_argument("--gpu-table", type=Path, default=None,
                   help="markdown written by a --parts gpu run, included verbatim")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    lengths = [int(x) for x in args.lengths.split(",")]
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    lines = [
        "# Selective-scan benchmark",
        "",
        "Generated by `python -m dlrmamba_core.ops.bench_scan "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:]) + "`.",
        f"Batch 1, scan inputs of one SS2D group (random, dt ~ 0.13). torch {torch.__version__},"
        f" onnxruntime {ort.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
    ]
    if parts & {"cpu", "onnx"}:
        load = os.getloadavg()[0]
        lines += [
            f"## CPU: {cpu_model()}, torch {args.threads} thread(s), onnxruntime "
            f"{args.ort_threads} (1-min load average {load:.1f} at "
            "start: the machine is shared, absolute times are noisy; ratios come from one run)",
            "",
            "ref = `selective_scan_ref` (loop over L, 1 run), chunked = `selective_scan_chunked`"
            f" (median of {args.repeat}); rel. err = max |chunked - ref| / max |ref|; ORT = the "
            "exported chunked scan in onnxruntime, rel. err vs torch chunked; nodes = ONNX node "
            "count (set by the number of chunk levels, ceil(log_CHUNK L)).",
            "",
        ]
        head = "| D | N | L | ref ms | chunked ms | speed-up | rel. err |"
        sep = "|---|---|---|---|---|---|---|"
        if "onnx" in parts:
            head += " ORT ms | ORT rel. err | nodes |"
            sep += "---|---|---|"
        limits = cpu_limits()
        lines += [
            f"This CPU, torch {args.threads} thread(s): `torch.exp` {limits[0] / 1e9:.2f} G "
            f"elements/s, streaming copy {limits[1]:.1f} GB/s (read + write; `cpu_limits`). "
            "50x = ref ms / 50, the time a 50x speed-up allows; exp floor = D*N*L decays "
            "exp(dt*A) at that rate; h floor = writing the fp32 (D, N, L) states once at that "
            "bandwidth. Any scan needs the exps, one that materialises the states also the "
            "write; 50x is out of reach where a floor exceeds the 50x column (floors are for "
            "torch's threads; ORT runs on its own thread count).",
            "",
        ]
        head += " 50x ms | exp floor ms | h floor ms |"
        sep += "---|---|---|"
        rows = cpu_rows(args.ort_threads, args.repeat, lengths, "onnx" in parts, limits)
        lines += [head, sep, *rows, ""]
    if "gpu" in parts:
        if not torch.cuda.is_available():
            raise SystemExit("--parts gpu needs CUDA; none is available here")
        lines += [
            f"## GPU: {torch.cuda.get_device_name()} (chunked scan; rel. err vs the fp32 "
            "reference loop on the GPU, L <= 5120)",
            "",
            "| D | N | L | dtype | fwd ms | fwd+bwd ms | rel. err |",
            "|---|---|---|---|---|---|---|",
            *gpu_rows(args.repeat, lengths),
            "",
        ]
    if args.gpu_table is not None:
        lines += [args.gpu_table.read_text().split("\n", 4)[-1].strip(), ""]
    text = "\n".join(lines)
    write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
