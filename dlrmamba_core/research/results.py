"""Regenerate ``docs/results.md`` from the pipeline's results JSON.

    python -m dlrmamba_core.research.results [--results models/results_synth.json]
        [--out docs/results.md] [--threads 2] [--runs 30]

Accuracy (COCO mAP on the SYNTHETIC test split) comes from the results JSON written by
``research.pipeline`` on the GPU machine. Everything else is measured here, by this script:
parameters and GFLOPs (``torch.utils.flop_counter.FlopCounterMode``, one frame at the
model's input size, multiply-add = 2 FLOPs) of each architecture, and CPU latency of its ONNX
export in onnxruntime (batch 1, the given intra-op threads, median over ``--runs`` after
warm-up; models are timed round-robin so a busy machine slows all of them alike). The CPU
model is read from ``/proc/cpuinfo``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from pathlib import Path
import statistics
import sys
import tempfile
from typing import Any

from dlrmamba_core.engine.fileio import write_text
from dlrmamba_core.errors import ModelFileError
from dlrmamba_core.sysinfo import cpu_model

log = logging.getLogger("dlrmamba.results")

DEFAULT_RESULTS = Path("models/results_synth.json")
DEFAULT_OUT = Path("docs/results.md")
# Phase C of the pipeline: (row label, runs with that loss setting, weight switched off).
LOSS_ROWS = (("all four losses (paper weights)", ("student_sad", "student_sad_seed2"), None),
             ("without L_SVD", ("sad_no_svd",), "svd"),
             ("without L_state", ("sad_no_state",), "state"),
             ("without L_feat", ("sad_no_feat",), "feat"),
             ("task loss only (no distillation)", ("student_nodistill",
                                                   "student_nodistill_seed2"), "all"))


def _arch_key(cfg: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in cfg.items() if k != "variant"}, sort_keys=True)


def measure_architectures(configs: dict[str, dict[str, Any]], input_hw: tuple[int, int],
                          threads: int, runs: int) -> dict[str, dict[str, float]]:
    """Params, GFLOPs and ORT CPU ms per frame for each named config.

    Args:
        configs: {name: DetectorConfig dict}.
        input_hw: (h, w) of the measurement.
        threads: onnxruntime intra-op threads.
        runs: timed runs per model.

    Returns:
        {name: {"params_M", "gflops", "cpu_ms_p50", "cpu_ms_p90"}}.
    """
    from functools import partial

    import torch

    from dlrmamba_core.deploy.export import export_model_to_onnx
    from dlrmamba_core.models import build_from_config
    from dlrmamba_core.models.config import DetectorConfig
    from dlrmamba_core.models.measure import params_and_gflops, random_pair, time_alternately
    from dlrmamba_core.runtime.metadata import ModelInfo
    from dlrmamba_core.runtime.ort_session import ort_session

    torch.set_num_threads(threads)
    h, w = input_hw
    out: dict[str, dict[str, float]] = {}
    sessions: dict[str, Any] = {}
    rgb, thermal = random_pair(input_hw)
    feeds = {"rgb": rgb, "thermal": thermal}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg_dict in configs.items():
            cfg = DetectorConfig.from_dict(cfg_dict)
            torch.manual_seed(0)
            model = build_from_config(cfg).eval()
            params, gflops = params_and_gflops(model, torch.from_numpy(rgb),
                                               torch.from_numpy(thermal))
            info = ModelInfo([f"c{i}" for i in range(cfg.num_classes)], (h, w), cfg.variant,
                             "results", "n/a")
            path = Path(tmp) / f"{name}.onnx"
            export_model_to_onnx(model, info, path)
            sessions[name] = ort_session(path, threads)
            out[name] = {"params_M": round(params / 1e6, 3), "gflops": round(gflops, 2),
                         "onnx_MB": round(path.stat().st_size / 1e6, 2)}
        per_round = time_alternately({name: partial(sess.run, None, feeds)
                                      for name, sess in sessions.items()}, runs, warmup=3)
    for name, rounds in per_round.items():
        ts = sorted(t for r in rounds for t in r)
        out[name]["cpu_ms_p50"] = round(statistics.median(ts), 1)
        out[name]["cpu_ms_p90"] = round(ts[int(0.9 * (len(ts) - 1))], 1)
    return out


def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _phases_of_runs() -> dict[str, str]:
    """{run name: phase letter} of the pipeline's run list (``research/runs.yaml``)."""
    from dlrmamba_core.research.pipeline import load_runs

    return load_runs().phase_of()


