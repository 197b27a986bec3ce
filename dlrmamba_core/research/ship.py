"""Ship trained models: merge pipeline results, export a checkpoint with its full model card.

    python -m dlrmamba_core.research.ship merge A/results.json B/results.json \\
        --out models/results_synth.json
    python -m dlrmamba_core.research.ship model CHECKPOINT --run student_sad/finetune \\
        --results models/results_synth.json --out models/dlrmamba_student.onnx [--default]
    python -m dlrmamba_core.research.ship conditions --checkpoints PIPELINE_OUT --data SYNTH_ROOT
    python -m dlrmamba_core.research.ship add-run CHECKPOINT --key K --role R --trained-on M \\
        --data SYNTH_ROOT
    python -m dlrmamba_core.research.ship curves PIPELINE_OUT [--results models/results_synth.json]
    python -m dlrmamba_core.research.ship keep PIPELINE_OUT/teacher_long/best.pt \\
        --out campaign/teacher_long.pt

The pipeline (``research.pipeline``) runs on the GPU machine in phases (A: teacher and
baselines; B: distillation and the rank sweep), each call writing its own ``results.json``.
``merge`` joins them into the one file ``docs/results.md`` is generated from, after checking
that every phase trained and tested on the same synthetic benchmark (generator, seed and
split sizes). ``model`` exports one run's checkpoint to ONNX (``deploy.export``: metadata,
``onnx.checker``, torch/onnxruntime parity) and writes its model card with the data and the
test metrics recorded for that run, so the card's numbers come from the evaluation that
produced them; ``--eval-root`` re-evaluates the exported ONNX on a local copy of the test split
and records that too (it must reproduce the recorded mAP50 within ``--eval-tolerance``).
``conditions`` evaluates every run's checkpoint per synthetic condition (day, night, fog, ...)
for the per-condition table of ``docs/results.md``. ``add-run`` evaluates a model trained
outside the pipeline (e.g. a fine-tune continued on a CPU) on the same test split and adds it.
``curves`` stores each run's learning curve (its ``metrics.csv``, per epoch) in the results,
for the learning-curve and loss figures of ``docs/results.md``. ``keep`` stores a run's model in
fp16 (half the bytes) in the repository, so a later GPU lease can train it on (``--init``) or
distil from it (``--teacher-file``): nothing else outlives a lease (``campaign/README.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
from pathlib import Path
import sys
from typing import Any

from dlrmamba_core.engine.fileio import write_json
from dlrmamba_core.errors import ConfigError, DlrmambaError, ModelFileError

log = logging.getLogger("dlrmamba.ship")

#: Keys of the results' ``data`` entry that must agree for results to be merged.
DATA_IDENTITY = ("generator", "generator_version", "seed", "splits", "format", "synthetic",
                 "synth_options")
#: Columns of a run's ``metrics.csv`` kept in its curve, besides every ``train_*`` column (the
#: per-epoch means of the loss terms): the schedule and the validation mAP (None where the epoch
#: was not validated).
CURVE_COLUMNS = ("epoch", "lr", "epoch_s", "val_mAP50", "val_mAP50_95")
#: Significant digits of the stored curve values (the figures need no more).
CURVE_DIGITS = 4


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        res = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"results file {p} not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"results file {p} is not readable JSON: {exc}") from None
    if not isinstance(res, dict) or not isinstance(res.get("models"), dict) \
            or not isinstance(res.get("data"), dict):
        raise ConfigError(f"results file {p} has no 'models' and 'data' entries: not a "
                          "results.json of research.pipeline")
    return res


def merge_results(paths: list[str | os.PathLike[str]]) -> dict[str, Any]:
    """Join pipeline results of several phases (later files win on a repeated model key).

    Returns:
        The first file's fields, with ``models`` and ``status`` joined, ``phases`` listing each
        source (file, created_utc, device, torch, settings) and ``created_utc`` / ``device`` /
        ``torch`` of the newest source.

    Raises:
        ConfigError: a file is missing or malformed, or the phases used different data or
            input sizes (their numbers would not be comparable).
    """
    if not paths:
        raise ConfigError("merge needs at least one results file")
    sources = [(Path(p), _read(p)) for p in paths]
    first_path, first = sources[0]
    ident = {k: first["data"].get(k) for k in DATA_IDENTITY}
    merged: dict[str, Any] = {k: v for k, v in first.items() if k not in ("settings",)}
    merged["models"], merged["status"], merged["phases"] = {}, {}, []
    for path, res in sources:
        other = {k: res["data"].get(k) for k in DATA_IDENTITY}
        if other != ident:
            raise ConfigError(f"{path} was trained on other data than {first_path}: "
                              f"{other} vs {ident}; results of different benchmarks cannot "
                              "share one table")
        if res.get("input_hw") != first.get("input_hw"):
            raise ConfigError(f"{path} has input size {res.get('input_hw')}, {first_path} "
                              f"{first.get('input_hw')}: merge results of one input size")
        repeated = sorted(set(merged["models"]) & set(res["models"]))
        if repeated:
            log.warning("%s replaces %s", path, ", ".join(repeated))
        merged["models"].update(res["models"])
        if "curves" in merged or res.get("curves"):
            # A replaced run's old curve describes the training it replaced: keep only the
            # curves of the source its record now comes from.
            curves = {k: v for k, v in (merged.get("curves") or {}).items()
                      if k not in res["models"]}
            merged["curves"] = {**curves, **(res.get("curves") or {})}
        merged["status"].update(res.get("status") or {})
        if res.get("phases"):
            # An already merged file (e.g. models/results_synth.json of an earlier session):
            # keep its own phase records, so results can be added to it session by session.
            merged["phases"].extend(res["phases"])
        else:
            merged["phases"].append({"file": str(path), "models": sorted(res["models"]),
                                     **{k: res.get(k) for k in ("created_utc", "device",
                                                                "torch", "settings")},
                                     **({"evaluated_on": res["evaluated_on"]}
                                        if res.get("evaluated_on") else {})})
    # The page's "trained on ... (torch ...)" line: a source that only evaluated runs trained
    # elsewhere (``pipeline --evaluate-only``, on a CPU) does not name the training's torch.
    trained = [r for _, r in sources if not r.get("evaluated_on")] or [r for _, r in sources]
    newest = max(trained, key=lambda r: str(r.get("created_utc", "")))
    for k in ("created_utc", "device", "torch"):
        merged[k] = newest.get(k)
    return merged


def ship_model(checkpoint: str | os.PathLike[str], run: str,
               results_path: str | os.PathLike[str], out: str | os.PathLike[str],
               eval_root: str | os.PathLike[str] | None = None, eval_tolerance: float = 1.0,
               make_default: bool = False) -> dict[str, Any]:
    """Export ``checkpoint`` (the best.pt of pipeline run ``run``) with a full model card.

    Args:
        checkpoint: the run's ``best.pt``.
        run: its key in the results' ``models`` (e.g. ``student_sad/finetune``).
        results_path: the (merged) pipeline results JSON.
        out: destination ``.onnx`` (the card is written next to it, same stem ``.json``).
        eval_root: a local copy of the synthetic benchmark; when given, the exported ONNX is
            evaluated on its test split and must match the recorded test mAP50.
        eval_tolerance: largest accepted |local - recorded| mAP50 (points).
        make_default: also point ``default.json`` next to ``out`` at this model.

    Returns:
        The model card.

    Raises:
        ConfigError: the run is not in the results or has no test metrics.
        ModelFileError: export or parity failed, or the local evaluation disagrees; a model
            already at ``out`` is left as it was.
    """
    res = _read(results_path)
    res["_file"] = Path(results_path).name
    entry = res["models"].get(run)
    if entry is None:
        raise ConfigError(f"run {run!r} is not in {results_path}: one of "
                          f"{sorted(res['models'])}")
    test = entry.get("test")
    if not test:
        raise ConfigError(f"run {run!r} in {results_path} has no test metrics")
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Export and check next to the destination under a temporary name: a failed export or
    # check leaves the model already shipped there untouched.
    staged = final.with_name(f".{final.stem}.shipping.onnx")
    try:
        card = _stage(checkpoint, staged, run, res, entry, test, eval_root, eval_tolerance)
    except BaseException:
        staged.unlink(missing_ok=True)
        staged.with_suffix(".json").unlink(missing_ok=True)
        raise
    card["model"] = final.name
    os.replace(staged, final)
    write_json(final.with_suffix(".json"), card)
    staged.with_suffix(".json").unlink(missing_ok=True)
    if make_default:
        write_json(final.parent / "default.json", {"model": final.name})
    return card


def _stage(checkpoint: str | os.PathLike[str], staged: Path, run: str, res: dict[str, Any],
           entry: dict[str, Any], test: dict[str, Any],
           eval_root: str | os.PathLike[str] | None, eval_tolerance: float) -> dict[str, Any]:
    """Export to ``staged``, build the card, run the local check; returns the card."""
    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.runtime.metadata import read_model_card

    result = export_onnx(checkpoint, staged)
    card = read_model_card(result.card_path)
    card["data"] = {"dataset": "SYNTHETIC RGB-thermal benchmark (dlrmamba_core.data.synthetic)",
                    **res["data"]}
    card["metrics"] = {"split": "test (synthetic)", "source": "evaluation of the checkpoint "
                       "recorded in the results file", **test}
    card["training"] = {"run": run, "role": entry.get("role"),
                        "device": entry.get("device") or res.get("device"),
                        "seconds": entry.get("train_seconds"),
                        "results": res.get("_file", "")}
    if eval_root is not None:
        from dlrmamba_core.engine.runs import evaluate_file

        local = evaluate_file(result.onnx_path, "synth", eval_root, "test", None, plots=False)
        diff = abs(local["mAP50"] - test["mAP50"])
        card["metrics"]["local_onnx_check"] = {
            "mAP50": local["mAP50"], "mAP50_95": local["mAP50_95"],
            "abs_diff_mAP50": round(diff, 3), "backend": "onnxruntime (CPU)"}
        log.info("local ONNX evaluation: mAP50 %.2f (recorded %.2f)", local["mAP50"],
                 test["mAP50"])
        if diff > eval_tolerance:
            raise ModelFileError(
                f"the exported model scores mAP50 {local['mAP50']:.2f} on {eval_root} but "
                f"{run} recorded {test['mAP50']:.2f}: is {eval_root} the benchmark of the "
                f"results (seed {res['data'].get('seed')}, splits "
                f"{res['data'].get('splits')})? Nothing was shipped")
    return card


def add_condition_breakdown(results_path: str | os.PathLike[str],
                            checkpoints: str | os.PathLike[str], data_root: str | os.PathLike[str],
                            tolerance: float = 1.0, device: str = "cpu") -> dict[str, Any]:
    """Evaluate every run's checkpoint per synthetic condition; store it in the results.

    Each run's ``checkpoint`` (relative to ``checkpoints``, the pipeline's output folder) is
    evaluated on the test split of ``data_root`` (a local copy of the benchmark) with
    ``group_by="condition"``; the overall mAP50 must reproduce the recorded one within
    ``tolerance`` points (same data, same model), then ``test_by_condition`` is added to the
    run's entry and the results file is rewritten. Runs without a checkpoint file are skipped.

    Raises:
        ModelFileError: a checkpoint does not reproduce its recorded mAP50 (nothing written).
    """
    from dlrmamba_core.engine.runs import evaluate_file

    res = _read(results_path)
    done = []
    for key, entry in res["models"].items():
        ck = Path(checkpoints) / str(entry.get("checkpoint", ""))
        if not entry.get("checkpoint") or not ck.is_file():
            log.warning("%s: no checkpoint at %s, skipped", key, ck)
            continue
        m = evaluate_file(ck, "synth", data_root, "test", None, modality=entry.get("modality"),
                          device=device, plots=False, group_by="condition")
        recorded = (entry.get("test") or {}).get("mAP50")
        if recorded is None or abs(m["mAP50"] - recorded) > tolerance:
            raise ModelFileError(f"{key}: {ck} scores mAP50 {m['mAP50']:.2f} on {data_root} "
                                 f"but the results record {recorded}; wrong data or "
                                 "checkpoint? Nothing was written")
        entry["test_by_condition"] = {"local_mAP50": m["mAP50"],
                                      **m["groups"]["values"]}
        done.append(key)
        log.info("%s: mAP50 %.2f (recorded %.2f); %s", key, m["mAP50"], recorded,
                 ", ".join(f"{c} {v['mAP50']:.1f}" for c, v in m["groups"]["values"].items()))
    write_json(results_path, res)
    return {"evaluated": done}


def add_local_run(results_path: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
                  key: str, role: str, data_root: str | os.PathLike[str],
                  trained_on: str, seconds: float | None = None,
                  based_on: str | None = None, device: str = "cpu",
                  note: str | None = None) -> dict[str, Any]:
    """Evaluate a model trained outside the pipeline and add it to the results as ``key``.

    For a run made on another machine than the pipeline's (e.g. a fine-tune continued on a
    CPU): its checkpoint is evaluated on the test split of ``data_root``, which must be the
    results' benchmark (same seed and split sizes in its ``dataset.json``), with the same
    evaluator as the pipeline, per condition included. ``note`` replaces the table's "trained
    outside the pipeline" sentence, e.g. for a pipeline run whose own results record was lost.

    Raises:
        ConfigError: ``data_root`` is another benchmark, or ``key`` exists already.
    """
    from dlrmamba_core.engine.runs import _load_model, evaluate_file

    res = _read(results_path)
    if key in res["models"]:
        raise ConfigError(f"{key!r} is already in {results_path}; choose another key")
    try:
        ds = json.loads((Path(data_root) / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{data_root}: no readable dataset.json of a synthetic benchmark "
                          f"({exc})") from None
    want = res["data"]
    if ds.get("seed") != want.get("seed") or ds.get("splits") != want.get("splits"):
        raise ConfigError(f"{data_root} is seed {ds.get('seed')}, splits {ds.get('splits')}; "
                          f"the results are seed {want.get('seed')}, splits "
                          f"{want.get('splits')}: evaluate on the results' benchmark")
    _, meta = _load_model(checkpoint)
    extra = meta.get("extra") or {}
    modality = extra.get("modality", "fused")
    m = evaluate_file(checkpoint, "synth", data_root, "test", None, modality=modality,
                      device=device, plots=False, group_by="condition")
    entry: dict[str, Any] = {
        "variant": meta["variant"], "modality": modality, "role": role,
        "rank_ratio": (meta.get("config") or {}).get("rank_ratio"),
        # Not "checkpoint": that key is a path inside the pipeline's folder (``conditions``).
        "model_file": str(checkpoint), "config": meta["config"],
        "test": {k: m[k] for k in ("mAP50", "mAP50_95", "per_class", "num_images", "num_gt")},
        "test_by_condition": {"local_mAP50": m["mAP50"], **m["groups"]["values"]},
        "train_seconds": seconds, "device": trained_on, "based_on": based_on,
    }
    if m.get("segm"):  # a segment model: its mask mAP beside the box mAP
        entry["test"]["segm"] = {k: m["segm"][k] for k in ("mAP50", "mAP50_95", "per_class")
                                 if k in m["segm"]}
    if note:
        entry["note"] = note
    res["models"][key] = entry
    write_json(results_path, res)
    log.info("%s: test mAP50 %.2f mAP50:95 %.2f", key, m["mAP50"], m["mAP50_95"])
    return entry


def keep_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]
                    ) -> dict[str, Any]:
    """Store a model file's weights in fp16 at ``out`` (a model file ``--init`` and
    ``--teacher`` read; loading casts them back to fp32) and check what it changes.

    Returns:
        ``path``, ``bytes`` (of ``out``), ``source_bytes``, ``max_abs_diff``: the largest
        difference of the raw head outputs of the fp32 model and the one loaded back from
        ``out``, on two fixed random frames, and ``max_abs``: the largest raw output (the
        scale of that difference).

    Raises:
        ModelFileError: ``checkpoint`` is not a model file (``models.io``).
    """
    import torch

    from dlrmamba_core.models.io import load_model, save_model

    model, meta = load_model(checkpoint)
    extra = {**(meta.get("extra") or {}), "stored_fp16_from": os.path.basename(checkpoint)}
    h, w = (int(v) for v in meta["input_hw"])
    gen = torch.Generator().manual_seed(0)
    rgb, th = torch.rand(2, 3, h, w, generator=gen), torch.rand(2, 1, h, w, generator=gen)
    with torch.no_grad():
        ref = model(rgb, th)
        half = save_model(out, model.half(), list(meta["class_names"]), (h, w), extra=extra)
        back, _ = load_model(half)
        got = back(rgb, th)

    def flat(x: Any) -> list[torch.Tensor]:
        if isinstance(x, torch.Tensor):
            return [x]
        if isinstance(x, dict):
            return [t for v in x.values() for t in flat(v)]
        return [t for v in x for t in flat(v)]

    diff = max(float((a - b).abs().max()) for a, b in zip(flat(ref), flat(got), strict=True))
    scale = max(float(a.abs().max()) for a in flat(ref))
    return {"path": str(half), "bytes": half.stat().st_size,
            "source_bytes": Path(checkpoint).stat().st_size, "max_abs_diff": diff,
            "max_abs": scale}


def _curve_value(text: str, column: str, path: Path, line: int) -> float | None:
    """One ``metrics.csv`` cell as a float of :data:`CURVE_DIGITS` significant digits."""
    if text == "":
        return None  # a column the epoch did not log (e.g. val_* between validations)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # the trainer stops on a non-finite loss: never logs one
        raise ConfigError(f"{path}: line {line}: {column} = {text!r} is not a finite number; "
                          "is it a metrics.csv of `dlrmamba train` / `distill`?")
    return float(f"{value:.{CURVE_DIGITS}g}")


def read_curve(path: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """A run's ``metrics.csv`` (one row per epoch) as a compact learning curve.

    Args:
        path: the ``metrics.csv`` the trainer wrote (``engine.trainer``).

    Returns:
        Column -> one value per epoch: ``epoch`` (int), ``lr``, ``epoch_s`` (s), every
        ``train_*`` column (per-epoch mean of that loss term, unweighted) and ``val_mAP50`` /
        ``val_mAP50_95`` (%), floats of :data:`CURVE_DIGITS` significant digits, None where the
        epoch did not log the column. An epoch logged twice (a run resumed from an earlier
        ``last.pt``) keeps its later row.

    Raises:
        ConfigError: the file cannot be read, has no ``epoch`` column or no epochs, a row with
            another number of cells than the header, or a cell that is not a number.
    """
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{p}: cannot read it as CSV ({exc})") from None
    if not header or "epoch" not in header:
        raise ConfigError(f"{p}: no 'epoch' column in its header {header}; is it a "
                          "metrics.csv of `dlrmamba train` / `distill`?")
    columns = [c for c in header if c != "epoch" and (c in CURVE_COLUMNS
                                                      or c.startswith("train_"))]
    by_epoch: dict[int, list[float | None]] = {}
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise ConfigError(f"{p}: line {line} has {len(row)} cells, the header "
                              f"{len(header)}: the file is truncated or not one run's log")
        cells = dict(zip(header, row, strict=True))
        try:
            epoch = int(cells["epoch"])
        except ValueError:
            raise ConfigError(f"{p}: line {line}: epoch {cells['epoch']!r} is not a whole "
                              "number") from None
        by_epoch[epoch] = [_curve_value(cells[c], c, p, line) for c in columns]
    if not by_epoch:
        raise ConfigError(f"{p}: a header but no epochs; the run logs a row per finished "
                          "epoch, so this one never finished one")
    epochs = sorted(by_epoch)
    curve: dict[str, list[Any]] = {"epoch": epochs}
    for i, c in enumerate(columns):
        curve[c] = [by_epoch[e][i] for e in epochs]
    return curve


def curve_file(root: str | os.PathLike[str], key: str) -> Path:
    """The ``metrics.csv`` of results key ``key`` under a pipeline output folder ``root``.

    ``"<run>"`` (a train run) -> ``root/<run>/metrics.csv``; ``"<run>/distill"`` and
    ``"<run>/finetune"`` (the stages of a distill run) -> ``root/<run>/<stage>/metrics.csv``.
    """
    return Path(root, *key.split("/"), "metrics.csv")


def add_curves(results_path: str | os.PathLike[str], root: str | os.PathLike[str]
               ) -> dict[str, list[str]]:
    """Store the learning curve of every run of the results found under ``root``.

    ``root`` is a pipeline output folder or an unpacked logs archive of one (``pipeline.pack``);
    each key of the results' ``models`` with a ``metrics.csv`` there (:func:`curve_file`) gets
    its :func:`read_curve` in the results' top-level ``curves`` (replacing an older one), and the
    results file is rewritten atomically. So does the other stage of a distill run in the
    results (``<run>/distill`` of a ``<run>/finetune``) when its metrics.csv is there, though its
    model is not. Curves of runs not under ``root`` stay as they were.

    Returns:
        ``{"stored": keys whose curve was stored, "missing": keys without a metrics.csv}``.

    Raises:
        ConfigError: the results file is not a results JSON, or a metrics.csv is malformed
            (nothing is written then).
    """
    res = _read(results_path)
    if not Path(root).is_dir():
        raise ConfigError(f"{root}: no such folder; pass the pipeline's output folder (or an "
                          "unpacked logs.tar.gz of it)")
    found = {key: curve_file(root, key) for key in res["models"]}
    # The other stage of a distill run whose model is not in the results (a distillation
    # stage's best.pt that stayed on the GPU machine): its curve is still the run's record.
    stages = {f"{key.split('/')[0]}/{stage}" for key in res["models"] if "/" in key
              for stage in ("distill", "finetune")} - set(found)
    present = {key: path for key, path in found.items() if path.is_file()}
    present.update((key, path) for key in stages if (path := curve_file(root, key)).is_file())
    curves = {key: read_curve(path) for key, path in present.items()}
    res["curves"] = {**(res.get("curves") or {}), **curves}
    write_json(results_path, res)
    return {"stored": sorted(curves), "missing": sorted(k for k in found if k not in curves)}


def main(argv: list[str] | None = None) -> int:
    """CLI: ``merge``, ``model``, ``conditions``, ``add-run``, ``curves``, ``keep`` (see the
    module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="join results.json files of pipeline phases")
    m.add_argument("results", nargs="+")
    m.add_argument("--out", required=True)
    s = sub.add_parser("model", help="export a run's checkpoint with its model card")
    s.add_argument("checkpoint")
    s.add_argument("--run", required=True, help="key in the results' models")
    s.add_argument("--results", default="models/results_synth.json")
    s.add_argument("--out", required=True, help="destination .onnx")
    s.add_argument("--eval-root", help="local synthetic benchmark to re-evaluate the ONNX on")
    s.add_argument("--eval-tolerance", type=float, default=1.0)
    s.add_argument("--default", action="store_true", help="make it the default model")
    c = sub.add_parser("conditions", help="add per-condition test mAP of each run's "
                                          "checkpoint to the results")
    c.add_argument("--results", default="models/results_synth.json")
    c.add_argument("--checkpoints", required=True, help="the pipeline's output folder")
    c.add_argument("--data", required=True, help="local copy of the synthetic benchmark")
    c.add_argument("--tolerance", type=float, default=1.0)
    a = sub.add_parser("add-run", help="evaluate a model trained outside the pipeline and "
                                       "add it to the results")
    a.add_argument("checkpoint")
    a.add_argument("--key", required=True)
    a.add_argument("--role", required=True, help="how it was trained, for the tables")
    a.add_argument("--trained-on", required=True, help="the machine, e.g. 'CPU: AMD EPYC'")
    a.add_argument("--seconds", type=float, default=None, help="training time")
    a.add_argument("--based-on", default=None, help="the run it continued from")
    a.add_argument("--results", default="models/results_synth.json")
    a.add_argument("--data", required=True, help="local copy of the synthetic benchmark")
    a.add_argument("--note", default=None,
                   help="how the model came about, when not 'trained outside the pipeline'")
    v = sub.add_parser("curves", help="store each run's learning curve (metrics.csv) in the "
                                      "results")
    v.add_argument("root", help="the pipeline's output folder or an unpacked logs archive")
    v.add_argument("--results", default="models/results_synth.json")
    k = sub.add_parser("keep", help="store a run's model in fp16 for a later lease's --init or "
                                    "--teacher-file")
    k.add_argument("checkpoint", help="the run's best.pt")
    k.add_argument("--out", required=True, help="destination .pt (e.g. campaign/RUN.pt)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "merge":
            merged = merge_results(args.results)
            write_json(args.out, merged)
            print(f"{args.out}: {len(merged['models'])} models from {len(args.results)} files")
        elif args.cmd == "add-run":
            e = add_local_run(args.results, args.checkpoint, args.key, args.role, args.data,
                              args.trained_on, args.seconds, args.based_on,
                              note=args.note)
            print(f"{args.key}: test mAP50 {e['test']['mAP50']:.2f}")
        elif args.cmd == "curves":
            done = add_curves(args.results, args.root)
            print(f"{args.results}: curves of {len(done['stored'])} runs stored from "
                  f"{args.root}")
            if done["missing"]:
                print(f"no metrics.csv under {args.root} for {len(done['missing'])} runs: "
                      + ", ".join(done["missing"]))
        elif args.cmd == "keep":
            kept = keep_checkpoint(args.checkpoint, args.out)
            print(f"{kept['path']}: {kept['bytes'] / 1e6:.1f} MB (from "
                  f"{kept['source_bytes'] / 1e6:.1f} MB); largest change of a raw output on "
                  f"two random frames: {kept['max_abs_diff']:.2e} (outputs up to "
                  f"{kept['max_abs']:.3g})")
        elif args.cmd == "conditions":
            print(add_condition_breakdown(args.results, args.checkpoints, args.data,
                                          args.tolerance))
        else:
            card = ship_model(args.checkpoint, args.run, args.results, args.out,
                              args.eval_root, args.eval_tolerance, args.default)
            print(json.dumps({k: card[k] for k in ("model", "variant", "input_hw",
                                                   "metrics", "training")}, indent=1)[:2000])
    except DlrmambaError as exc:
        print(f"ship: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
