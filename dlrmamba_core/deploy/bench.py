"""CPU benchmark: models x backends x threads x input sizes, one run, one table.

``python -m dlrmamba_core.deploy.bench`` (or ``dlrmamba bench``):

1. builds every registered variant **untrained** (latency does not depend on the weights),
   saves it, exports it to ONNX at 640x512 and at its native size, and quantizes each export
   to INT8 (QDQ, calibrated on a few synthetic frames); adds the shipped models of
   ``models/`` (ONNX, at their own input size);
2. measures each configuration in a **fresh subprocess** (so peak RSS is that configuration's
   alone): backends ``torch-ref`` (eager, reference selective-scan loop), ``torch`` (eager,
   chunked scan), ``ort-fp32`` and ``ort-int8``; threads 1, 2, 4. Each run feeds one
   synthetic RGB-T frame through ``Detector.detect`` and records the network time (p50, p95)
   and the end-to-end time (pre-processing + network + NMS);
3. prints a markdown table and writes it (with the CPU model, date, load average and the
   target ratios computed from this run) to ``docs/benchmarks.md``.

Each configuration runs for a time budget (at least ``min_iters`` timed iterations after a
warm-up), so slow ones (the reference scan) get few iterations.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
import datetime as dt
import json
import logging
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from dlrmamba_core.errors import ConfigError
from dlrmamba_core.sysinfo import cpu_model

__all__ = ["BenchConfig", "add_arguments", "main", "render_markdown", "run_from_args"]

log = logging.getLogger(__name__)

BACKENDS = ("torch-ref", "torch", "ort-fp32", "ort-int8")
#: The paper-facing resolution (width x height 640x512, i.e. input_hw (512, 640)).
BENCH_HW = (512, 640)
#: Native input size of untrained variants (the trainer's default).
NATIVE_HW = (256, 320)
#: YOLOv8n / YOLO11n in ORT on this machine kind, 2 threads, 512x640 (shared/notes/anchors.md).
YARDSTICK_MS = {"YOLOv8n": 75.0, "YOLO11n": 64.0}


@dataclass
class BenchConfig:
    """One measured configuration (what a child process runs).

    Attributes:
        model: row label (variant name, or shipped file stem).
        source: ``untrained`` (variant built from the registry) or ``shipped`` (models/).
        backend: one of ``BACKENDS``.
        threads: intra-op threads.
        input_hw: network input (h, w).
        size_label: ``640x512`` or ``native``.
        path: the ``.onnx`` (ORT) or ``.pt`` (torch) file.
        budget_s: timed-loop budget, seconds.
        min_iters: timed iterations at least.
        max_iters: timed iterations at most.
        warmup: untimed iterations first.
    """

    model: str
    source: str
    backend: str
    threads: int
    input_hw: tuple[int, int]
    size_label: str
    path: str
    budget_s: float = 2.0
    min_iters: int = 3
    max_iters: int = 200
    warmup: int = 2
    result: dict[str, Any] = field(default_factory=dict)


def _peak_rss_kb() -> float:
    """Peak resident set size of this process, KiB (VmHWM).

    Not ``getrusage().ru_maxrss``: Linux keeps that across ``execve``, so a child would report
    the RSS of the (large) parent it was forked from.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _child(cfg: BenchConfig) -> dict[str, Any]:
    """Run one configuration in this (fresh) process; returns the measurements."""
    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame
    from dlrmamba_core.runtime.detector import Detector

    t_load = time.perf_counter()
    if cfg.backend.startswith("ort"):
        det = Detector(cfg.path, threads=cfg.threads, conf_threshold=0.25)
    else:
        from dlrmamba_core.deploy.torch_backend import set_scan

        det = Detector(cfg.path, backend="torch", threads=cfg.threads, conf_threshold=0.25)
        set_scan(det.backend.model, "ref" if cfg.backend == "torch-ref" else "chunked")  # type: ignore[attr-defined]
    load_s = time.perf_counter() - t_load
    frame = generate_frame(SynthConfig(), 0)  # synthetic RGB 640x480 + thermal 320x256
    for _ in range(cfg.warmup):
        det.detect(frame.rgb, frame.thermal, frame.homography)
    net: list[float] = []
    total: list[float] = []
    start = time.perf_counter()
    while len(net) < cfg.max_iters and (
        len(net) < cfg.min_iters or time.perf_counter() - start < cfg.budget_s
    ):
        d = det.detect(frame.rgb, frame.thermal, frame.homography)
        net.append(d.timings_ms["inference"])
        total.append(d.timings_ms["total"])
    peak_kb = _peak_rss_kb()
    return {
        "iters": len(net),
        "p50_ms": float(np.percentile(net, 50)),
        "p95_ms": float(np.percentile(net, 95)),
        "e2e_p50_ms": float(np.percentile(total, 50)),
        "fps": 1000.0 / float(np.percentile(net, 50)),
        "peak_rss_mb": peak_kb / 1024.0,
        "load_s": load_s,
        "torch_imported": "torch" in sys.modules,
    }