def _phase_a_order() -> list[str]:
    """The phase-A runs in the order of the run list (the teacher first)."""
    return [name for name, phase in _phases_of_runs().items() if phase == "A"]


def _phase_letter(runs: list[str], index: int) -> str:
    """The pipeline phase a set of runs belongs to, from the run list.

    All in phase A: "A"; any in C: "C"; any in B: "B"; all in S and V: "S", "V" or "S+V";
    otherwise the set's position (``index + 1``).
    """
    phase_of = _phases_of_runs()
    base = {r.split("/")[0] for r in runs}
    phases = {phase_of.get(b) for b in base}
    if base and phases == {"A"}:
        return "A"
    for letter in ("C", "B"):
        if letter in phases:
            return letter
    if base and phases <= {"S", "V"}:  # faster architectures, seed variants
        return "+".join(p for p in ("S", "V") if p in phases)
    return str(index + 1)


def _phase_lines(results: dict[str, Any]) -> list[str]:
    """How each pipeline phase trained (merged results list them; see ``research.ship``)."""
    phases = results.get("phases") or [{"models": sorted(k for k, m in results["models"].items()
                                                         if not m.get("device")),
                                        "settings": results.get("settings") or {},
                                        **{k: results.get(k) for k in ("created_utc",
                                                                       "device")}}]
    lines = ["## Training runs", "",
             "Every run gets a wall-clock budget (`--fit-to-time`: the epoch count is cut so the "
             "learning-rate schedule ends within it); runs of a phase share one GPU. These "
             "budgets are short: the numbers below are of briefly trained models.", "",
             "| phase | runs | device | date (UTC) | minutes per run | parallel runs | batch | "
             "lr |", "|---|---|---|---|---:|---:|---:|---:|"]
    for i, ph in enumerate(phases):
        st = ph.get("settings") or {}
        b = st.get("phase_b_min")
        minutes = st.get("phase_a_min") if b is None else b
        lines.append(f"| {_phase_letter(ph.get('models', []), i)} | "
                     f"{', '.join(f'`{m}`' for m in ph.get('models', []))} | "
                     f"{ph.get('device', '')} | {str(ph.get('created_utc', ''))[:16]} | "
                     f"{_fmt(minutes, 1)} | {_fmt(st.get('parallel'), 0)} | "
                     f"{_fmt(st.get('batch_size'), 0)} | {_fmt(st.get('lr'), 3)} |")
    in_phases = {m for ph in phases for m in ph.get("models", [])}
    for key, m in results["models"].items():
        if key not in in_phases and m.get("device"):
            lines.append("")
            if m.get("note"):
                lines.append(f"`{key}`: {m['note']} (`research.ship add-run`, the same test "
                             "split).")
                continue
            lines.append(f"`{key}` was trained outside the pipeline: {m.get('role', '')}, on "
                         f"{m['device']}" + (f", {m['train_seconds']:.0f} s" if
                                             m.get("train_seconds") else "")
                         + (f", starting from `{m['based_on']}`" if m.get("based_on") else "")
                         + "; evaluated on the same test split by `research.ship add-run`.")
    return [*lines, ""]


