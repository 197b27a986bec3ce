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
from typing import Any, NamedTuple

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

# Phase T of the pipeline (issue [teacher]): Structure-Aware Distillation from a teacher trained
# until its val mAP50 stops improving.
T_TEACHER = "teacher_p5_long"
#: (row label, base run) of each phase-T student recipe; each runs as the base run (seed 0) and
#: its repeats ``<base>_seed2`` and ``<base>_seed3`` (:data:`T_REPEATS`).
T_RECIPES = (("SVD init, task loss only", "t_task"),
             ("SVD init + SAD", "t_sad"),
             ("SVD init + SAD without L_SVD", "t_sad_no_svd"),
             ("SVD init + SAD without L_state", "t_sad_no_state"),
             ("SVD init + SAD without L_feat", "t_sad_no_feat"),
             ("random init + SAD", "t_random_sad"),
             ("SVD init + RS4D", "t_rs4d"))
T_REPEATS = ("", "_seed2", "_seed3")
#: The rank sweep of phase T (SAD stage only; results keys ``<run>/distill``).
T_CONT = "teacher_p5_cont"
"""T_TEACHER trained on from its shipped weights (a new warm-up + cosine schedule)."""
T_CONT_STUDENT = "t_task_cont"
"""The control of T_CONT: T_TEACHER's SVD student, task loss only, for the same minutes."""
T_LARGE = "teacher_p5_large"
"""T_TEACHER's layout at the paper's teacher size, from scratch beside T_CONT."""
T_SWEEP = ("t_sweep_r050", "t_sweep_r055", "t_sweep_r060", "t_sweep_r065")
#: Phase D: the `teacher` architecture (SS2D at strides 16 and 32) trained alone first, then its
#: low-rank students with and without SAD over seeds (research/runs.yaml).
class DRound(NamedTuple):
    """One round of phase D: its teacher run and its student recipes (base runs; seeds are
    ``T_REPEATS``). A later round trains the teacher of the one before on (a new lease) and
    distils new students from it."""

    teacher: str
    task: str
    """SVD init from the teacher, task loss only."""
    sad: str
    """SVD init, then SAD, then a fine-tune."""
    random_task: str | None = None
    """Random init (the SVD student's shapes), task loss only: the undistilled student."""
    random_sad: str | None = None
    """Random init, then SAD, then a fine-tune: SAD without the SVD init."""
    more: tuple[tuple[str, str, str], ...] = ()
    """Further recipes of the round: (row label, base run, the recipe it is compared with)."""
    sweep: tuple[str, ...] = ()
    """The round's rank sweep (SAD stage only; results keys ``<run>/distill``)."""
    same_schedule: tuple[str, str] | None = None
    """Two recipes of ``more`` trained for the same fixed epochs (not fitted to minutes): their
    distillation stages are compared epoch by epoch, the same steps at the same learning rate."""

    def recipes(self) -> tuple[str, ...]:
        """The round's student recipes (base runs) that it has."""
        return tuple(r for r in (self.task, self.sad, self.random_task, self.random_sad,
                                 *(m[1] for m in self.more)) if r)


#: The rounds of phase D, in the order they ran.
D_ROUNDS = (DRound("teacher_long", "s_task", "s_sad"),
            DRound("teacher_long_cont", "c_task", "c_sad", "c_random_task", "c_random_sad",
                   more=(("SVD init, task loss only, 7 + 9 epochs (equal steps)", "c_task_eq",
                          ""),
                         ("SVD init + SAD, 7 + 9 epochs (equal steps)", "c_sad_eq",
                          "c_task_eq"),
                         ("rank 0.05: SVD init, task loss only", "c_task_r005", ""),
                         ("rank 0.05: SVD init + SAD", "c_sad_r005", "c_task_r005"),
                         ("SVD init + SAD in the first 2 epochs only", "c_sad_t2", "c_task"),
                         ("SVD init + SAD without L_SVD", "c_sad_no_svd", "c_sad"),
                         ("SVD init + SAD without L_state", "c_sad_no_state", "c_sad"),
                         ("SVD init + SAD without L_feat", "c_sad_no_feat", "c_sad")),
                   sweep=("c_sweep_r050", "c_sweep_r055", "c_sweep_r060", "c_sweep_r065"),
                   same_schedule=("c_sad_eq", "c_task_eq")))