def run_config(cfg: BenchConfig, timeout_s: float = 300.0) -> dict[str, Any]:
    """Measure ``cfg`` in a fresh Python process (honest peak RSS, clean thread pools)."""
    env = dict(os.environ)
    # OpenMP / MKL pools of torch and numpy follow these; ORT uses its own setting.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(cfg.threads)
    payload = json.dumps({k: v for k, v in asdict(cfg).items() if k != "result"})
    proc = subprocess.run(
        [sys.executable, "-m", "dlrmamba_core.deploy.bench", "--child", payload],
        capture_output=True, text=True, timeout=timeout_s, env=env, check=False,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclass
class Prepared:
    """Model files of one (model, size): checkpoint (torch), fp32 and int8 ONNX."""

    model: str
    source: str
    input_hw: tuple[int, int]
    size_label: str
    pt: str | None
    fp32: str | None
    int8: str | None
    params: int | None = None


def prepare_variant(variant: str, workdir: Path, sizes: Sequence[tuple[str, tuple[int, int]]],
                    num_classes: int, calib_frames: int) -> list[Prepared]:
    """Build an untrained variant, save it, export + quantize it at each size."""
    import torch

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES, SynthConfig, generate_frame
    from dlrmamba_core.deploy.export import export_model_to_onnx
    from dlrmamba_core.deploy.quantize import quantize_model
    from dlrmamba_core.deploy.torch_backend import info_from_checkpoint
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.io import save_model
    from dlrmamba_core.runtime.metadata import sha256_file

    torch.manual_seed(0)
    names = list(SYNTH_CLASSES)[:num_classes]
    model = build_model(variant, len(names)).eval()
    params = sum(p.numel() for p in model.parameters())
    out: list[Prepared] = []
    calib = [generate_frame(SynthConfig(), 1000 + i) for i in range(calib_frames)]
    for label, hw in sizes:
        pt = workdir / f"{variant}_{hw[0]}x{hw[1]}.pt"
        fp32 = workdir / f"{variant}_{hw[0]}x{hw[1]}.onnx"
        int8 = workdir / f"{variant}_{hw[0]}x{hw[1]}.int8.onnx"
        if pt.is_file() and fp32.is_file() and int8.is_file():
            # --workdir of an earlier run: same seed, same files; skip the slow export
            out.append(Prepared(variant, "untrained", hw, label, str(pt), str(fp32), str(int8),
                                params))
            continue
        save_model(pt, model, names, hw)
        meta = {"variant": variant, "class_names": names, "input_hw": list(hw)}
        info = info_from_checkpoint(meta, sha256_file(pt))
        export_model_to_onnx(model, info, fp32)
        quantize_model(fp32, int8, calib, num_calibration=calib_frames, write_card=False)
        out.append(Prepared(variant, "untrained", hw, label, str(pt), str(fp32), str(int8),
                            params))
    return out


def shipped_models(models_dir: Path) -> list[Prepared]:
    """The ONNX models in ``models_dir`` (fp32 and int8 files of the same stem pair up)."""
    from dlrmamba_core.runtime.metadata import ModelInfo

    out: list[Prepared] = []
    if not models_dir.is_dir():
        return out
    import onnx

    for f in sorted(models_dir.glob("*.onnx")):
        if f.name.endswith(".int8.onnx"):
            continue
        proto = onnx.load(str(f), load_external_data=False)
        info = ModelInfo.from_metadata({p.key: p.value for p in proto.metadata_props}, str(f))
        int8 = f.with_name(f.stem + ".int8.onnx")
        out.append(Prepared(f.stem, "shipped", info.input_hw,
                            "native" if tuple(info.input_hw) != BENCH_HW else "640x512",
                            None, str(f), str(int8) if int8.is_file() else None))
    return out


def build_configs(prepared: Sequence[Prepared], backends: Sequence[str],
                  threads: Sequence[int], budget_s: float, quick: bool) -> list[BenchConfig]:
    """Every (model, size) x backend x threads with a file to run."""
    cfgs: list[BenchConfig] = []
    for p in prepared:
        for backend in backends:
            path = {"torch-ref": p.pt, "torch": p.pt, "ort-fp32": p.fp32,
                    "ort-int8": p.int8}[backend]
            if path is None:
                continue
            if backend == "torch-ref" and p.model == "cnn":
                continue  # no selective scan: identical to "torch"
            for t in threads:
                slow = backend.startswith("torch")
                cfgs.append(BenchConfig(
                    p.model, p.source, backend, t, p.input_hw, p.size_label, path,
                    budget_s=budget_s * (0.5 if backend == "torch-ref" else 1.0),
                    min_iters=1 if quick else (2 if slow else 5),
                    warmup=1 if (slow or quick) else 2,
                ))
    return cfgs


def _fmt(v: float | None, nd: int = 1) -> str:
    return "—" if v is None else f"{v:.{nd}f}"


def find(results: Sequence[BenchConfig], model: str, backend: str, threads: int,
         size_label: str, source: str = "untrained") -> float | None:
    """p50 network latency (ms) of one configuration, None when absent or failed."""
    for c in results:
        if (c.model, c.backend, c.threads, c.size_label, c.source) == (
            model, backend, threads, size_label, source
        ) and "p50_ms" in c.result:
            return float(c.result["p50_ms"])
    return None


def target_lines(results: Sequence[BenchConfig], threads: Sequence[int] = (1, 2)) -> list[str]:
    """The issue's target ratios at 640x512, one column per thread count, from ``results``."""
    s = "640x512"

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a / b

    cols: list[tuple[float | None, float | None, float | None, float | None]] = []
    for t in threads:
        stu = find(results, "student", "ort-fp32", t, s)
        tea = find(results, "teacher", "ort-fp32", t, s)
        ref = find(results, "student", "torch-ref", t, s)
        cnn = find(results, "cnn", "ort-fp32", t, s)
        cols.append((ratio(stu, tea), ratio(ref, stu), ratio(stu, cnn), stu))

    def row(name: str, bound: str, i: int, limit: float | None, le: bool, nd: int) -> str:
        cells = []
        for c in cols:
            v = c[i]
            verdict = "" if limit is None else f" ({_verdict(v, limit, le)})"
            cells.append(f"{_fmt(v, nd)}{verdict}" if v is not None else "not measured")
        return f"| {name} | {bound} | " + " | ".join(cells) + " |"

    return [
        "| target | bound | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}"
                                          for t in threads) + " |",
        "|---|---|" + "---|" * len(threads),
        row("student ORT fp32 / teacher ORT fp32 latency", "<= 0.35", 0, 0.35, True, 2),
        row("student torch-eager-ref / student ORT fp32 latency (speed-up)", ">= 10", 1, 10.0,
            False, 1),
        row("student ORT fp32 / cnn ORT fp32 latency", "<= 1.5", 2, 1.5, True, 2),
        row("student ORT fp32 p50 at 640x512 (ms)", "report", 3, None, True, 1),
        *_fast_lines(results, threads),
    ]