def _mean_map50(models: dict[str, Any], runs: tuple[str, ...],
                stage: str) -> tuple[float | None, int]:
    """Mean test mAP50 of ``run/stage`` over the runs that are in the results, and their count."""
    vals = [float(models[f"{r}/{stage}"]["test"]["mAP50"]) for r in runs
            if (models.get(f"{r}/{stage}") or {}).get("test")]
    return (sum(vals) / len(vals) if vals else None), len(vals)


def _loss_lines(models: dict[str, Any]) -> list[str]:
    """Phase C: each distillation loss switched off, and the seed repeats (when present)."""
    if not any(k.startswith("sad_no_") for k in models):
        return []
    from dlrmamba_core.engine.distill import DistillWeights

    paper = DistillWeights()
    lines = ["", "## Distillation losses, one switched off at a time", "",
             "SVD init -> SAD -> fine-tune from the same teacher with one loss weight set to 0 "
             "(phase C; `student_sad` and `student_nodistill` are the phase-B runs, the "
             "`_seed2` runs the same recipe with seed 2). mAP50 after the distillation stage and "
             "after the fine-tune; the mean is over the runs of the row. Every run had the same "
             "minutes; how many shared the GPU in each phase is in Training runs.", "",
             "| losses | weights task / svd / state / feat | runs | mAP50 after SAD | "
             "mAP50 after fine-tune | mean mAP50 | mean mAP50:95 |",
             "|---|---|---|---|---|---:|---:|"]
    for label, runs, off in LOSS_ROWS:
        present = [r for r in runs if f"{r}/finetune" in models]
        if not present:
            continue
        w = {k: getattr(paper, k) for k in ("task", "svd", "state", "feat")}
        for k in w:
            if off == k or (off == "all" and k != "task"):
                w[k] = 0.0
        per = [(models.get(f"{r}/distill") or {}).get("test") or {} for r in present]
        fin = [models[f"{r}/finetune"]["test"] for r in present]
        lines.append(
            f"| {label} | {' / '.join(f'{v:g}' for v in w.values())} | "
            + ", ".join(f"`{r}`" for r in present) + " | "
            + ", ".join(_fmt(t.get("mAP50")) for t in per) + " | "
            + ", ".join(_fmt(t["mAP50"]) for t in fin) + " | "
            + f"{_fmt(sum(t['mAP50'] for t in fin) / len(fin))} | "
            + f"{_fmt(sum(t['mAP50_95'] for t in fin) / len(fin))} |")
    spreads = []
    for base in ("student_sad", "student_nodistill"):
        a, b = (models.get(f"{base}/finetune") or {}).get("test"), (
            models.get(f"{base}_seed2/finetune") or {}).get("test")
        if a and b:
            spreads.append(f"`{base}` {abs(a['mAP50'] - b['mAP50']):.1f}")
    if spreads:
        lines += ["", "Two seeds of one recipe differ by " + " and ".join(spreads)
                  + " mAP50 (after fine-tune): differences between rows smaller than that "
                  "are noise."]
    return lines


def _condition_lines(models: dict[str, Any]) -> list[str]:
    """mAP50 per synthetic condition (``research.ship conditions``), when measured."""
    rows = {k: m["test_by_condition"] for k, m in models.items() if m.get("test_by_condition")}
    if not rows:
        return []
    from dlrmamba_core.data.synthetic import CONDITIONS

    conds = [c for c in CONDITIONS if any(c in r for r in rows.values())]
    first = next(iter(rows.values()))
    lines = ["", "## mAP50 per condition", "",
             "Each run's checkpoint evaluated on the same test split, split by the frame's "
             "condition (`python -m dlrmamba_core.research.ship conditions`, CPU; its overall "
             "mAP50 reproduces the recorded one within 1 point). Frames per condition: "
             + ", ".join(f"{c} {first[c]['num_images']}" for c in conds if c in first)
             + ". The best single-camera row of each column is what fusion has to beat.", "",
             "| model | modality | " + " | ".join(conds) + " |",
             "|---|---|" + "---:|" * len(conds)]
    for key, r in rows.items():
        cells = [_fmt((r.get(c) or {}).get("mAP50")) for c in conds]
        lines.append(f"| `{key}` | {models[key].get('modality', '')} | " + " | ".join(cells)
                     + " |")
    return lines