#: The paper's mAP50 per rank ratio of its sweep, {rank ratio: mAP50}. Empty: the paper summary
#: this project works from (``shared/seeds/dlrmamba.txt``: abstract, figure captions, a count
#: of tables) has none of its numbers, and none are made up here.
PAPER_RANK_SWEEP: dict[float, float] = {}
#: A teacher whose best val mAP50 of its last 20% of epochs is less than this above the best
#: before them has flattened out (mAP50 points).
PLATEAU_GAIN = 0.5
#: A flat tail where the learning rate is below this share of its peak is the schedule's end,
#: not evidence that training longer would not help.
LOW_LR = 0.3
#: The loss terms of SAD, in the order of ``DistillWeights`` (``engine.config``).
SAD_TERMS = ("task", "svd", "state", "feat")


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

    All in phase A: "A"; any in C: "C"; any in B: "B"; all in T: "T"; all in S and V: "S",
    "V" or "S+V"; otherwise the set's position (``index + 1``).
    """
    phase_of = _phases_of_runs()
    base = {r.split("/")[0] for r in runs}
    phases = {phase_of.get(b) for b in base}
    if base and phases == {"A"}:
        return "A"
    for letter in ("C", "B"):
        if letter in phases:
            return letter
    if base and phases == {"T"}:  # the converged teacher and its students
        return "T"
    if base and phases <= {"S", "V"}:  # faster architectures, seed variants
        return "+".join(p for p in ("S", "V") if p in phases)
    return str(index + 1)


def _run_list() -> Any:
    from dlrmamba_core.research.pipeline import load_runs

    return load_runs()


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
                     f"{ph.get('device', '')}"
                     + (f" (test metrics on {ph['evaluated_on']}, after the run)"
                        if ph.get("evaluated_on") else "")
                     + f" | {str(ph.get('created_utc', ''))[:16]} | "
                     f"{_fmt(minutes, 1)} | {_fmt(st.get('parallel'), 0)} | "
                     f"{_fmt(st.get('batch_size'), 0)} | {_fmt(st.get('lr'), 3)} |")
    for i, ph in enumerate(phases):
        # A phase of train and distill runs: the table gives the distill runs' minutes; say
        # the train runs' own (they ran first, and the run list may give them other settings).
        st = ph.get("settings") or {}
        trains = [m for m in ph.get("models", []) if "/" not in m]
        if st.get("phase_b_min") is None or not trains or len(trains) == len(ph["models"]):
            continue
        specs = {r.name: r for r in _run_list().runs}
        for run in trains:
            over = " ".join(specs[run].overrides) if run in specs else ""
            lines += ["", f"`{run}` (phase {_phase_letter(ph.get('models', []), i)}, a train "
                      f"run): {_fmt(st.get('phase_a_min'), 1)} min budget before the others "
                      "of its phase started" + (f", with the run list's `{over}`" if over
                                                else "") + "."]
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


def _target_row(label: str, lhs: float | None, rhs: float | None, margin: float) -> str:
    """A row of a targets table: is ``lhs - rhs >= margin`` (mAP50 points)? Measured values,
    their difference and "yes" or how far short; "missing" when either side is."""
    if lhs is None or rhs is None:
        return f"| {label} | missing | no |"
    diff = lhs - rhs
    ok = diff >= margin
    return (f"| {label} | {lhs:.1f} vs {rhs:.1f} (diff {diff:+.1f}) | "
            f"{'yes' if ok else f'no, short by {margin - diff:.1f}'} |")


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


def _test_map(models: dict[str, Any], key: str, metric: str = "mAP50") -> float | None:
    """Test ``metric`` of results key ``key``; None when the key or its test metrics are absent."""
    v = ((models.get(key) or {}).get("test") or {}).get(metric)
    return None if v is None else float(v)


def _has_phase_t(models: dict[str, Any]) -> bool:
    """Whether any run of phase T (teacher, student recipes, sweep) is in the results."""
    names = {T_TEACHER, T_CONT, T_CONT_STUDENT, T_LARGE, *T_SWEEP,
             *(base + r for _, base in T_RECIPES for r in T_REPEATS)}
    return any(k.split("/")[0] in names for k in models)


def _runs_in(models: dict[str, Any], names: set[str]) -> bool:
    """Whether a run of ``names`` (run names, without the ``/distill`` or ``/finetune`` stage)
    is in the results."""
    return any(k.split("/")[0] in names for k in models)


def _seeds(base: str) -> set[str]:
    """The runs of a recipe: its base run and its repeats (:data:`T_REPEATS`)."""
    return {base + r for r in T_REPEATS}


def _round_in(models: dict[str, Any], rnd: DRound) -> bool:
    """Whether a run of this phase-D round (its teacher, a student seed or a sweep run) is in
    the results."""
    return _runs_in(models, {rnd.teacher, *rnd.sweep,
                             *(run for b in rnd.recipes() for run in _seeds(b))})


def _has_phase_d(models: dict[str, Any]) -> bool:
    """Whether any run of phase D (its teacher or a student recipe) is in the results."""
    return any(_round_in(models, rnd) for rnd in D_ROUNDS)


def recipe_stats(models: dict[str, Any], base: str) -> dict[str, Any]:
    """Test mAP of one student recipe (phase T or D) over its seed runs in the results.

    Args:
        models: results["models"].
        base: the recipe's base run (e.g. ``t_sad``).

    Returns:
        ``runs`` (with a fine-tuned test mAP50), ``missing`` (the others), ``mAP50`` (per run,
        after the fine-tune), ``mean``, ``std`` (sample standard deviation; None under 2 runs),
        ``mean_95`` (mAP50:95) and ``distill_mean`` (mAP50 after the distillation stage, over
        the runs that have one); means are None without runs.
    """
    runs = [base + r for r in T_REPEATS]
    present = [r for r in runs if _test_map(models, f"{r}/finetune") is not None]
    m50 = [float(models[f"{r}/finetune"]["test"]["mAP50"]) for r in present]
    m95 = [v for r in present if (v := _test_map(models, f"{r}/finetune", "mAP50_95"))
           is not None]
    dist = [v for r in runs if (v := _test_map(models, f"{r}/distill")) is not None]

    def mean(vals: list[float]) -> float | None:
        return statistics.fmean(vals) if vals else None

    return {"runs": present, "missing": [r for r in runs if r not in present], "mAP50": m50,
            "mean": mean(m50), "std": statistics.stdev(m50) if len(m50) >= 2 else None,
            "mean_95": mean(m95), "distill_mean": mean(dist)}


#: The recipe comparisons the results page states in words: (recipe, against, label).
T_COMPARISONS = (("t_sad", "t_task", "SAD vs SVD init + task loss only"),
                 ("t_rs4d", "t_task", "RS4D vs SVD init + task loss only"),
                 ("t_rs4d", "t_sad", "RS4D vs SAD"),
                 ("t_random_sad", "t_sad", "random init + SAD vs SVD init + SAD"))


def compare_recipes(stats: dict[str, dict[str, Any]],
                    comparisons: tuple[tuple[str, str, str], ...] = T_COMPARISONS) -> list[str]:
    """One line per comparison (default :data:`T_COMPARISONS`) whose two recipes have results:
    the difference of their mean test mAP50, its size against the larger of their seed spreads,
    and Welch's t-test of their per-seed scores (``research.stats``). A difference is called
    better or worse only when the test's two-sided p is below ``stats.ALPHA``; under 2 seeds a
    side there is nothing to test."""
    from dlrmamba_core.research.stats import ALPHA, welch

    out = []
    for a, b, label in comparisons:
        sa, sb = stats.get(a) or {}, stats.get(b) or {}
        if sa.get("mean") is None or sb.get("mean") is None:
            continue
        diff = sa["mean"] - sb["mean"]
        runs = f"{len(sa['runs'])} vs {len(sb['runs'])} seeds"
        if sa["std"] is None or sb["std"] is None:
            verdict = "a side has one seed, so there is no spread to judge it against"
        else:
            spread = max(sa["std"], sb["std"])
            better = "better" if diff > 0 else "worse" if diff < 0 else "no difference"
            test = welch(sa["mAP50"], sb["mAP50"])
            if test is None:
                verdict = f"every seed of both recipes scored the same (spread 0): {better}"
            else:
                verdict = (f"{abs(diff) / spread:.1f}x the seed spread ({spread:.2f}), Welch "
                           f"p = {test.p:.2g}: "
                           + (better if test.p < ALPHA else "no difference shown"))
        out.append(f"- {label}: {sa['mean']:.2f} vs {sb['mean']:.2f} ({diff:+.2f}; {runs}); "
                   f"{verdict}.")
    return out


def stage_cost(curves: dict[str, Any], run: str) -> tuple[int, float] | None:
    """(epochs, mean seconds per epoch) of a stored curve, or None without one."""
    curve = curves.get(run) or {}
    secs = [float(v) for v in curve.get("epoch_s") or [] if v is not None]
    return (len(curve.get("epoch") or []), statistics.fmean(secs)) if secs else None


def _points(curve: dict[str, list[Any]], column: str) -> list[tuple[int, float]]:
    """(epoch, value) of the epochs of a stored curve that logged ``column``."""
    return [(int(e), float(v)) for e, v in zip(curve.get("epoch", []), curve.get(column, []),
                                               strict=False) if v is not None]


def teacher_curve_summary(curve: dict[str, list[Any]]) -> dict[str, Any] | None:
    """Where a learning curve's val mAP50 peaked, and how much its last 20% of epochs added.

    Args:
        curve: a stored curve (``research.ship curves``).

    Returns:
        ``best`` (val mAP50), ``best_epoch`` (the first epoch reaching it), ``epochs`` (the last
        epoch), ``tail_start`` (first epoch of the last 20%), ``tail`` and ``before`` (the best
        val mAP50 from ``tail_start`` on and before it; None without a validation there),
        ``tail_lr_ratio`` (the learning rate at ``tail_start`` over the curve's largest; None
        without an lr column), or None when the curve has no validation.
    """
    pts = _points(curve, "val_mAP50")
    if not pts:
        return None
    n = max(int(e) for e in curve["epoch"])
    best_epoch, best = max(pts, key=lambda p: (p[1], -p[0]))
    tail_start = n - max(1, round(0.2 * n)) + 1
    tail = [v for e, v in pts if e >= tail_start]
    before = [v for e, v in pts if e < tail_start]
    lr = _points(curve, "lr")
    tail_lr = [v for e, v in lr if e == tail_start]
    peak = max((v for _, v in lr), default=0.0)
    return {"best": best, "best_epoch": best_epoch, "epochs": n, "tail_start": tail_start,
            "tail": max(tail) if tail else None, "before": max(before) if before else None,
            "tail_lr_ratio": tail_lr[0] / peak if tail_lr and peak > 0 else None}


def _teacher_sentence(s: dict[str, Any]) -> str:
    """What :func:`teacher_curve_summary` says, in words."""
    text = f"Best val mAP50 {s['best']:.2f} at epoch {s['best_epoch']} of {s['epochs']}. "
    last = f"the last 20% of the epochs ({s['tail_start']}-{s['epochs']})"
    if s["tail"] is None:
        return text + f"No validation in {last}: whether it converged cannot be told."
    if s["before"] is None:
        return text + f"No validation before {last}: whether it converged cannot be told."
    gain = s["tail"] - s["before"]
    verdict = (f"less than {PLATEAU_GAIN:g} point, the curve had flattened out"
               if gain < PLATEAU_GAIN else "the teacher was still improving")
    text += (f"The best val mAP50 of {last} is {s['tail']:.2f}, {gain:+.2f} over the "
             f"best before them ({s['before']:.2f}): {verdict}.")
    ratio = s.get("tail_lr_ratio")
    if gain < PLATEAU_GAIN and ratio is not None and ratio < LOW_LR:
        text += (f" But by epoch {s['tail_start']} the learning rate had decayed to "
                 f"{100 * ratio:.0f}% of its peak: the run's schedule (fitted to its minutes) "
                 "was ending, so the flat end says the schedule ran out, not that a longer one "
                 "would gain nothing.")
    return text


def run_weights(run: str) -> dict[str, float]:
    """The distillation loss weights run ``run`` trains with: its last ``--weights`` in the run
    list (``research/runs.yaml``), the paper's (``DistillWeights()``) without one."""
    import dataclasses

    from dlrmamba_core.engine.config import DistillWeights
    from dlrmamba_core.research.pipeline import load_runs

    spec = next((r for r in load_runs().runs if r.name == run), None)
    args = [*spec.args, *spec.overrides] if spec is not None else []
    at = [i for i, a in enumerate(args[:-1]) if a == "--weights"]
    weights = DistillWeights.parse(args[at[-1] + 1]) if at else DistillWeights()
    return {k: float(v) for k, v in dataclasses.asdict(weights).items()}


