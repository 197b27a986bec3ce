"""Latency of untrained architecture candidates against the ``cnn`` yardstick, in ONE run.

``python -m dlrmamba_core.deploy.arch_latency [NAME ...] [--input-size 512x640] [--threads 2]``

Each candidate (a registered variant, or a named entry of :data:`CANDIDATES`: a registered
variant with config overrides) is built with random weights (latency does not depend on the
weights), exported to ONNX at the input size and loaded in onnxruntime. The sessions then run
in alternation, round after round, so a change of machine load hits every model alike; the
reported ratio to the cnn is the median of the per-round ratios. On a shared machine quote
the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
import contextlib
from dataclasses import replace
from functools import partial
import os
from pathlib import Path
import sys
import tempfile
from typing import Any

import numpy as np

from dlrmamba_core.errors import ConfigError

__all__ = ["CANDIDATES", "candidate_config", "measure"]

#: Candidate architectures (students unless the name says teacher): base variant + overrides
#: (registered variants take precedence over a candidate of the same name).
#: Students are the teacher's shape with rank ratio 0.15 and r_state = ceil(0.25 N) (the
#: shipped recipe), so each row is what ``student_from_teacher`` would give.
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "student_dirs2": ("student", {"scan_dirs": (4, 2, 2)}),
    "student_p5_dirs4": ("student", {"stage_types": ("conv", "conv", "vss")}),
    "student_p5_dirs2": ("student", {"stage_types": ("conv", "conv", "vss"),
                                     "scan_dirs": (4, 4, 2)}),
    "student_dirs2_ssm05": ("student", {"scan_dirs": (4, 2, 2), "ssm_ratio": 0.5}),
    "student_dirs2_n2": ("student", {"scan_dirs": (4, 2, 2), "d_state": 2}),
    "student_dirs2_p4ssm": ("student", {"scan_dirs": (4, 2, 2), "depths": (1, 1, 3)}),
    "student_p5_dirs2_deep": ("student", {"stage_types": ("conv", "conv", "vss"),
                                          "scan_dirs": (4, 4, 2), "depths": (1, 2, 3)}),
    "student_p5_deep": ("student", {"stage_types": ("conv", "conv", "vss"),
                                    "depths": (1, 2, 3)}),
    "student_p5_dirs2_p4x2": ("student", {"stage_types": ("conv", "conv", "vss"),
                                          "scan_dirs": (4, 4, 2), "depths": (1, 2, 2)}),
    "student_p5_dirs2_w448": ("student", {"stage_types": ("conv", "conv", "vss"),
                                          "scan_dirs": (4, 4, 2), "widths": (64, 192, 448)}),
    "student_dirs2_ssm05_n2": ("student", {"scan_dirs": (4, 2, 2), "ssm_ratio": 0.5,
                                           "d_state": 2}),
    "student_dirs2_ssm05_mlp2": ("student", {"scan_dirs": (4, 2, 2), "ssm_ratio": 0.5,
                                             "mlp_ratio": 2.0}),
}


def candidate_config(name: str, num_classes: int = 7) -> Any:
    """The DetectorConfig of a registered variant or a :data:`CANDIDATES` entry.

    Raises:
        ConfigError: neither a registered variant nor a candidate.
    """
    from dlrmamba_core.models.config import get_config, list_variants

    if name in list_variants():
        return get_config(name, num_classes)
    if name in CANDIDATES:
        base, over = CANDIDATES[name]
        return replace(get_config(base, num_classes, **over), variant=name)
    raise ConfigError(f"unknown candidate {name!r}: use a registered variant "
                      f"({', '.join(list_variants())}) or one of {', '.join(CANDIDATES)}")


def measure(names: list[str], input_hw: tuple[int, int] = (512, 640), threads: int = 2,
            rounds: int = 7, iters: int = 4, ref: str = "cnn",
            workdir: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Export every candidate and time them in alternation.

    Returns:
        per name: params (M), ONNX nodes, p50 ms, ratio to ``ref`` (median of per-round
        ratios of the round medians).
    """
    import onnx
    import torch

    from dlrmamba_core.deploy.export import export_model_to_onnx
    from dlrmamba_core.models import build_from_config
    from dlrmamba_core.models.measure import p50_and_ratio, random_pair, time_alternately
    from dlrmamba_core.runtime.detector import OrtBackend
    from dlrmamba_core.runtime.metadata import ModelInfo

    order = [ref] + [n for n in names if n != ref]
    out: dict[str, dict[str, Any]] = {}
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dlrmamba-arch-", dir=workdir) as tmp:
        for name in order:
            cfg = candidate_config(name)
            torch.manual_seed(0)
            model = build_from_config(cfg).eval()
            info = ModelInfo([f"c{i}" for i in range(cfg.num_classes)], input_hw, cfg.variant,
                             "bench", "n/a", {"mode": "percentile"})
            path = Path(tmp) / f"{name}.onnx"
            export_model_to_onnx(model, info, path)
            out[name] = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6,
                         "nodes": len(onnx.load(str(path)).graph.node)}
            backends[name] = OrtBackend(path, threads=threads)
        rgb, th = random_pair(input_hw)
        times = time_alternately({name: partial(be.run, rgb, th)
                                  for name, be in backends.items()}, rounds, iters)
    for name, v in p50_and_ratio(times, ref).items():
        out[name].update(v)
    return out