def render(results: dict[str, Any], arch: dict[str, dict[str, float]], arch_of: dict[str, str],
           threads: int, runs: int, cpu: str, front: list[str] | None = None) -> str:
    """The markdown of docs/results.md (``front``: the lines of :func:`front_lines`)."""
    # Phase-A runs first (the teacher on top), then the rest in the order of the results.
    order = _phase_a_order()
    models = dict(sorted(results["models"].items(),
                         key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    hw = results["input_hw"]
    lines = [
        "# Results on the synthetic benchmark",
        "",
        "<!-- generated by `python -m dlrmamba_core.research.results`; do not edit by hand -->",
        "",
        f"All accuracy numbers are COCO mAP (pycocotools) on the **SYNTHETIC** test split "
        f"({results['data']['splits']['test']} frames of `dlrmamba_core.data.synthetic`, seed "
        f"{results['data']['seed']}), trained on its train split "
        f"({results['data']['splits']['train']} frames) by `python -m "
        "dlrmamba_core.research.pipeline` "
        f"on {results['device']} (torch {results['torch']}, {results['created_utc']}). "
        "They say how the models rank on this generator, not how they do on real cameras.",
        "",
        f"Params and GFLOPs: `FlopCounterMode`, one frame at {hw[0]}x{hw[1]} "
        "(1 multiply-add = 2 FLOPs). CPU ms: onnxruntime, batch 1, "
        f"{threads} intra-op threads, median (p50) and p90 of {runs} runs, on **{cpu}** "
        "(a shared development machine; models timed round-robin, so compare ratios).",
        "",
        *_phase_lines(results),
        "## All models",
        "",
        "| model | role | modality | mAP50 | mAP50:95 | params (M) | GFLOPs | CPU ms p50 |"
        " CPU ms p90 | train s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    shipped = results.get("_shipped")

    def role(key: str, m: dict[str, Any]) -> str:
        r = str(m.get("role", "")).replace(" (shipped)", "")
        return f"**shipped** ({r})" if key == shipped else r

    for key, m in models.items():
        test = m.get("test") or {}
        a = arch.get(arch_of.get(key, ""), {})
        lines.append(
            f"| `{key}` | {role(key, m)} | {m.get('modality', '')} | "
            f"{_fmt(test.get('mAP50'))} | {_fmt(test.get('mAP50_95'))} | "
            f"{_fmt(a.get('params_M'), 2)} | {_fmt(a.get('gflops'), 2)} | "
            f"{_fmt(a.get('cpu_ms_p50'))} | {_fmt(a.get('cpu_ms_p90'))} | "
            f"{_fmt(m.get('train_seconds'), 0)} |")

    lines += front or []

    def get(key: str) -> float | None:
        t = (models.get(key) or {}).get("test")
        return None if t is None else float(t["mAP50"])

    lines += ["", "## Ablation (paper Table: full rank / low rank / + distillation / "
              "+ fine-tune)", "",
              "| step | model | mAP50 | mAP50:95 | params (M) | CPU ms p50 |",
              "|---|---|---:|---:|---:|---:|"]
    steps = [("full rank (teacher)", "teacher"),
             ("low rank, random init, task loss", "student_scratch"),
             ("low rank, SVD init, task loss only", "student_nodistill/finetune"),
             ("+ Structure-Aware Distillation", "student_sad/distill"),
             ("+ fine-tune", "student_sad/finetune")]
    for label, key in steps:
        m = models.get(key) or {}
        t = m.get("test") or {}
        a = arch.get(arch_of.get(key, ""), {})
        lines.append(f"| {label} | `{key}` | {_fmt(t.get('mAP50'))} | "
                     f"{_fmt(t.get('mAP50_95'))} | {_fmt(a.get('params_M'), 2)} | "
                     f"{_fmt(a.get('cpu_ms_p50'))} |")

    lines += ["", "## Rank-ratio sweep (SAD, same teacher)", "",
              "| rank ratio | model | mAP50 | mAP50:95 | params (M) | GFLOPs | CPU ms p50 |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    sweep = sorted(((m.get("rank_ratio"), k) for k, m in models.items()
                    if k.startswith("sweep_") or k == "student_sad/distill"),
                   key=lambda x: x[0] or 0)
    for r, key in sweep:
        t = models[key].get("test") or {}
        a = arch.get(arch_of.get(key, ""), {})
        lines.append(f"| {_fmt(r, 2)} | `{key}` | {_fmt(t.get('mAP50'))} | "
                     f"{_fmt(t.get('mAP50_95'))} | {_fmt(a.get('params_M'), 2)} | "
                     f"{_fmt(a.get('gflops'), 2)} | {_fmt(a.get('cpu_ms_p50'))} |")
    shipped_r = (models.get("student_sad/distill") or {}).get("rank_ratio")
    if shipped_r is not None:
        lines.append("")
        lines.append(f"The {shipped_r:.2f} row is the distillation phase of `student_sad` "
                     "(before fine-tuning); sweep rows run SAD only, for the same minutes, so "
                     "compare them with each other, not with the fine-tuned model.")
    if not any(k.startswith("sweep_") for _, k in sweep):
        lines.append("")
        lines.append("**The sweep runs (`sweep_r050` .. `sweep_r065`) are not in these "
                     "results yet**: they did not fit in the GPU time of the sessions so far.")

    lines += _loss_lines(models)
    lines += _condition_lines(models)
    lines += ["", "## Targets of issue 5", "", "| target | measured | met |", "|---|---|---|"]
    sad, teacher, nod = get("student_sad/finetune"), get("teacher"), get(
        "student_nodistill/finetune")
    scratch = get("student_scratch")
    fused, rgb, th = get("student_scratch"), get("rgb"), get("thermal")

    def row(label: str, lhs: float | None, rhs: float | None, margin: float) -> None:
        if lhs is None or rhs is None:
            lines.append(f"| {label} | missing | no |")
            return
        diff = lhs - rhs
        ok = diff >= margin
        lines.append(f"| {label} | {lhs:.1f} vs {rhs:.1f} (diff {diff:+.1f}) | "
                     f"{'yes' if ok else f'no, short by {margin - diff:.1f}'} |")

    row("distilled student >= teacher - 1.0 mAP50", sad, teacher, -1.0)
    row("distilled student >= undistilled (SVD init, task only) + 2.0", sad, nod, 2.0)
    sad_m = _mean_map50(models, ("student_sad", "student_sad_seed2"), "finetune")
    nod_m = _mean_map50(models, ("student_nodistill", "student_nodistill_seed2"), "finetune")
    if sad_m[1] > 1 and nod_m[1] > 1:
        row(f"the same, mean of {sad_m[1]} seeds each", sad_m[0], nod_m[0], 2.0)
    row("distilled student >= low rank from scratch + 2.0", sad, scratch, 2.0)
    best_single = max([v for v in (rgb, th) if v is not None], default=None)
    row("fusion >= best single modality + 5.0 (same architecture, from scratch)", fused,
        best_single, 5.0)
    lines += ["", "Single-modality models are the fused low-rank architecture trained from "
              "scratch with the other camera's input zeroed (`--modality rgb|thermal`); the "
              "fused row of that comparison is `student_scratch` (same architecture and "
              "recipe).", "",
              f"_Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} "
              "from `" + results.get("_source", str(DEFAULT_RESULTS)) + "`._", ""]
    return "\n".join(lines)


def _on_front_plot(key: str, models: dict[str, Any]) -> bool:
    """Fused models only, one point per run (the fine-tuned model where there is one), no
    loss ablations or seed repeats (their latency equals the student's): a readable front."""
    m = models[key]
    if m.get("modality", "fused") != "fused" or key.startswith("sad_no_") or "_seed" in key:
        return False
    return not (key.endswith("/distill") and key.replace("/distill", "/finetune") in models)


def front_rows(models: dict[str, Any], arch_of: dict[str, str],
               ms: dict[str, dict[str, dict[str, float]]]) -> list[dict[str, Any]]:
    """One row per evaluated model: mAP50 and CPU ms p50 at each measured size, and whether it
    is on the accuracy-vs-latency front (no other model is both faster and more accurate) at
    the largest size.

    Args:
        models: results["models"].
        arch_of: model key -> key of the architecture measured for it.
        ms: {size label "HxW": measure_architectures() output}.
    """
    rows = []
    for key, m in models.items():
        test = m.get("test") or {}
        if test.get("mAP50") is None or key not in arch_of or not _on_front_plot(key, models):
            continue
        row: dict[str, Any] = {"model": key, "mAP50": float(test["mAP50"]), "ms": {}}
        for size, arch in ms.items():
            a = arch.get(arch_of[key])
            if a is not None:
                row["ms"][size] = a["cpu_ms_p50"]
        rows.append(row)
    if ms:
        big = max(ms, key=lambda sz: int(sz.split("x")[0]) * int(sz.split("x")[1]))
        for r in rows:
            t = r["ms"].get(big)
            r["front"] = t is not None and not any(
                o is not r and o["ms"].get(big) is not None and o["ms"][big] <= t
                and o["mAP50"] >= r["mAP50"] and (o["ms"][big] < t or o["mAP50"] > r["mAP50"])
                for o in rows)
    return rows


def draw_front(rows: list[dict[str, Any]], path: Path, threads: int, cpu: str) -> Path:
    """mAP50 against CPU ms (one panel per measured size), front points joined; PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrmamba_core.engine.fileio import save_figure

    sizes = sorted({s for r in rows for s in r["ms"]},
                   key=lambda sz: int(sz.split("x")[0]) * int(sz.split("x")[1]))
    fig, axes = plt.subplots(1, max(1, len(sizes)), figsize=(6.2 * max(1, len(sizes)), 4.8),
                             squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=False):
        pts = [(r["ms"][size], r["mAP50"], r["model"]) for r in rows if size in r["ms"]]
        for x, y, name in pts:
            fam = name.split("/")[0]
            color = ("tab:green" if fam == "cnn" else "tab:red" if fam.startswith("teacher")
                     else "tab:blue")
            ax.scatter(x, y, s=22, color=color, zorder=3)
            ax.annotate(name.replace("/finetune", "/ft").replace("/distill", "/d"), (x, y),
                        fontsize=6, xytext=(3, 2), textcoords="offset points")
        front, best = [], -1.0
        for x, y, _ in sorted(pts):
            if y > best:
                front.append((x, y))
                best = y
        if front:
            ax.plot(*zip(*front, strict=True), color="0.5", lw=1, ls="--", zorder=2,
                    label="front (faster and more accurate than the rest)")
        ax.set_xlabel(f"CPU ms per frame at {size} (ORT fp32, {threads} threads, p50)")
        ax.set_ylabel("mAP50, SYNTHETIC test split")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"input {size}", fontsize=9)
    fig.suptitle(f"accuracy vs CPU latency ({cpu}, shared machine: compare ratios)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig)


def front_lines(rows: list[dict[str, Any]], png: str | None, trained_hw: list[int]) -> list[str]:
    """The front section of docs/results.md: the plot and its table (ratios to the cnn)."""
    sizes = sorted({s for r in rows for s in r["ms"]},
                   key=lambda sz: int(sz.split("x")[0]) * int(sz.split("x")[1]))
    cnn = next((r for r in rows if r["model"] == "cnn"), None)
    lines = ["", "## Accuracy vs CPU latency (the front)", ""]
    if png:
        lines += [f"![accuracy vs CPU ms]({png})", ""]
    lines += [f"Every model was trained at {trained_hw[0]}x{trained_hw[1]}; the larger size "
              "times the same architecture (untrained copy, latency does not depend on the "
              "weights) for the 640x512 targets. `front`: no other model is both faster "
              f"(at {sizes[-1] if sizes else '-'}) and more accurate. Fused models, one row "
              "per run (its fine-tuned model where it has one); the loss ablations, seed "
              "repeats and single-camera runs are in the tables below (same latency as the "
              "student).", "",
              "| model | mAP50 | " + " | ".join(f"CPU ms {s} | / cnn" for s in sizes)
              + " | front |",
              "|---|---:|" + "---:|---:|" * len(sizes) + "---|"]
    for r in sorted(rows, key=lambda r: r["ms"].get(sizes[-1], 1e9) if sizes else 0):
        cells = []
        for s in sizes:
            t = r["ms"].get(s)
            base = cnn["ms"].get(s) if cnn else None
            cells += [_fmt(t), _fmt(t / base, 2) if t is not None and base else "-"]
        lines.append(f"| `{r['model']}` | {r['mAP50']:.1f} | " + " | ".join(cells)
                     + f" | {'yes' if r.get('front') else ''} |")
    return lines


def shipped_run(models_dir: Path) -> str | None:
    """The results key of the default model in ``models_dir`` (from its card), if any."""
    try:
        default = json.loads((models_dir / "default.json").read_text())["model"]
        card = json.loads((models_dir / Path(default).with_suffix(".json")).read_text())
        return str(card["training"]["run"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description="Regenerate docs/results.md")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--front-size", default="512x640", metavar="HxW",
                    help="also time every architecture at this size for the front ('' = no)")
    ap.add_argument("--front-png", type=Path, default=Path("docs/images/front.png"),
                    help="where the accuracy-vs-latency plot goes (linked from --out)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not args.results.is_file():
        raise ModelFileError(f"{args.results}: no results JSON; run the pipeline first")
    results = json.loads(args.results.read_text())
    results["_source"] = str(args.results)
    results["_shipped"] = shipped_run(args.results.parent)
    arch_names: dict[str, str] = {}
    configs: dict[str, dict[str, Any]] = {}
    for key, m in results["models"].items():
        cfg = m.get("config")
        if not cfg:
            continue
        ak = _arch_key(cfg)
        if ak not in arch_names:
            arch_names[ak] = key
            configs[key] = cfg
        m["_arch"] = arch_names[ak]
    arch_of = {k: m["_arch"] for k, m in results["models"].items() if "_arch" in m}
    hw = tuple(results["input_hw"])
    log.info("measuring %d architectures at %s", len(configs), hw)
    arch = measure_architectures(configs, hw, args.threads, args.runs)
    ms = {f"{hw[0]}x{hw[1]}": arch}
    if args.front_size:
        from dlrmamba_core.deploy.cli import parse_hw

        big = parse_hw(args.front_size)
        if big != hw:
            log.info("measuring %d architectures at %s for the front", len(configs), big)
            ms[f"{big[0]}x{big[1]}"] = measure_architectures(configs, big, args.threads,
                                                             args.runs)
    rows = front_rows(results["models"], arch_of, ms)
    png = draw_front(rows, args.front_png, args.threads, cpu_model())
    try:
        rel = str(png.resolve().relative_to(args.out.resolve().parent))
    except ValueError:
        rel = str(png)
    front = front_lines(rows, rel, list(results["input_hw"]))
    md = render(results, arch, arch_of, args.threads, args.runs, cpu_model(), front)
    write_text(args.out, md)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