def _fast_lines(results: Sequence[BenchConfig], threads: Sequence[int]) -> list[str]:
    """Issue 13's targets for the fast students (models.config.FAST_PAIRS) that were measured:
    student / cnn <= 2.0 and student / the shipped-shape teacher <= 0.4, at 640x512."""
    from dlrmamba_core.models.config import FAST_PAIRS

    s, out = "640x512", []
    for _, student in FAST_PAIRS:
        for ref, bound in (("cnn", 2.0), ("teacher", 0.4)):
            vals = []
            for t in threads:
                a = find(results, student, "ort-fp32", t, s)
                b = find(results, ref, "ort-fp32", t, s)
                vals.append(None if a is None or b is None else a / b)
            if all(v is None for v in vals):
                continue
            cells = [f"{v:.2f} ({_verdict(v, bound, True)})" if v is not None
                     else "not measured" for v in vals]
            out.append(f"| {student} ORT fp32 / {ref} ORT fp32 latency | <= {bound} | "
                       + " | ".join(cells) + " |")
    return out


def _verdict(v: float | None, bound: float, le: bool) -> str:
    if v is None:
        return "not measured"
    return "met" if (v <= bound if le else v >= bound) else "NOT met"


def render_markdown(results: Sequence[BenchConfig], header: dict[str, Any],
                    prepared: Sequence[Prepared]) -> str:
    """The benchmark report: context, the full table, the target ratios."""
    params = {p.model: p.params for p in prepared}
    lines = [
        "# CPU benchmark (generated by `python -m dlrmamba_core.deploy.bench`)",
        "",
        f"- Date (UTC): {header['date']}",
        f"- CPU: {header['cpu']} ({header['cores']} cores visible); load average before / "
        f"after: {header['load_before']} / {header['load_after']}. This machine is shared: "
        "absolute numbers carry that noise; compare ratios within this one run.",
        f"- Software: Python {header['python']}, torch {header['torch']}, onnxruntime "
        f"{header['onnxruntime']}, numpy {header['numpy']}.",
        f"- Command: `{header['command']}`; total {header['elapsed_s']:.0f} s.",
        "- `untrained` rows: the registered variant built with random weights (latency does "
        "not depend on the weights); `shipped` rows: the files in `models/`.",
        "- Latency = the network forward pass alone (p50 / p95 over the timed iterations, "
        "batch 1); `e2e` adds pre-processing (thermal normalization, registration warp, "
        "letterbox) and NMS, on one synthetic 640x480 RGB + 320x256 thermal frame. FPS = "
        "1000 / p50. Peak RSS = the whole measuring process (one fresh process per row).",
        "- Backends: `torch-ref` eager PyTorch with the reference selective-scan loop; `torch` "
        "eager with the chunked scan; `ort-fp32` / `ort-int8` onnxruntime CPU (INT8 = QDQ "
        "static quantization of Conv/MatMul/Gemm, calibrated on synthetic frames for these "
        "timing rows).",
        "",
        "## Targets (640x512)",
        "",
        *target_lines(results, sorted({c.threads for c in results})),
        "",
        f"Yardstick (from `shared/notes/anchors.md`, not measured by this script): YOLOv8n "
        f"{YARDSTICK_MS['YOLOv8n']:.0f} ms and YOLO11n {YARDSTICK_MS['YOLO11n']:.0f} ms p50 in "
        "ORT, 2 threads, 512x640 on this machine kind.",
        "",
        "## All configurations",
        "",
        "| model | weights | params (M) | input (HxW) | backend | threads | p50 ms | p95 ms | "
        "FPS | e2e p50 ms | peak RSS MB | iters |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in results:
        r = c.result
        pm = params.get(c.model) if c.source == "untrained" else None
        size = f"{c.input_hw[0]}x{c.input_hw[1]}"
        if "error" in r:
            lines.append(f"| {c.model} | {c.source} | {_fmt(pm and pm / 1e6, 2)} | {size} | "
                         f"{c.backend} | {c.threads} | failed: {r['error'][:80]} | | | | | |")
            continue
        lines.append(
            f"| {c.model} | {c.source} | {_fmt(pm and pm / 1e6, 2)} | {size} | {c.backend} | "
            f"{c.threads} | {_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} | {_fmt(r['fps'], 2)} | "
            f"{_fmt(r['e2e_p50_ms'])} | {_fmt(r['peak_rss_mb'], 0)} | {r['iters']} |"
        )
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Benchmark options (shared by ``dlrmamba bench`` and ``python -m``)."""
    p.add_argument("--quick", action="store_true",
                   help="smoke run: nano only, native size, 1-2 threads, tiny budgets")
    p.add_argument("--variants", nargs="*", default=None,
                   help="registered variants to build untrained (default: all)")
    p.add_argument("--backends", nargs="*", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--threads", nargs="*", type=int, default=[1, 2, 4])
    p.add_argument("--sizes", nargs="*", default=["640x512", "native"],
                   choices=["640x512", "native"], help="input sizes (native: 256x320 for "
                   "untrained variants)")
    p.add_argument("--budget-s", type=float, default=2.0,
                   help="timed seconds per configuration (reference scan: half)")
    p.add_argument("--models-dir", default="models", help="shipped models to include")
    p.add_argument("--no-shipped", action="store_true", help="skip the shipped models")
    p.add_argument("--out", default="docs/benchmarks.md", help="markdown report ('' = none)")
    p.add_argument("--json", default=None, help="also write the raw results as JSON")
    p.add_argument("--from-json", default=None, metavar="RESULTS.json",
                   help="only re-render the report from an earlier run's --json output")
    p.add_argument("--workdir", default=None, help="keep exported files here (default: tmp)")


def _rerender(args: argparse.Namespace) -> int:
    """Write the report of an earlier run (its ``--json`` file) again, with this renderer."""
    from dlrmamba_core.engine.fileio import write_text

    raw = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
    cfgs = []
    for r in raw["results"]:
        r["input_hw"] = tuple(r["input_hw"])
        cfgs.append(BenchConfig(**r))
    # Parameter counts come from the file only (the registry may have changed since).
    prepared = [Prepared(**p) for p in raw.get("prepared", [])]
    md = render_markdown(cfgs, raw["header"], prepared)
    print(md)
    if args.out:
        write_text(args.out, md)
    return 0


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark described by parsed ``args``; print and write the report."""
    import onnxruntime
    import torch

    from dlrmamba_core.engine.fileio import write_json, write_text
    from dlrmamba_core.models import list_variants

    if args.from_json:
        return _rerender(args)
    t0 = time.time()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    variants = args.variants if args.variants is not None else list_variants()
    unknown = sorted(set(variants) - set(list_variants()))
    if unknown:
        raise ConfigError(f"unknown variants {unknown}: choose from {list_variants()}")
    if any(t < 1 for t in args.threads):
        raise ConfigError(f"--threads {args.threads}: need >= 1")
    all_sizes = {"640x512": BENCH_HW, "native": NATIVE_HW}
    sizes = [(label, all_sizes[label]) for label in args.sizes]
    threads = list(args.threads)
    budget = args.budget_s
    if args.quick:
        variants = args.variants or ["nano"]
        sizes = [("native", NATIVE_HW)]
        threads = [t for t in threads if t <= 2] or [1]
        budget = min(budget, 0.2)
    with tempfile.TemporaryDirectory(prefix="dlrmamba-bench-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        prepared: list[Prepared] = []
        for v in variants:
            tv = time.time()
            prepared += prepare_variant(v, workdir, sizes, 7, calib_frames=2 if args.quick
                                        else 4)
            print(f"prepared {v}: exported + quantized at "
                  f"{', '.join(f'{h}x{w}' for _, (h, w) in sizes)} in {time.time() - tv:.0f} s",
                  flush=True)
        if not args.no_shipped and not args.quick:
            prepared += shipped_models(Path(args.models_dir))
        cfgs = build_configs(prepared, args.backends, threads, budget, args.quick)
        for i, c in enumerate(cfgs):
            c.result = run_config(c)
            r = c.result
            msg = (f"p50 {r['p50_ms']:.1f} ms p95 {r['p95_ms']:.1f} ms RSS "
                   f"{r['peak_rss_mb']:.0f} MB ({r['iters']} iters)" if "p50_ms" in r
                   else r["error"])
            print(f"[{i + 1}/{len(cfgs)}] {c.model} {c.size_label} {c.backend} "
                  f"t={c.threads}: {msg}", flush=True)
    header = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "load_before": load_before,
        "load_after": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "command": "python -m dlrmamba_core.deploy.bench " + " ".join(sys.argv[1:])
        if sys.argv[0].endswith("bench.py") else "dlrmamba " + " ".join(sys.argv[1:]),
        "elapsed_s": time.time() - t0,
    }
    md = render_markdown(cfgs, header, prepared)
    print(md)
    if args.out:
        write_text(args.out, md)
        print(f"wrote {args.out}")
    if args.json:
        write_json(args.json, {"header": header, "prepared": [asdict(p) for p in prepared],
                               "results": [asdict(c) for c in cfgs]})
    failed = [c for c in cfgs if "error" in c.result]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dlrmamba_core.deploy.bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        d = json.loads(argv[1])
        d["input_hw"] = tuple(d["input_hw"])
        print(json.dumps(_child(BenchConfig(**d))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m dlrmamba_core.deploy.bench",
                                     description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dlrmamba_core.errors import DlrmambaError

    try:
        return run_from_args(args)
    except DlrmambaError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