def time_files(paths: list[str], threads: int = 2, rounds: int = 7, iters: int = 4,
               graph_optimization: str = "all") -> dict[str, dict[str, Any]]:
    """Time ONNX files in alternation (e.g. one model exported before and after a graph
    change); ratios are to the first file (median of per-round ratios)."""
    from dlrmamba_core.models.measure import p50_and_ratio, random_pair, time_alternately
    from dlrmamba_core.runtime.detector import OrtBackend

    backends = {p: OrtBackend(p, threads=threads, graph_optimization=graph_optimization)
                for p in paths}
    # each file at its own input size
    calls = {p: partial(be.run, *random_pair(be.info.input_hw)) for p, be in backends.items()}
    out: dict[str, dict[str, Any]] = dict(p50_and_ratio(
        time_alternately(calls, rounds, iters), paths[0]))
    return out


def _spin_forever() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[list[Any]]:
    """Keep ``n`` processes spinning on the CPU while the block runs (a loaded robot); yields
    the ``multiprocessing`` processes."""
    import multiprocessing as mp

    procs = [mp.get_context("spawn").Process(target=_spin_forever, daemon=True)
             for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
            proc.join()


def e2e_breakdown(path: str, rgb_hw: tuple[int, int] = (1024, 1280),
                  thermal_hw: tuple[int, int] = (512, 640), threads: int = 2,
                  iters: int = 20, spin: bool = False) -> dict[str, float]:
    """``Detector.detect`` on a random uint8 RGB + uint16 thermal pair: median ms of each
    stage and the median per-frame ratio total / network (target: <= 1.15). ``spin``: let
    onnxruntime's idle threads busy-wait (the Detector's default is not to)."""
    from dlrmamba_core.runtime.detector import Detector

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*rgb_hw, 3), dtype=np.uint8)
    thermal = (rng.random(thermal_hw) * 4000 + 28000).astype(np.uint16)  # 16-bit counts
    det = Detector(path, threads=threads, spin=spin)
    for _ in range(3):
        det.detect(rgb, thermal)
    stages: dict[str, list[float]] = {}
    for _ in range(iters):
        t = det.detect(rgb, thermal).timings_ms
        for k, v in t.items():
            stages.setdefault(k, []).append(v)
    out = {f"{k}_ms": float(np.median(v)) for k, v in stages.items()}
    out["total_over_network"] = float(np.median(np.array(stages["total"])
                                                / np.array(stages["inference"])))
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dlrmamba_core.deploy.arch_latency``."""
    p = argparse.ArgumentParser(prog="python -m dlrmamba_core.deploy.arch_latency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", help="variants / candidates (default: student + all)")
    p.add_argument("--input-size", default="512x640", metavar="HxW")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--files", nargs="+", default=None, metavar="ONNX",
                   help="time these ONNX files in alternation instead (ratios to the first)")
    p.add_argument("--e2e", nargs="+", default=None, metavar="ONNX",
                   help="time Detector.detect on a 1280x1024 RGB + 640x512 16-bit thermal "
                        "pair instead (pre-processing, network, NMS)")
    p.add_argument("--spin", choices=("off", "on", "both"), default="off",
                   help="--e2e: onnxruntime's idle threads busy-wait (on), not (off, the "
                        "Detector's default), or one row each")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="--e2e: keep N other processes busy meanwhile (a robot's CPU also "
                        "runs camera drivers and the ROS executor)")
    args = p.parse_args(argv)
    from dlrmamba_core.deploy.cli import parse_hw
    from dlrmamba_core.sysinfo import cpu_model

    if args.e2e:
        spins = {"off": [False], "on": [True], "both": [False, True]}[args.spin]
        with busy_processes(args.busy):
            print(f"Detector.detect, 1280x1024 RGB uint8 + 640x512 thermal uint16, "
                  f"{args.threads} threads, {cpu_model()}, {args.busy} busy processes, load "
                  f"{os.getloadavg()[0]:.1f}\n\n"
                  "| model | ORT spin | pre ms | network ms | post ms | total ms | "
                  "total / network |\n|---|---|---|---|---|---|---|")
            for path in args.e2e:
                for spin in spins:
                    r = e2e_breakdown(path, threads=args.threads, spin=spin)
                    print(f"| {path} | {'on' if spin else 'off'} | {r['preprocess_ms']:.2f} | "
                          f"{r['inference_ms']:.1f} | {r['postprocess_ms']:.2f} | "
                          f"{r['total_ms']:.1f} | {r['total_over_network']:.3f} |", flush=True)
        return 0

    if args.files:
        res = time_files(args.files, args.threads, args.rounds, args.iters)
        print(f"{args.threads} threads, ORT fp32, {cpu_model()}, load "
              f"{os.getloadavg()[0]:.1f}\n\n| file | p50 ms | / first |\n|---|---|---|")
        for name, v in res.items():
            print(f"| {name} | {v['p50_ms']:.1f} | {v['ratio']:.3f} |")
        return 0

    names = args.names or ["student", *CANDIDATES]
    res = measure(names, parse_hw(args.input_size), args.threads, args.rounds, args.iters)
    print(f"untrained, {args.input_size}, {args.threads} threads, ORT fp32, {cpu_model()} "
          f"(shared machine: compare ratios), load {os.getloadavg()[0]:.1f}\n")
    print("| model | params (M) | ONNX nodes | p50 ms | / cnn |\n|---|---|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {v['params_m']:.2f} | {v['nodes']} | {v['p50_ms']:.1f} | "
              f"{v['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
