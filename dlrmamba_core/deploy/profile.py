"""Where an ONNX model spends its time in onnxruntime: operator types ranked by time.

``python -m dlrmamba_core.deploy.profile M.onnx [--threads 2] [--iters 10]`` runs the model
with ORT profiling on random inputs and prints the share of each operator type (and the
slowest nodes). ``--compare-exporters VARIANT`` exports an untrained variant with both
``torch.onnx`` exporters (TorchScript and dynamo) and times both graphs in alternation.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from functools import partial
import json
import os
from pathlib import Path
import sys
import tempfile
import time
from typing import Any

import numpy as np

__all__ = ["categorize_nodes", "compare_exporters", "op_breakdown", "profile_model"]


def profile_model(path: str | os.PathLike[str], threads: int = 2, iters: int = 10,
                  warmup: int = 2) -> list[dict[str, Any]]:
    """Run ``path`` with ORT profiling; return the node events of the timed iterations.

    Returns:
        ``[{"name", "op", "dur_us"}]``, one per node execution.
    """
    from dlrmamba_core.runtime.detector import OrtBackend

    with tempfile.TemporaryDirectory(prefix="dlrmamba-prof-") as tmp:
        be = OrtBackend(path, threads=threads, profile_prefix=os.path.join(tmp, "ort"))
        h, w = be.info.input_hw
        rng = np.random.default_rng(0)
        rgb = rng.random((1, 3, h, w), dtype=np.float32)
        thermal = rng.random((1, 1, h, w), dtype=np.float32)
        for _ in range(warmup + iters):
            be.run(rgb, thermal)
        events = json.loads(Path(be.end_profiling()).read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # The first `warmup` runs are in the trace too: keep the last `iters` runs' share.
    per_run = len(nodes) // (warmup + iters)
    nodes = nodes[warmup * per_run:]
    return [{"name": e["name"][: -len("_kernel_time")], "op": e["args"].get("op_name", "?"),
             "dur_us": float(e["dur"])} for e in nodes]


def op_breakdown(events: list[dict[str, Any]], iters: int) -> list[tuple[str, float, float, int]]:
    """(op type, ms per run, share %, nodes per run), slowest first."""
    total: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in events:
        total[e["op"]] += e["dur_us"]
        count[e["op"]] += 1
    grand = sum(total.values()) or 1.0
    rows = [(op, t / 1e3 / iters, 100.0 * t / grand, count[op] // iters)
            for op, t in total.items()]
    return sorted(rows, key=lambda r: -r[1])


_PROJ = ("in_proj/", "x_proj/", "dt_proj/", "out_proj/")


_LEVEL = {"0": "P3", "1": "P4", "2": "P5"}


def _stage(prefix: str) -> str:
    """"/backbone/stages.1/blocks.0" -> "P4 block 0" (the stage's pyramid level)."""
    parts = prefix.strip("/").split("/")
    level = next((_LEVEL.get(p.split(".")[1], p) for p in parts if p.startswith("stages.")),
                 "?")
    block = next((p.split(".")[1] for p in parts if p.startswith("blocks.")), "?")
    return f"{level} block {block}"


def categorize_nodes(path: str | os.PathLike[str], detail: bool = False) -> dict[str, str]:
    """Map each node name of the ONNX graph to a coarse part of the detector.

    SS2D nodes are told apart by their submodule (``in_proj`` ... ``out_norm``) and, for the
    nodes the SS2D ``forward`` makes itself, by their position in the graph (the exporter
    writes nodes in execution order): before ``x_proj`` = cross-scan (and the conv's SiLU),
    from ``dt_proj`` to the ``Cast`` that ends the scan (the last one before the first
    ``Gather`` after the scan's ``ReduceSum``) = selective scan, then cross-merge until
    ``out_norm``, then the output gate. Other nodes go by name prefix and op type.

    With ``detail`` the parts are finer and per block: ``"P4 block 0 SS2D in_proj"``, ``x_proj``,
    ``dt_proj``, ``out_proj``, ``conv``, ``cross-scan``, ``scan``, ``cross-merge``, ``gate``,
    ``"P5 block 1 MLP"``, and fusion / backbone convs / neck / head / box decode apart.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    out: dict[str, str] = {}
    blocks: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for node in graph.node:
        name, op = node.name, node.op_type
        if "/ssm/" in name:
            prefix, rest = name.split("/ssm/", 1)
            blocks[prefix].append((rest, op))
            continue
        if detail:
            out[name] = _detail_other(name, op)
        elif op in ("LayerNormalization", "BatchNormalization") or "/norm" in name:
            out[name] = "norms"
        elif "/mlp/" in name:
            out[name] = "VSS MLP (fc1, GELU, fc2)"
        elif name.startswith("/backbone/stages.") and op == "Transpose":
            out[name] = "layout (stage-boundary transposes, ORT reorders)"
        elif name.startswith("/backbone"):
            out[name] = "backbone convs (stem, conv stage, downsampling) + residual adds"
        elif name.startswith("/fusion"):
            out[name] = "RGB-thermal fusion"
        else:
            out[name] = "neck, head, box decode"
    for prefix, nodes in blocks.items():
        names = [r for r, _ in nodes]
        first_x = min(i for i, r in enumerate(names) if r.startswith("x_proj/"))
        last_dt = max(i for i, r in enumerate(names) if r.startswith("dt_proj/"))
        norm_i = min(i for i, r in enumerate(names) if r.startswith("out_norm/"))
        last_sum = max(i for i, (_, op) in enumerate(nodes[:norm_i]) if op == "ReduceSum")
        first_gather = min(i for i, (_, op) in enumerate(nodes) if op == "Gather"
                           and i > last_sum)
        scan_end = max(i for i, (_, op) in enumerate(nodes[:first_gather]) if op == "Cast")
        conv_i = min(i for i, r in enumerate(names) if r.startswith("conv/"))
        for i, (rest, op) in enumerate(nodes):
            if rest.startswith(_PROJ):
                cat = "SS2D projections (in, x, dt, out)"
            elif rest.startswith("out_norm/"):
                cat = "norms"
            elif rest.startswith("conv/") or (conv_i < i <= conv_i + 2
                                               and op in ("Sigmoid", "Mul")):
                cat = "SS2D depthwise conv + SiLU"
            elif i < first_x:
                cat = "cross-scan / cross-merge (transposes, flips, concats)"
            elif last_dt < i <= scan_end:
                cat = "selective scan (chunked)"
            elif scan_end < i < norm_i:
                cat = "cross-scan / cross-merge (transposes, flips, concats)"
            elif i > norm_i:
                cat = "SS2D output gate"
            else:
                cat = "selective scan (chunked)"  # x_proj split, dt reshapes
            if detail:
                # Before the conv: the split of in_proj's output and the permute to (B, E, H, W)
                # the depthwise conv needs: counted with the conv.
                cat = _detail_ss2d(prefix, rest, "SS2D depthwise conv + SiLU" if i < conv_i
                                   and cat.startswith("cross-scan") else cat, i < first_x)
            out[f"{prefix}/ssm/{rest}"] = cat
    return out


def _detail_ss2d(prefix: str, rest: str, coarse: str, before_x_proj: bool) -> str:
    """The per-block SS2D part of a node whose coarse part is ``coarse``."""
    stage = _stage(prefix)
    for proj in ("in_proj", "x_proj", "dt_proj", "out_proj"):
        if rest.startswith(proj + "/"):
            return f"{stage} SS2D {proj}"
    if coarse.startswith("cross-scan"):
        return f"{stage} SS2D {'cross-scan' if before_x_proj else 'cross-merge'}"
    short = {"SS2D depthwise conv + SiLU": "conv", "selective scan (chunked)": "scan",
             "SS2D output gate": "gate", "norms": "out_norm"}
    return f"{stage} SS2D {short.get(coarse, coarse)}"


def _detail_other(name: str, op: str) -> str:
    """The detailed part of a node outside the SS2D blocks."""
    if name.startswith("/backbone/stages.") and "/blocks." in name:
        prefix = name.split("/mlp/")[0] if "/mlp/" in name else name.rsplit("/", 1)[0]
        what = "MLP" if "/mlp/" in name else "norm + residual"
        return f"{_stage(prefix)} {what}"
    if name.startswith("/backbone/stages.") and op == "Transpose":
        return "layout (stage-boundary transposes, ORT reorders)"
    for head, label in (("/fusion", "RGB-thermal fusion"), ("/backbone/stem", "stem"),
                        ("/backbone/downs", "downsampling"),
                        ("/backbone/stages", "conv stages (inverted residual)"),
                        ("/neck", "neck (PAN)"), ("/head", "head (box + class branches)")):
        if name.startswith(head):
            return label
    return "box decode (DFL softmax, anchors) and output"


def _category(name: str, op: str, cats: dict[str, str]) -> str:
    """The category of a profiled node. ORT renames the nodes it rewrites (NCHWc convs
    ``<output>_nchwc``, fusions ``<node>/QuickGeluFusion/``, ``ReorderOutput_token_*``): fall
    back on the longest module path of the graph that the name starts with."""
    if name in cats:
        return cats[name]
    if name.startswith(("Reorder", "Transpose_token")):
        return "layout (stage-boundary transposes, ORT reorders)"
    parts = name.strip("/").split("/")
    for k in range(len(parts), 0, -1):
        prefix = "/" + "/".join(parts[:k])
        if prefix in cats:
            return cats[prefix]
        hits = {c for n, c in cats.items() if n.startswith(prefix + "/")}
        if len(hits) == 1:
            return hits.pop()
    return f"other ({op})"


def compare_exporters(variant: str, input_hw: tuple[int, int], threads: int,
                      rounds: int = 5, iters: int = 5) -> dict[str, Any]:
    """Export ``variant`` (untrained) with both exporters; time both ORT graphs alternately.

    Returns:
        per exporter: file size (MB), node count, median latency (ms).
    """
    import onnx
    import torch

    from dlrmamba_core.deploy.export import export_model_to_onnx
    from dlrmamba_core.models import build_model
    from dlrmamba_core.models.measure import p50_and_ratio, random_pair, time_alternately
    from dlrmamba_core.runtime.detector import OrtBackend
    from dlrmamba_core.runtime.metadata import ModelInfo

    torch.manual_seed(0)
    model = build_model(variant, 7).eval()
    info = ModelInfo([f"c{i}" for i in range(7)], input_hw, variant, "bench", "n/a",
                     {"mode": "percentile"})
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dlrmamba-exp-") as tmp:
        backends = {}
        for name, dyn in (("torchscript", False), ("dynamo", True)):
            p = Path(tmp) / f"{name}.onnx"
            t0 = time.perf_counter()
            export_model_to_onnx(model, info, p, dynamo=dyn)
            proto = onnx.load(str(p))
            out[name] = {"export_s": time.perf_counter() - t0,
                         "mb": p.stat().st_size / 1e6, "nodes": len(proto.graph.node)}
            backends[name] = OrtBackend(p, threads=threads)
        rgb, th = random_pair(input_hw)
        times = time_alternately({name: partial(be.run, rgb, th)
                                  for name, be in backends.items()}, rounds, iters)
    for name, v in p50_and_ratio(times, "torchscript").items():
        out[name]["p50_ms"] = v["p50_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dlrmamba_core.deploy.profile``."""
    p = argparse.ArgumentParser(prog="python -m dlrmamba_core.deploy.profile",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", help=".onnx file to profile")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--top", type=int, default=12, help="operator types / nodes to list")
    p.add_argument("--depth", type=int, default=2, help="name levels for the module table")
    p.add_argument("--compare-exporters", metavar="VARIANT", default=None)
    p.add_argument("--input-size", default="512x640", metavar="HxW")
    p.add_argument("--parts", action="store_true",
                   help="also print time per part of the detector (scan, cross-scan, ...)")
    p.add_argument("--regions", action="store_true",
                   help="also print time per region: each block's SS2D parts (in_proj, conv, "
                        "x_proj, dt_proj, cross-scan, scan, cross-merge, out_proj), MLPs, "
                        "fusion, neck, head")
    args = p.parse_args(argv)
    if args.compare_exporters:
        from dlrmamba_core.deploy.cli import parse_hw

        res = compare_exporters(args.compare_exporters, parse_hw(args.input_size),
                                args.threads)
        print(f"| exporter | ONNX MB | nodes | export s | ORT p50 ms ({args.threads} threads, "
              f"{args.input_size}) |\n|---|---|---|---|---|")
        for name, v in res.items():
            print(f"| {name} | {v['mb']:.2f} | {v['nodes']} | {v['export_s']:.1f} | "
                  f"{v['p50_ms']:.1f} |")
        return 0
    if not args.model:
        p.error("give a model file or --compare-exporters VARIANT")
    events = profile_model(args.model, args.threads, args.iters)
    rows = op_breakdown(events, args.iters)
    total = sum(r[1] for r in rows)
    print(f"{args.model}: {total:.1f} ms of kernel time per run ({args.threads} threads, "
          f"{args.iters} runs)\n")
    print("| op type | ms / run | share % | nodes |\n|---|---|---|---|")
    for op, ms, share, n in rows[: args.top]:
        print(f"| {op} | {ms:.2f} | {share:.1f} | {n} |")
    per_block: dict[str, float] = defaultdict(float)
    for e in events:
        # "/backbone/stages.1/blocks.0/ssm/Sub_3" -> "/backbone/stages.1/blocks.0/ssm"
        parts = e["name"].split("/")
        per_block["/".join(parts[: args.depth + 1]) or e["name"]] += e["dur_us"] / 1e3
    print(f"\n| module (first {args.depth} name levels) | ms / run | share % |\n|---|---|---|")
    for name, ms in sorted(per_block.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {name[:70]} | {ms / args.iters:.2f} | {100 * ms / (total * args.iters):.1f} |")
    ssm = sum(e["dur_us"] for e in events if "/ssm/" in e["name"]) / 1e3 / args.iters
    print(f"\nnodes inside SS2D blocks ('/ssm/' in the name): {ssm:.1f} ms / run = "
          f"{100 * ssm / total:.1f} % of kernel time")
    per_node: dict[str, float] = defaultdict(float)
    ops: dict[str, str] = {}
    for e in events:
        per_node[e["name"]] += e["dur_us"] / 1e3 / args.iters
        ops[e["name"]] = e["op"]
    print("\n| slowest nodes | op | ms / run |\n|---|---|---|")
    for name, ms in sorted(per_node.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"| {name[:70]} | {ops[name]} | {ms:.2f} |")
    if args.parts:
        cats = categorize_nodes(args.model)
        per_part: dict[str, float] = defaultdict(float)
        nodes_in: dict[str, int] = defaultdict(int)
        for name, ms in per_node.items():
            part = _category(name, ops[name], cats)
            per_part[part] += ms
            nodes_in[part] += 1
        print("\n| part of the detector | ms / run | share % | nodes |\n|---|---|---|---|")
        for part, ms in sorted(per_part.items(), key=lambda kv: -kv[1]):
            print(f"| {part} | {ms:.2f} | {100 * ms / total:.1f} | {nodes_in[part]} |")
    if args.regions:
        _print_regions(args.model, per_node, ops, total)
    return 0


def _print_regions(model: str, per_node: dict[str, float], ops: dict[str, str],
                   total: float) -> None:
    """Time per detailed region (graph order), with node counts and each region's top op."""
    cats = categorize_nodes(model, detail=True)
    per: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    top: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, ms in per_node.items():
        region = _category(name, ops[name], cats)
        per[region] += ms
        count[region] += 1
        top[region][ops[name]] += ms
    head = ["RGB-thermal fusion", "stem", "downsampling", "conv stages (inverted residual)"]
    tail = ["neck (PAN)", "head (box + class branches)",
            "box decode (DFL softmax, anchors) and output",
            "layout (stage-boundary transposes, ORT reorders)"]
    parts = ["SS2D in_proj", "SS2D conv", "SS2D cross-scan", "SS2D x_proj", "SS2D dt_proj",
             "SS2D scan", "SS2D cross-merge", "SS2D out_norm", "SS2D gate", "SS2D out_proj",
             "norm + residual", "MLP"]

    def key(r: str) -> tuple[int, str, int]:
        if r in head:
            return (0, "", head.index(r))
        if " block " in r:  # "P4 block 0 SS2D scan": by level and block, then SS2D order
            where, _, part = r.partition(" block ")
            num, _, part = part.partition(" ")
            return (1, f"{where} {int(num):03d}", parts.index(part) if part in parts else 99)
        if r in tail:
            return (2, "", tail.index(r))
        return (3, r, 0)

    rows = sorted(per, key=key)
    print("\n| region | ms / run | share % | nodes run | slowest op |\n"
          "|---|---|---|---|---|")
    for r in rows:
        op, op_ms = max(top[r].items(), key=lambda kv: kv[1])
        print(f"| {r} | {per[r]:.2f} | {100 * per[r] / total:.1f} | {count[r]} | "
              f"{op} ({op_ms:.2f}) |")


if __name__ == "__main__":
    sys.exit(main())