def weighted_terms(curve: dict[str, list[Any]], weights: dict[str, float]
                   ) -> dict[str, list[float | None]]:
    """w * L per epoch of each SAD term the curve logged (``train_task``, ``train_svd``, ...)."""
    return {t: [None if v is None else weights[t] * float(v) for v in curve[f"train_{t}"]]
            for t in SAD_TERMS if f"train_{t}" in curve}


def sad_loss_summary(curve: dict[str, list[Any]], weights: dict[str, float]
                     ) -> dict[str, Any] | None:
    """How large the weighted structural terms of a SAD run were against its whole loss.

    Args:
        curve: the stored curve of a ``<run>/distill`` stage of a SAD run.
        weights: its loss weights (:func:`run_weights`).

    Returns:
        ``first`` / ``last``: the share (0..1) of ``w_svd L_svd + w_state L_state + w_feat
        L_feat`` in the sum of the four weighted terms at the first and the last epoch;
        ``largest``: the largest weighted structural term at the last epoch (name, value) and
        ``task_last`` the weighted task term there; ``total_dev``: the largest relative
        difference between that sum and the logged ``train_loss`` (small when ``weights`` are
        the ones the run trained with). None when the curve lacks a SAD term.
    """
    terms = weighted_terms(curve, weights)
    if set(terms) != set(SAD_TERMS):
        return None
    rows = [dict(zip(SAD_TERMS, vals, strict=True))
            for vals in zip(*(terms[t] for t in SAD_TERMS), strict=True)]
    full = [(i, r) for i, r in enumerate(rows) if all(v is not None for v in r.values())]
    if not full:
        return None

    def share(r: dict[str, Any]) -> float:
        total = sum(r.values())
        return (total - r["task"]) / total if total > 0 else 0.0

    last = full[-1][1]
    name = max(SAD_TERMS[1:], key=lambda t: last[t])
    logged = curve.get("train_loss") or []
    devs = [abs(sum(r.values()) - logged[i]) / logged[i] for i, r in full
            if i < len(logged) and logged[i]]
    return {"first": share(full[0][1]), "last": share(last), "largest": (name, last[name]),
            "task_last": last["task"], "total_dev": max(devs) if devs else None}


def _sad_runs(curves: dict[str, Any], base: str = "t_sad") -> list[str]:
    """The runs of a SAD recipe (``base`` and its seed repeats) whose SAD stage has a stored
    curve with its terms."""
    return [r for r in (base + x for x in T_REPEATS)
            if all(f"train_{t}" in (curves.get(f"{r}/distill") or {}) for t in SAD_TERMS)]


def joined_curve(first: dict[str, list[Any]], then: dict[str, list[Any]]
                 ) -> dict[str, list[Any]]:
    """One curve of a run and the run that trained on from its weights (``then``'s epochs
    numbered after ``first``'s last): the model's whole training history."""
    offset = max((int(e) for e in first.get("epoch") or []), default=0)
    n1, n2 = len(first.get("epoch") or []), len(then.get("epoch") or [])
    out: dict[str, list[Any]] = {}
    for col in dict.fromkeys([*first, *then]):
        a = list(first.get(col) or [None] * n1)[:n1]
        b = list(then.get(col) or [None] * n2)[:n2]
        a += [None] * (n1 - len(a))
        b += [None] * (n2 - len(b))
        out[col] = a + (b if col != "epoch" else [int(e) + offset for e in b])
    return out


def draw_teacher_curve(curve: dict[str, list[Any]], path: Path, title: str,
                       joined_at: int | None = None) -> Path:
    """Val mAP50 and mAP50:95 per epoch, the learning rate on a second axis; PNG, atomic.
    ``joined_at``: the last epoch of the first of two joined runs (:func:`joined_curve`),
    marked by a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrmamba_core.engine.fileio import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for column, label, marker in (("val_mAP50", "val mAP50", "o"),
                                  ("val_mAP50_95", "val mAP50:95", "s")):
        pts = _points(curve, column)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=marker, ms=3, lw=1.2, label=label)
    s = teacher_curve_summary(curve)
    if s is not None:
        ax.axvspan(s["tail_start"] - 0.5, s["epochs"] + 0.5, color="0.92", zorder=0,
                   label="last 20% of the epochs")
        ax.axvline(s["best_epoch"], color="0.4", ls=":", lw=1,
                   label=f"best val mAP50 {s['best']:.1f} (epoch {s['best_epoch']})")
    if joined_at is not None:
        ax.axvline(joined_at + 0.5, color="tab:red", ls="--", lw=1,
                   label=f"trained on from epoch {joined_at} (new warm-up + cosine)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val mAP (%), SYNTHETIC val split")
    ax.grid(alpha=0.3)
    lr = _points(curve, "lr")
    handles, labels = ax.get_legend_handles_labels()
    if lr:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lr, strict=True), color="tab:gray", ls="--", lw=1, label="learning rate")
        ax2.set_ylabel("learning rate")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig)


def draw_sad_losses(runs: dict[str, tuple[dict[str, list[Any]], dict[str, float]]],
                    path: Path) -> Path:
    """Each weighted SAD term (w * L) per epoch of the distillation stage, log y; PNG, atomic.

    Args:
        runs: {run name: (its ``<run>/distill`` curve, its loss weights)}.
        path: the PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.lines import Line2D
    import matplotlib.pyplot as plt

    from dlrmamba_core.engine.fileio import save_figure

    colors = dict(zip(SAD_TERMS, ("tab:blue", "tab:orange", "tab:green", "tab:red"),
                      strict=True))
    styles = ("-", "--", ":", "-.")
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for j, (curve, weights) in enumerate(runs.values()):
        for t, vals in weighted_terms(curve, weights).items():
            # Log axis: a term at weight 0 (or logged as 0) has no point to draw.
            pts = [(e, v) for e, v in zip(curve["epoch"], vals, strict=True)
                   if v is not None and v > 0]
            if pts:
                ax.plot(*zip(*pts, strict=True), color=colors[t], ls=styles[j % len(styles)],
                        marker="o", ms=3, lw=1.2)
    first = next(iter(runs.values()))[1]
    handles = [Line2D([], [], color=colors[t], label=f"{first[t]:g} x L_{t}")
               for t in SAD_TERMS]
    handles += [Line2D([], [], color="0.3", ls=styles[j % len(styles)], label=run)
                for j, run in enumerate(runs)]
    ax.set_yscale("log")
    ax.set_xlabel("epoch of the distillation stage")
    ax.set_ylabel("weighted loss term w * L (per-epoch mean)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=4)
    ax.set_title("SAD: the weighted loss terms during distillation", fontsize=9)
    fig.tight_layout()
    return save_figure(path, fig)


def draw_distill_figures(results: dict[str, Any], images: Path) -> dict[str, Path]:
    """The figures of phases T and D the stored curves allow, in ``images``: ``teacher_curve``
    (``teacher_curve.png``), ``teacher_cont_curve``, ``sad_losses`` (``sad_losses.png``),
    and per round of phase D (:data:`D_ROUNDS`) ``curve_<teacher>`` (``<teacher>_curve.png``)
    and ``sad_losses_<SAD run>`` (``sad_losses_<SAD run>.png``); {name: path} of those
    drawn."""
    curves = results.get("curves") or {}
    out: dict[str, Path] = {}
    teacher = curves.get(T_TEACHER)
    if teacher and _points(teacher, "val_mAP50"):
        out["teacher_curve"] = draw_teacher_curve(
            teacher, images / "teacher_curve.png",
            f"{T_TEACHER}: validation mAP per epoch (SYNTHETIC val split)")
    cont = curves.get(T_CONT)
    if teacher and cont and _points(cont, "val_mAP50"):
        out["teacher_cont_curve"] = draw_teacher_curve(
            joined_curve(teacher, cont), images / "teacher_cont_curve.png",
            f"{T_TEACHER} then {T_CONT}: validation mAP per epoch (SYNTHETIC val split)",
            joined_at=max(int(e) for e in teacher["epoch"]))
    runs = _sad_runs(curves)
    if runs:
        out["sad_losses"] = draw_sad_losses(
            {r: (curves[f"{r}/distill"], run_weights(r)) for r in runs},
            images / "sad_losses.png")
    for rnd in D_ROUNDS:
        teacher_run, sad_run = rnd.teacher, rnd.sad
        curve = curves.get(teacher_run)
        if curve and _points(curve, "val_mAP50"):
            out[f"curve_{teacher_run}"] = draw_teacher_curve(
                curve, images / f"{teacher_run}_curve.png",
                f"{teacher_run}: validation mAP per epoch (SYNTHETIC val split)")
        runs = _sad_runs(curves, sad_run)
        if runs:
            out[f"sad_losses_{sad_run}"] = draw_sad_losses(
                {r: (curves[f"{r}/distill"], run_weights(r)) for r in runs},
                images / f"sad_losses_{sad_run}.png")
    return out


def _epochs(curves: dict[str, Any], key: str) -> int | None:
    curve = curves.get(key) or {}
    return len(curve["epoch"]) if curve.get("epoch") else None


def training_on_lines(models: dict[str, Any], curves: dict[str, Any],
                      arch: dict[str, dict[str, float]], arch_of: dict[str, str],
                      figures: dict[str, str]) -> list[str]:
    """Issue [teacher]: does the teacher gain more from more minutes than its low-rank
    student (T_CONT against T_CONT_STUDENT, the same start and minutes), and does a teacher of
    the paper's size (T_LARGE) do better? Empty when none of the three is in the results."""
    keys = {T_CONT: T_CONT, "distill": f"{T_CONT_STUDENT}/distill",
            "finetune": f"{T_CONT_STUDENT}/finetune", T_LARGE: T_LARGE}
    if all(_test_map(models, k) is None for k in keys.values()):
        return []
    base = _test_map(models, T_TEACHER)
    lines = ["", "### More minutes: the teacher against its student, and a larger teacher", "",
             f"`{T_CONT}` trains `{T_TEACHER}` on from its shipped weights (a new warm-up and "
             f"cosine schedule); `{T_CONT_STUDENT}` is the control: `{T_TEACHER}`'s low-rank "
             "student (SVD init, task loss only: its distillation stage and its fine-tune) "
             "from the same weights for the same minutes on the same GPU. "
             f"`{T_LARGE}` is the `teacher_p5` layout at about the paper's teacher size, from "
             "scratch, for the same minutes beside them.", "",
             "| run | what | params (M) | epochs | test mAP50 | mAP50:95 | "
             f"vs `{T_TEACHER}` |", "|---|---|---:|---:|---:|---:|---:|"]
    what = {T_TEACHER: "the start (shipped teacher)", T_CONT: "teacher, trained on",
            "distill": "student, task loss (1st stage)", "finetune": "student, after fine-tune",
            T_LARGE: "larger teacher, from scratch"}
    for label, key in ((T_TEACHER, T_TEACHER), *keys.items()):
        m = _test_map(models, key)
        if m is None:
            lines.append(f"| `{key}` | {what[label]} | - | - | not run yet | - | - |")
            continue
        a = arch.get(arch_of.get(key, ""), {})
        gain = f"{m - base:+.1f}" if base is not None and key != T_TEACHER else "-"
        ep = _epochs(curves, key)
        lines.append(f"| `{key}` | {what[label]} | {_fmt(a.get('params_M'), 2)} | "
                     f"{ep if ep is not None else '-'} | {_fmt(m)} | "
                     f"{_fmt(_test_map(models, key, 'mAP50_95'))} | {gain} |")
    if figures.get("teacher_cont_curve"):
        lines += ["", f"![learning curve of {T_TEACHER} then {T_CONT}]"
                  f"({figures['teacher_cont_curve']})"]
    cont, student = _test_map(models, T_CONT), _test_map(models, keys["finetune"])
    if cont is not None and base is not None:
        s = teacher_curve_summary(curves[T_CONT]) if curves.get(T_CONT) else None
        lines += ["", f"`{T_CONT}` ends at test mAP50 {cont:.1f}, {cont - base:+.1f} over the "
                  f"start." + (" On its own curve: " + _teacher_sentence(s) if s else "")]
    if cont is not None and student is not None:
        gap = cont - student
        verdict = ("met)." if gap >= 3.0 else
                   "not met: given the same minutes from the same start, the student stays "
                   "within 3 points of its teacher; docs/distillation.md says why).")
        lines += ["", f"Same start, same minutes: the full-rank teacher {cont:.1f}, its "
                  f"low-rank student {student:.1f}, a gap of {gap:+.1f} mAP50 (the issue asks "
                  f"teacher >= undistilled student + 3: {verdict}"]
    large = _test_map(models, T_LARGE)
    if large is not None and cont is not None:
        lines += ["", f"The larger teacher from scratch: {large:.1f} after "
                  f"{_epochs(curves, T_LARGE) or '?'} epochs, against `{T_CONT}` {cont:.1f} "
                  f"(which had `{T_TEACHER}`'s {_epochs(curves, T_TEACHER) or '?'} epochs "
                  f"before its own {_epochs(curves, T_CONT) or '?'})."]
    return lines


def _recipe_table(models: dict[str, Any], recipes: tuple[tuple[str, str], ...],
                  missing: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The table of student recipes over seeds (:func:`recipe_stats` of each (label, base run)
    of ``recipes``) and those stats; the runs not in the results are appended to ``missing``."""
    lines = ["", "| recipe | runs | mAP50 per seed | mean mAP50 | spread (std) | "
             "mean mAP50:95 | mean mAP50 after the distillation stage |",
             "|---|---|---|---:|---:|---:|---:|"]
    stats = {base: recipe_stats(models, base) for _, base in recipes}
    for label, base in recipes:
        st = stats[base]
        missing += st["missing"]
        distill = _fmt(st["distill_mean"]) if st["distill_mean"] is not None else "-"
        if not st["runs"]:
            lines.append(f"| {label} | none yet | - | - | - | - | {distill} |")
            continue
        lines.append(f"| {label} | " + ", ".join(f"`{r}`" for r in st["runs"]) + " | "
                     + ", ".join(_fmt(v) for v in st["mAP50"]) + f" | {_fmt(st['mean'])} | "
                     + (f"{st['std']:.2f}" if st["std"] is not None else "-")
                     + f" | {_fmt(st['mean_95'])} | {distill} |")
    return lines, stats


def _sad_share_lines(curves: dict[str, Any], runs: list[str]) -> list[str]:
    """How large each SAD run's weighted structural terms were against its task term, first
    and last epoch of its distillation stage, and whether the terms add up to the logged loss
    (``runs``: those of :func:`_sad_runs`, at least one)."""
    weights = {r: run_weights(r) for r in runs}
    w = weights[runs[0]]
    lines = [f"Each term times its weight (task / svd / state / feat: {w['task']:g} / "
             f"{w['svd']:g} / {w['state']:g} / {w['feat']:g}, from the run list), "
             "per-epoch means of the distillation stage. Share of the weighted structural "
             "terms (svd + state + feat) in the total at the first and the last epoch:", ""]
    devs = []
    for r in runs:
        sm = sad_loss_summary(curves[f"{r}/distill"], weights[r])
        if sm is None:
            continue
        name, value = sm["largest"]
        lines.append(f"- `{r}`: {100 * sm['first']:.1f}% -> {100 * sm['last']:.1f}%; at the "
                     f"last epoch the largest is {weights[r][name]:g} x L_{name} = "
                     f"{value:.3g} against {weights[r]['task']:g} x L_task = "
                     f"{sm['task_last']:.3g}.")
        if sm["total_dev"] is not None:
            devs.append(sm["total_dev"])
    peaks = {t: max(v for r in runs
                    for v in weighted_terms(curves[f"{r}/distill"], weights[r])[t]
                    if v is not None) for t in SAD_TERMS[1:]}
    small = min(peaks, key=lambda t: peaks[t])
    lines += ["", f"The smallest, {w[small]:g} x L_{small}, is at most {peaks[small]:.2g} at any "
              "epoch of these runs (metrics.csv logs the per-epoch means to 5 decimals, so "
              "terms this small are coarsely quantized)."]
    if devs:
        worst = max(devs)
        lines += ["", f"The weighted terms add up to the logged total loss within "
                  f"{100 * worst:.2f}% at every epoch" + (
                      ": these are the weights the runs trained with." if worst <= 0.01 else
                      ", more than rounding explains: the runs did not train with the run "
                      "list's weights, so the shares above are not theirs.")]
    return lines


def _sweep_lines(models: dict[str, Any], arch: dict[str, dict[str, float]],
                 arch_of: dict[str, str], runs: tuple[str, ...]) -> list[str]:
    """The table of a rank sweep (``runs``, SAD stage only) beside the paper's numbers, and
    the sweep runs not in the results yet."""
    lines = ["| rank ratio | model | mAP50 | mAP50:95 | params (M) | paper mAP50 |",
             "|---:|---|---:|---:|---:|---:|"]
    missing = []
    for run in runs:
        key = f"{run}/distill"
        ratio = (models.get(key) or {}).get("rank_ratio") or int(run[-3:]) / 100
        paper = PAPER_RANK_SWEEP.get(round(float(ratio), 2))
        paper_cell = _fmt(paper) if paper is not None else "not in the summary"
        if _test_map(models, key) is None:
            missing.append(run)
            lines.append(f"| {ratio:.2f} | `{key}` | not run yet | - | - | {paper_cell} |")
            continue
        a = arch.get(arch_of.get(key, ""), {})
        lines.append(f"| {ratio:.2f} | `{key}` | {_fmt(_test_map(models, key))} | "
                     f"{_fmt(_test_map(models, key, 'mAP50_95'))} | "
                     f"{_fmt(a.get('params_M'), 2)} | {paper_cell} |")
    if not PAPER_RANK_SWEEP:
        lines += ["", "paper: not in the summary. The DLRMamba paper summary this project works "
                  "from (`shared/seeds/dlrmamba.txt`: abstract, figure captions, a count of "
                  "tables) has no rank-sweep numbers, so none are shown beside ours."]
    if missing:
        lines += ["", "Not in these results yet: " + ", ".join(f"`{r}`" for r in missing)
                  + "."]
    return lines


def _phase_t_lines(models: dict[str, Any], curves: dict[str, Any],
                   arch: dict[str, dict[str, float]], arch_of: dict[str, str],
                   figures: dict[str, str]) -> list[str]:
    """Phase T: the teacher's learning curve, the student recipes over seeds, the targets of
    issue [teacher], the rank sweep beside the paper's and the SAD loss terms."""
    if not _has_phase_t(models):
        return []
    missing: list[str] = []
    lines = ["", "## Long-trained teacher and Structure-Aware Distillation (phase T)", "",
             f"SAD measured from a teacher trained alone on the GPU for most of its budget: "
             f"`{T_TEACHER}` (the `teacher_p5` architecture; its learning curve below says "
             "whether it had stopped improving), its low-rank students distilled "
             "from it, each recipe with seeds 0, 2 and 3 (`<run>`, `<run>_seed2`, "
             "`<run>_seed3`). Only part of these runs is trained per GPU session; what is not "
             "in these results yet is named below each table.", "",
             "### The teacher's learning curve", ""]
    teacher_curve = curves.get(T_TEACHER)
    summary = teacher_curve_summary(teacher_curve) if teacher_curve else None
    if summary is None:
        lines.append(f"No learning curve of `{T_TEACHER}` with validations in these results "
                     "(`python -m dlrmamba_core.research.ship curves PIPELINE_OUT` stores the "
                     "runs' metrics.csv).")
    else:
        if figures.get("teacher_curve"):
            lines += [f"![learning curve of {T_TEACHER}]({figures['teacher_curve']})", ""]
        lines.append(_teacher_sentence(summary))

    teacher = _test_map(models, T_TEACHER)
    lines += ["", "### Students: test mAP50 after the fine-tune, over seeds", ""]
    if teacher is None:
        lines.append(f"The teacher `{T_TEACHER}` is not in these results yet.")
        missing.append(T_TEACHER)
    else:
        lines.append(f"Teacher `{T_TEACHER}`: test mAP50 {teacher:.1f}, mAP50:95 "
                     f"{_fmt(_test_map(models, T_TEACHER, 'mAP50_95'))}.")
    table, stats = _recipe_table(models, T_RECIPES, missing)
    lines += table
    if missing:
        lines += ["", "Not in these results yet: " + ", ".join(f"`{r}`" for r in missing)
                  + "."]
    shown = compare_recipes(stats)
    if shown:
        lines += ["", "What the numbers show (difference of the means against the larger of "
                  "the two recipes' seed spreads):", "", *shown]

    lines += training_on_lines(models, curves, arch, arch_of, figures)

    task, sad = stats["t_task"], stats["t_sad"]
    # The best teacher of this architecture the results hold: trained on, when it was.
    t_key = T_CONT if _test_map(models, T_CONT) is not None else T_TEACHER
    t_best = _test_map(models, t_key)
    lines += ["", "### Targets of issue [teacher]", "", "| target | measured | met |",
              "|---|---|---|",
              _target_row(f"teacher (`{t_key}`) >= undistilled student (`t_task`, mean of "
                          f"{len(task['runs'])}) + 3.0", t_best, task["mean"], 3.0),
              _target_row(f"distilled student (`t_sad`, mean of {len(sad['runs'])}) >= "
                          f"teacher (`{t_key}`) - 1.0", sad["mean"], t_best, -1.0),
              _target_row(f"distilled student (`t_sad`, mean of {len(sad['runs'])}) >= "
                          f"undistilled (`t_task`, mean of {len(task['runs'])}) + 2.0",
                          sad["mean"], task["mean"], 2.0)]

    lines += ["", "### Rank-ratio sweep from this teacher (SAD only)", ""]
    lines += _sweep_lines(models, arch, arch_of, T_SWEEP)

    lines += ["", "### The distillation loss terms during SAD", ""]
    runs = _sad_runs(curves)
    if not runs:
        lines.append("No loss curves of the SAD stage of `t_sad` in these results "
                     "(`python -m dlrmamba_core.research.ship curves PIPELINE_OUT`).")
        return lines
    if figures.get("sad_losses"):
        lines += [f"![SAD loss terms]({figures['sad_losses']})", ""]
    lines += _sad_share_lines(curves, runs)
    costs = {r: c for r in ("t_task", "t_sad", "t_rs4d")
             if (c := stage_cost(curves, f"{r}/distill")) is not None}
    if len(costs) >= 2:
        lines += ["", "Cost of the distillation stage in the same minutes (seed 0): " + "; ".join(
            f"`{r}` {n} epochs of {sec:.1f} s" for r, (n, sec) in costs.items())
            + ". The teacher's forward pass makes a distillation epoch slower than a "
            "task-only one, so in equal minutes the distilled student sees fewer epochs."]
    lines += _random_init_state_lines(curves, "t_random_sad", runs[0])
    return lines


def _random_init_state_lines(curves: dict[str, Any], random_run: str, ref_run: str
                             ) -> list[str]:
    """Whether SAD's state and feature terms move at all from a random init (``random_run``'s
    distillation stage), beside the SVD-init run ``ref_run``; empty without its curve."""
    rnd = curves.get(f"{random_run}/distill") or {}
    if not all(f"train_{t}" in rnd for t in ("state", "feat")):
        return []
    states = [v for v in rnd["train_state"] if v is not None]
    feats = [v for v in rnd["train_feat"] if v is not None]
    ref = curves.get(f"{ref_run}/distill") or {}
    ref_st = [v for v in ref.get("train_state") or [] if v is not None]
    return ["", f"From random init (`{random_run}`) L_state goes {states[0]:.3g} -> "
            f"{states[-1]:.3g} and L_feat {feats[0]:.3g} -> {feats[-1]:.3g} over its "
            "distillation stage"
            + (f" (from the SVD init, `{ref_run}`: L_state {ref_st[0]:.3g} -> "
               f"{ref_st[-1]:.3g})" if ref_st else "")
            + ". L_state near 1 is the error of a student whose states do not follow "
            "the teacher's at all (the state and feature errors are scale-free)."]


def _phase_d_lines(models: dict[str, Any], curves: dict[str, Any],
                   arch: dict[str, dict[str, float]], arch_of: dict[str, str],
                   figures: dict[str, str]) -> list[str]:
    """Phase D: SAD from a teacher whose SS2D blocks carry accuracy, one subsection per round
    of :data:`D_ROUNDS` in the results: the teacher's learning curve, the students with and
    without SAD over seeds, the targets of issue [teacher], the loss terms."""
    if not _has_phase_d(models):
        return []
    lines = ["", "## SAD where the selective scan matters (phase D)", "",
             "Phase T's pair (`teacher_p5` and its student) differs only in the SS2D blocks of "
             "the stride-32 stage, and zeroing those blocks at inference changes neither "
             "model's mAP50 by more than a few tenths ([ablation.md](ablation.md)): SAD had "
             "nothing to transfer there. Phase D repeats the comparison with the `teacher` "
             "architecture (SS2D at strides 16 and 32), whose low-rank student loses several "
             "points when its SS2D blocks are zeroed. In each round the teacher trains alone on "
             "the GPU first (a later round trains the earlier round's teacher on); then its SVD "
             "students with the task loss only and with SAD (then a fine-tune), seeds 0, 2 and "
             "3, side by side for the same minutes each."]
    for rnd in D_ROUNDS:
        if _round_in(models, rnd):
            lines += _d_round_lines(models, curves, arch, arch_of, figures, rnd)
    return lines


def equal_step_curve(curves: dict[str, Any], a: str, b: str, stage: str = "distill"
                     ) -> list[tuple[int, float, float, int]]:
    """Recipes ``a`` and ``b`` epoch by epoch: every epoch of ``stage`` that every seed run
    (:data:`T_REPEATS`) of both validated (an epoch is the same number of batches for both),
    as (epoch, mean val mAP50 of ``a``, of ``b``, seed pairs); empty without such an epoch."""
    side_a, side_b = ([dict(_points(c, "val_mAP50")) for r in T_REPEATS
                       if (c := curves.get(f"{base}{r}/{stage}"))] for base in (a, b))
    if not side_a or not side_b:
        return []
    common = set.intersection(*(set(p) for p in side_a + side_b))
    n = min(len(side_a), len(side_b))
    return [(e, statistics.fmean(p[e] for p in side_a), statistics.fmean(p[e] for p in side_b),
             n) for e in sorted(common)]


def equal_step_means(curves: dict[str, Any], a: str, b: str, stage: str = "distill"
                     ) -> tuple[int, float, float, int] | None:
    """The last epoch of :func:`equal_step_curve` (None without one). The two schedules still
    differ where each run's cosine is fitted to its own minutes: the run with the slower epochs
    is further into its decay at the same step."""
    points = equal_step_curve(curves, a, b, stage)
    return points[-1] if points else None


def _d_round_lines(models: dict[str, Any], curves: dict[str, Any],
                   arch: dict[str, dict[str, float]], arch_of: dict[str, str],
                   figures: dict[str, str], rnd: DRound) -> list[str]:
    """One round of phase D (see :func:`_phase_d_lines`). Its further recipes
    (``rnd.more``) and its rank sweep are shown once a run of them is in the results; until
    then one line names them."""
    teacher_run, task_run, sad_run = rnd.teacher, rnd.task, rnd.sad
    lines = ["", f"### `{teacher_run}` and its students", ""]
    missing: list[str] = []
    curve = curves.get(teacher_run)
    summary = teacher_curve_summary(curve) if curve else None
    if summary is None:
        lines.append(f"No learning curve of `{teacher_run}` with validations in these "
                     "results.")
    else:
        if figures.get(f"curve_{teacher_run}"):
            lines += [f"![learning curve of {teacher_run}]({figures[f'curve_{teacher_run}']})",
                      ""]
        lines.append(_teacher_sentence(summary))
    teacher = _test_map(models, teacher_run)
    lines.append("")
    if teacher is None:
        lines.append(f"The teacher `{teacher_run}` is not in these results yet.")
        missing.append(teacher_run)
    else:
        lines.append(f"Teacher `{teacher_run}`: test mAP50 {teacher:.1f}, mAP50:95 "
                     f"{_fmt(_test_map(models, teacher_run, 'mAP50_95'))}. Students: test "
                     "mAP50 after the fine-tune, over seeds:")
    labelled = (("SVD init, task loss only", task_run),
                ("SVD init + SAD, then fine-tune", sad_run),
                ("random init, task loss only (undistilled)", rnd.random_task),
                ("random init + SAD, then fine-tune", rnd.random_sad))
    more = [m for m in rnd.more if _runs_in(models, _seeds(m[1]))]
    not_run = [m[1] for m in rnd.more if m not in more]
    table, stats = _recipe_table(models, tuple((lbl, r) for lbl, r in labelled if r)
                                 + tuple((lbl, r) for lbl, r, _ in more), missing)
    lines += table
    if missing:
        lines += ["", "Not in these results yet: " + ", ".join(f"`{r}`" for r in missing)
                  + "."]
    pairs = [(sad_run, task_run, "SAD vs SVD init + task loss only")]
    if rnd.random_task:
        pairs.append((task_run, rnd.random_task, "SVD init vs random init (task loss only): "
                      "what the teacher's weights give"))
    if rnd.random_sad and rnd.random_task:
        pairs.append((rnd.random_sad, rnd.random_task,
                      "SAD vs task loss only, both from a random init"))
    if rnd.random_sad:
        pairs.append((sad_run, rnd.random_sad, "SVD init + SAD vs random init + SAD"))
    pairs += [(r, against, f"{lbl} vs `{against}`") for lbl, r, against in more
              if against in stats]
    shown = compare_recipes(stats, tuple(pairs))
    if shown:
        lines += ["", "What the numbers show (difference of the means against the larger of "
                  "the two recipes' seed spreads):", "", *shown]
    step_pairs = [(sad_run, task_run)] + ([(rnd.random_sad, rnd.random_task)]
                                          if rnd.random_sad and rnd.random_task else [])
    steps = [(a, b, m) for a, b in step_pairs
             if (m := equal_step_means(curves, a, b)) is not None]
    if steps:
        lines += ["", "The same recipes at the same number of steps of the distillation stage "
                  "(SAD's epochs are slower, so in the same minutes it runs fewer of them; mean "
                  "val mAP50 at the last epoch every seed of both validated; each run's cosine "
                  "is fitted to its own minutes, so SAD's is further into its decay there):", ""]
        lines += [f"- `{a}` {ma:.2f} vs `{b}` {mb:.2f} ({ma - mb:+.2f}) at epoch {e}, "
                  f"{n} seed{'s' if n > 1 else ''} a side." for a, b, (e, ma, mb, n) in steps]
    if rnd.same_schedule and (same := equal_step_curve(curves, *rnd.same_schedule)):
        a, b = rnd.same_schedule
        n = same[0][3]
        lines += ["", f"The same steps **and** the same learning rate at every step: `{a}` and "
                  f"`{b}` trained for the same fixed epochs (not fitted to minutes). Val mAP50 "
                  f"of their distillation stage at each epoch every seed validated, means of {n} "
                  f"seed{'s' if n > 1 else ''} a side:", "",
                  f"| epoch | `{a}` | `{b}` | difference |", "|---:|---:|---:|---:|",
                  *(f"| {e} | {ma:.2f} | {mb:.2f} | {ma - mb:+.2f} |" for e, ma, mb, _ in same)]
    task, sad = stats[task_run], stats[sad_run]
    def named(base: str) -> str:
        return f"(`{base}`, mean of {len(stats[base]['runs'])})"

    distilled = f"distilled student {named(sad_run)}"
    svd_only = f"SVD-init student without SAD {named(task_run)}"
    rows = []
    und = stats[rnd.random_task]["mean"] if rnd.random_task else None
    if rnd.random_task:
        rows.append(_target_row(f"teacher (`{teacher_run}`) >= undistilled student "
                                f"{named(rnd.random_task)} + 3.0", teacher, und, 3.0))
    rows += [_target_row(f"teacher (`{teacher_run}`) >= {svd_only} + 3.0", teacher,
                         task["mean"], 3.0),
             _target_row(f"{distilled} >= teacher - 1.0", sad["mean"], teacher, -1.0)]
    if rnd.random_task:
        rows.append(_target_row(f"{distilled} >= undistilled {named(rnd.random_task)} + 2.0",
                                sad["mean"], und, 2.0))
    rows.append(_target_row(f"{distilled} >= {svd_only} + 2.0", sad["mean"], task["mean"],
                            2.0))
    lines += ["", f"Targets of issue [teacher] from `{teacher_run}`"
              + (" (the undistilled student is the random-init one, trained for the students' "
                 "minutes only; the SVD-init rows ask what SAD adds to the teacher's weights)"
                 if rnd.random_task else "") + ":", "",
              "| target | measured | met |", "|---|---|---|", *rows]
    sweep_run = _runs_in(models, set(rnd.sweep))
    if sweep_run:
        lines += ["", f"Rank-ratio sweep from `{teacher_run}` (SAD only):", ""]
        lines += _sweep_lines(models, arch, arch_of, rnd.sweep)
    later = ([f"the recipes {', '.join(f'`{r}`' for r in not_run)} (seeds 0, 2 and 3 each)"]
             if not_run else []) + ([f"the rank sweep {', '.join(f'`{r}`' for r in rnd.sweep)}"]
                                    if rnd.sweep and not sweep_run else [])
    if later:
        lines += ["", "In the run list for this teacher, not run yet: " + "; ".join(later)
                  + "."]
    runs = _sad_runs(curves, sad_run)
    if runs:
        lines += ["", f"The distillation loss terms during SAD (`{sad_run}`):", ""]
        if figures.get(f"sad_losses_{sad_run}"):
            lines += [f"![SAD loss terms of {sad_run}]({figures[f'sad_losses_{sad_run}']})",
                      ""]
        lines += _sad_share_lines(curves, runs)
    if rnd.random_sad:
        lines += _random_init_state_lines(curves, rnd.random_sad, runs[0] if runs else sad_run)
    costs = {r: c for r in (task_run, sad_run, rnd.random_task, rnd.random_sad)
             if r and (c := stage_cost(curves, f"{r}/distill")) is not None}
    if len(costs) >= 2:
        lines += ["", "Cost of the first stage in the same minutes (seed 0): " + "; ".join(
            f"`{r}` {n} epochs of {sec:.1f} s" for r, (n, sec) in costs.items()) + "."]
    return lines


def render(results: dict[str, Any], arch: dict[str, dict[str, float]], arch_of: dict[str, str],
           threads: int, runs: int, cpu: str, front: list[str] | None = None,
           figures: dict[str, str] | None = None) -> str:
    """The markdown of docs/results.md (``front``: the lines of :func:`front_lines`;
    ``figures``: {name: path relative to the page} of :func:`draw_distill_figures`)."""
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
        lines.append(_target_row(label, lhs, rhs, margin))

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
              "recipe)."]
    lines += _phase_t_lines(models, results.get("curves") or {}, arch, arch_of, figures or {})
    lines += _phase_d_lines(models, results.get("curves") or {}, arch, arch_of, figures or {})
    lines += ["",
              f"_Generated {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} "
              "from `" + results.get("_source", str(DEFAULT_RESULTS)) + "`._", ""]
    return "\n".join(lines)


def _on_front_plot(key: str, models: dict[str, Any]) -> bool:
    """Fused models only, one point per run (the fine-tuned model where there is one), no
    loss or init ablations or seed repeats (their latency equals the student's): a readable
    front."""
    m = models[key]
    if m.get("modality", "fused") != "fused" or "_seed" in key \
            or key.startswith(("sad_no_", "t_sad_no_", "t_random_sad")):
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


def _relative(path: Path, page: Path) -> str:
    """``path`` as a link from the markdown file ``page`` (relative where it can be)."""
    try:
        return str(path.resolve().relative_to(page.resolve().parent))
    except ValueError:
        return str(path)


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
    ap.add_argument("--images", type=Path, default=Path("docs/images"),
                    help="where the phase-T figures go (teacher_curve.png, sad_losses.png)")
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
    front = front_lines(rows, _relative(png, args.out), list(results["input_hw"]))
    figures = {name: _relative(path, args.out) for name, path in (
        draw_distill_figures(results, args.images)
        if _has_phase_t(results["models"]) or _has_phase_d(results["models"])
        else {}).items()}
    md = render(results, arch, arch_of, args.threads, args.runs, cpu_model(), front, figures)
    write_text(args.out, md)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
