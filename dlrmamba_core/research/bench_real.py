"""Real-data benchmark: the shipped student before and after ``finetune`` on real RGB-T pairs.

    python -m dlrmamba_core.research.bench_real [--real ../shared/real] [--minutes 8 3]
        [--model MODEL.onnx]

The starting model is the shipped default (the ONNX file ``models/default.json`` names,
resolved as the node and ``bag-eval`` resolve it) unless ``--model`` names another.

Uses the real pairs of ``../shared/real`` (never copied: read in place, see its README):

* **LLVIP** (``llvip_train50``: 50 consecutive frames of ONE night street scene, person):
  fine-tune on frames 010001-010040, score the 10 held-out frames 010041-010050 (the last
  consecutive block, not a random sample: neighbouring frames are near-duplicates).
* **DroneVehicle** (``dronevehicle6``: 6 aerial pairs, IR labels): leave-some-out, train on
  the first 4 pairs, score the last 2.

For each: mAP50 / mAP50:95 of the shipped ONNX (runtime Detector, classes mapped by name),
of the torch model rebuilt from it (same numbers expected), and of the fine-tuned model as a
``.pt`` and exported to ONNX (runtime Detector). Writes ``docs/real_results.json``, drawn
held-out frames ``docs/images/real_<set>_before_after.png`` and the tables of
``docs/real.md`` between its ``bench_real`` markers. Timings are wall-clock on this machine's
CPU (named in the output), which may be shared with other jobs.

This is a demonstration on tiny, correlated data, not a benchmark of accuracy in general.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
import platform
import time
from typing import Any

import numpy as np

from dlrmamba_core.errors import DatasetError

log = logging.getLogger("dlrmamba.bench_real")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_REAL = REPO.parent / "shared" / "real"
#: the shipped default model's card (``{"model": "<file>.onnx"}``), as the node resolves it
DEFAULT_CARD = REPO / "models" / "default.json"
BEGIN, END = "<!-- bench_real:begin -->", "<!-- bench_real:end -->"

SETS: dict[str, dict[str, Any]] = {
    "llvip": {"folder": "llvip_train50", "format": "yolo:thermal_dir=ir", "holdout": 10,
              "title": "LLVIP, 50 frames of one night street scene (person)"},
    "dronevehicle": {"folder": "dronevehicle6", "format": "dronevehicle", "holdout": 2,
                     "title": "DroneVehicle, 6 aerial pairs (IR labels)"},
}


def shipped_model(model: Path | None = None) -> Path:
    """The ONNX file to start from: ``model``, or the shipped default that
    ``models/default.json`` names (resolved as the node and ``bag-eval`` resolve it).

    Raises:
        ModelFileError: ``model`` or the default card / the file it names is missing.
    """
    from dlrmamba_core.bag.evaluate import resolve_model

    return resolve_model(model if model is not None else DEFAULT_CARD)


def _eval_detector(onnx_path: Path, pairs: Any, class_map: str | None = None) -> dict[str, Any]:
    from dlrmamba_core.engine.evaluate import evaluate

    return evaluate(str(onnx_path), pairs, list(pairs.class_names), class_map=class_map,
                    progress=False)


def _eval_torch(model: Any, names: list[str], pairs: Any, hw: tuple[int, int]
                ) -> dict[str, Any]:
    from dlrmamba_core.engine.evaluate import evaluate

    return evaluate(model, pairs, list(pairs.class_names), hw, batch_size=4,
                    model_class_names=names, progress=False)


def _brief(m: dict[str, Any]) -> dict[str, Any]:
    return {"mAP50": m["mAP50"], "mAP50_95": m["mAP50_95"], "num_images": m["num_images"],
            "num_gt": m["num_gt"],
            "per_class": {k: v["AP50"] for k, v in m["per_class"].items()},
            **({"class_map": m["class_map"]} if "class_map" in m else {})}


def draw_before_after(pairs: Any, index: int, before: Path, after: Path, out: Path,
                      width: int = 320, conf: float = 0.25) -> Path:
    """One held-out frame: [shipped | fine-tuned] detections (red, with scores) and the
    ground truth (green), drawn on the thermal image (night scenes are dark in RGB)."""
    import cv2

    from dlrmamba_core.data.classmap import match_classes
    from dlrmamba_core.data.thermal import normalize_thermal
    from dlrmamba_core.data.viz import write_image_atomic
    from dlrmamba_core.runtime import Detector

    s = pairs[index]
    h, w = s.rgb.shape[:2]
    scale = width / w
    t8 = (normalize_thermal(s.thermal) * 255).astype(np.uint8)
    base = cv2.resize(t8, (width, round(h * scale)), interpolation=cv2.INTER_AREA)
    panels = []
    for title, path in (("shipped (synthetic-trained)", before), ("fine-tuned", after)):
        det = Detector(str(path), conf_threshold=conf)
        d = det.detect(s.rgb, s.thermal, homography=s.homography)
        mapping = match_classes(list(d.class_names), list(pairs.class_names))
        boxes, scores, cls = mapping.predictions_to_data(d.boxes, d.scores, d.class_ids)
        img = cv2.cvtColor(base, cv2.COLOR_GRAY2RGB)
        for b in s.boxes:
            cv2.rectangle(img, (round(b[0] * scale), round(b[1] * scale)),
                          (round(b[2] * scale), round(b[3] * scale)), (40, 220, 40), 1)
        for b, sc, c in zip(boxes, scores, cls, strict=True):
            p0 = (round(b[0] * scale), round(b[1] * scale))
            cv2.rectangle(img, p0, (round(b[2] * scale), round(b[3] * scale)), (255, 40, 40), 1)
            cv2.putText(img, f"{pairs.class_names[int(c)]} {sc:.2f}", (p0[0], max(8, p0[1] - 2)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 80, 80), 1, cv2.LINE_AA)
        cv2.putText(img, f"{title}: {len(boxes)} det >= {conf}", (4, 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(img)
    sheet = np.concatenate([panels[0], np.zeros((panels[0].shape[0], 4, 3), np.uint8),
                            panels[1]], 1)
    write_image_atomic(out, sheet, params=[cv2.IMWRITE_PNG_COMPRESSION, 9])
    return out


def run_set(key: str, real: Path, work: Path, minutes: float, shipped: tuple[Any, Any],
            seed: int = 0, shipped_onnx: Path | None = None) -> dict[str, Any]:
    """Before / after numbers of one data set (see the module docstring).

    Args:
        key: a key of :data:`SETS`.
        real: the folder holding the real data sets (``../shared/real``).
        work: run folders are written under ``work/key``.
        minutes: fine-tune time budget (minutes).
        shipped: ``engine.finetune.model_from_onnx(shipped_onnx)`` (converted once).
        seed: random seed of the fine-tune.
        shipped_onnx: the starting ONNX file (default: :func:`shipped_model`).
    """
    import dataclasses

    import torch

    from dlrmamba_core.deploy.export import export_onnx
    from dlrmamba_core.engine.finetune import (
        FINETUNE_DEFAULTS,
        finetune_model,
        split_holdout,
    )
    from dlrmamba_core.engine.runs import open_pairs

    onnx_in = shipped_onnx if shipped_onnx is not None else shipped_model()
    spec = SETS[key]
    root = real / spec["folder"]
    if not root.is_dir():
        raise DatasetError(f"{root} not found; pass --real with the folder holding "
                           f"{spec['folder']}/ (see ../shared/real/README.md)")
    pairs = open_pairs(spec["format"], root, None)
    train, held = split_holdout(pairs, spec["holdout"])
    res: dict[str, Any] = {
        "title": spec["title"], "data_format": spec["format"],
        "train_ids": [e.image_id for e in train.entries],
        "heldout_ids": [e.image_id for e in held.entries],
        "train_boxes": int(sum(len(e.boxes) for e in train.entries)),
        "heldout_boxes": int(sum(len(e.boxes) for e in held.entries))}
    t = time.monotonic()
    res["before_onnx"] = _brief(_eval_detector(onnx_in, held))
    model, meta = shipped
    hw = (int(meta["input_hw"][0]), int(meta["input_hw"][1]))
    res["conversion"] = meta["conversion"]
    res["before_torch"] = _brief(_eval_torch(model, meta["class_names"], held, hw))
    res["before_s"] = round(time.monotonic() - t, 1)
    cfg = dataclasses.replace(FINETUNE_DEFAULTS, max_time_min=minutes, seed=seed,
                              progress=False, val_every=1000)
    t = time.monotonic()
    torch.manual_seed(seed)
    ft = finetune_model(model, train, work / key, cfg, init_meta=meta)
    res["finetune"] = {k: ft[k] for k in ("global_step", "epoch", "seconds", "truncated",
                                          "trainable_parameters", "frozen_parameters",
                                          "class_map")}
    res["finetune"]["epochs_planned"] = ft["train_config"]["epochs"]
    res["finetune"]["batch_size"] = cfg.batch_size
    res["finetune_s"] = round(time.monotonic() - t, 1)
    from dlrmamba_core.models.io import load_model

    tuned, tmeta = load_model(ft["best"])
    res["after_torch"] = _brief(_eval_torch(tuned, list(tmeta["class_names"]), held, hw))
    exported = export_onnx(ft["best"], work / key / "finetuned.onnx")
    res["after_onnx"] = _brief(_eval_detector(exported.onnx_path, held))
    res["draw"] = str(draw_before_after(
        held, len(held) // 2, onnx_in, exported.onnx_path,
        REPO / "docs" / "images" / f"real_{key}_before_after.png").relative_to(REPO))
    res["drawn_frame"] = held.entries[len(held) // 2].image_id
    return res


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository when inside it, else as given."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def _table(results: dict[str, Any]) -> str:
    lines = []
    for key, r in results["sets"].items():
        f = r["finetune"]
        lines += [
            f"### {r['title']}", "",
            f"Train: {len(r['train_ids'])} pairs ({r['train_ids'][0]}..{r['train_ids'][-1]}, "
            f"{r['train_boxes']} boxes); held out: {len(r['heldout_ids'])} pairs "
            f"({r['heldout_ids'][0]}..{r['heldout_ids'][-1]}, {r['heldout_boxes']} boxes). "
            f"Classes mapped by name: "
            f"{', '.join(f'{m}->{d}' for m, d in f['class_map']['matched'].items()) or 'none'}"
            + (f"; new classes (fresh rows): "
               f"{', '.join(f['class_map']['data_classes_unknown_to_model'])}"
               if f["class_map"]["data_classes_unknown_to_model"] else "") + ".", "",
            "| model (held-out frames) | mAP50 | mAP50:95 | per-class AP50 |",
            "|---|---:|---:|---|"]
        for label, k in (("shipped student, ONNX (runtime Detector)", "before_onnx"),
                         ("shipped student rebuilt in torch", "before_torch"),
                         ("fine-tuned, torch .pt", "after_torch"),
                         ("fine-tuned, exported ONNX (runtime Detector)", "after_onnx")):
            m = r[k]
            pc = ", ".join(f"{n} {v:.1f}" if v is not None else f"{n} n/a"
                           for n, v in m["per_class"].items())
            lines.append(f"| {label} | {m['mAP50']:.1f} | {m['mAP50_95']:.1f} | {pc} |")
        lines += ["", f"Fine-tune: {f['global_step']} steps of batch {f['batch_size']} "
                      f"({f['epoch']} epochs, schedule fitted to the time budget), "
                      f"{f['trainable_parameters']:,} trainable parameters, "
                      f"{r['finetune_s']:.0f} s wall-clock; ONNX -> torch conversion "
                      f"max |diff| {r['conversion']['max_abs_diff']:.1e}.", "",
                  f"![{key} before and after]({Path(r['draw']).relative_to('docs')}) "
                  f"(held-out frame {r['drawn_frame']}: green ground truth, red detections "
                  "with score >= 0.25, drawn on the thermal image)", ""]
    lines.append(f"Starting model: `{results['model']}`. "
                 f"Measured {results['created_utc']} on {results['cpu']} "
                 f"({results['threads']} torch threads, machine shared with other jobs), "
                 f"total {results['total_s']:.0f} s, by `python -m "
                 "dlrmamba_core.research.bench_real`.")
    return "\n".join(lines)


def write_docs(results: dict[str, Any], doc: Path, body: str | None = None,
               begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between the ``begin`` / ``end`` markers of ``doc`` with ``body``
    (default: the tables of ``results``)."""
    from dlrmamba_core.engine.fileio import write_text

    text = doc.read_text() if doc.is_file() else f"{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise DatasetError(f"{doc} lacks the {begin} / {end} markers; add them where the "
                           "tables go")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text(doc, f"{head}{begin}\n{body if body is not None else _table(results)}\n"
                    f"{end}{tail}")


T_BEGIN, T_END = "<!-- thermal_realism:begin -->", "<!-- thermal_realism:end -->"


def _thermal_stats(images: list[np.ndarray]) -> dict[str, Any]:
    """Histogram (32 bins of the normalized image) and noise of thermal frames.

    Noise: the standard deviation of the image minus its 5x5 Gaussian blur, in normalized
    units (the same percentile normalization the detector applies), median over frames.
    """
    import cv2

    from dlrmamba_core.data.thermal import normalize_thermal

    hist = np.zeros(32)
    noise, spread = [], []
    for img in images:
        t = normalize_thermal(img).astype(np.float32)
        hist += np.histogram(t, bins=32, range=(0.0, 1.0))[0]
        noise.append(float(np.std(t - cv2.GaussianBlur(t, (5, 5), 0))))
        spread.append(float(np.std(t)))
    return {"frames": len(images), "hist": (hist / hist.sum()).round(5).tolist(),
            "noise": round(float(np.median(noise)), 4),
            "contrast_std": round(float(np.median(spread)), 4)}


def thermal_realism(real: Path, png: Path) -> dict[str, Any]:
    """Real (LLVIP, DroneVehicle IR) vs SYNTHETIC thermal: histograms and noise, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dlrmamba_core.data.synthetic import SynthConfig, generate_frame
    from dlrmamba_core.engine.fileio import save_figure
    from dlrmamba_core.engine.runs import open_pairs

    out: dict[str, Any] = {}
    for key in ("llvip", "dronevehicle"):
        spec = SETS[key]
        ds = open_pairs(spec["format"], real / spec["folder"], None)
        out[key] = _thermal_stats([ds[i].thermal for i in range(len(ds))])
    out["synthetic"] = _thermal_stats([generate_frame(SynthConfig(), s).thermal
                                       for s in range(24)])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    centres = (np.arange(32) + 0.5) / 32
    for key, st in out.items():
        a.plot(centres, st["hist"], marker=".", label=f"{key} ({st['frames']} frames)")
    a.set_xlabel("normalized thermal value (percentile 1..99 -> 0..1)")
    a.set_ylabel("fraction of pixels")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    keys = list(out)
    b.bar(keys, [out[k]["noise"] for k in keys], color=["C0", "C1", "C2"])
    b.set_ylabel("high-pass noise std (normalized units)")
    b.grid(alpha=0.3, axis="y")
    fig.suptitle("thermal: real cameras vs the SYNTHETIC generator")
    fig.tight_layout()
    save_figure(png, fig)
    return out


def _thermal_text(st: dict[str, Any], png: Path) -> str:
    rows = ["| thermal source | frames | median high-pass noise | median contrast (std) |",
            "|---|---:|---:|---:|"]
    for key, v in st.items():
        rows.append(f"| {key} | {v['frames']} | {v['noise']:.4f} | {v['contrast_std']:.3f} |")
    return "\n".join([*rows, "", f"![real vs synthetic thermal]({png.relative_to(REPO / 'docs')})",
                      "", "Generated by `python -m dlrmamba_core.research.bench_real --thermal`."])


def live_replay(bag: Path, model: Path, out: Path, threads: int = 2, rate: float = 0.5
                ) -> dict[str, Any]:
    """Play ``bag`` (from ``make-bag``) through the real ``detector_node`` over rclpy, record
    its detections, score them against the bag's ground truth and compare them with
    ``bag-eval`` of the same bag (same pairing, same Detector): frame by frame.

    Needs rclpy and the built vision_msgs (``make install``).
    """
    import subprocess
    import sys

    from dlrmamba_core.bag import messages as m
    from dlrmamba_core.bag.compare import compare_detections
    from dlrmamba_core.bag.evaluate import (
        EvalOptions,
        coco_on_frames,
        evaluate_bag,
        read_detections_bag,
    )
    from dlrmamba_core.bag.groundtruth import GroundTruth
    from dlrmamba_core.bag.reader import BagReader
    from dlrmamba_core.bag.synth import GT_TOPIC, RGB_TOPIC, THERMAL_TOPIC
    from dlrmamba_core.demo import DET_TOPIC, NODE_NAME
    from dlrmamba_core.errors import DlrmambaError
    from dlrmamba_core.subproc import stop_process

    out.mkdir(parents=True, exist_ok=True)
    node_bin = Path(sys.executable).parent / "detector_node"
    node_log = (out / "node.log").open("w")
    node = subprocess.Popen(
        [str(node_bin), "--ros-args", "-p", f"model:={model}", "-p", f"threads:={threads}",
         "-p", "rgb_qos:=reliable", "-p", "thermal_qos:=reliable",
         "-p", "thermal_timeout_s:=5.0", "-r", f"rgb/image:={RGB_TOPIC}",
         "-r", f"thermal/image:={THERMAL_TOPIC}", "-r", f"detections:={DET_TOPIC}"],
        stdout=node_log, stderr=subprocess.STDOUT)
    try:
        player = subprocess.run(
            [sys.executable, "-m", "dlrmamba_ros.bag_player", str(bag), "--rate", str(rate),
             "--clock", "--topics", RGB_TOPIC, THERMAL_TOPIC, "--record", DET_TOPIC,
             "--record-out", str(out / "live"), "--wait-for", RGB_TOPIC, THERMAL_TOPIC,
             "--activate", NODE_NAME, "--ready-timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    finally:
        stop_process(node)
        node_log.close()
    if player.returncode != 0:
        raise DlrmambaError(f"the bag player failed (exit {player.returncode}): "
                            f"{player.stdout[-800:]}")
    offline = evaluate_bag(bag, out / "offline", EvalOptions(
        RGB_TOPIC, THERMAL_TOPIC, gt=GT_TOPIC, model=str(model), threads=threads,
        video=False, progress=False, overwrite=True))
    names = offline.metrics["class_names"]
    live = read_detections_bag(out / "live" / "bag", DET_TOPIC, names)
    gt = GroundTruth(f"topic {GT_TOPIC}")
    with BagReader(bag) as r:
        for bm in r.messages([GT_TOPIC]):
            gt.add(m.parse_detections(bm.decode(), names))
    cmp = compare_detections(live, offline.detections)
    live_coco = coco_on_frames(live, gt, names) if live else None
    return {"bag": str(bag), "model": str(model), "replay_rate": rate,
            "live_frames": len(live), "live_coco": live_coco,
            "offline_coco": offline.metrics.get("coco"),
            "live_vs_offline": {k: (len(v) if isinstance(v, list) else v)
                                for k, v in cmp.items()}}


def main(argv: list[str] | None = None) -> int:
    """Command line of the benchmark (see the module docstring)."""
    import torch

    from dlrmamba_core.engine.fileio import write_json
    from dlrmamba_core.sysinfo import cpu_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL, help="the shared real folder")
    ap.add_argument("--model", type=Path, default=None,
                    help="starting ONNX model (default: the one models/default.json names)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dlrmamba_bench_real"),
                    help="run folders (checkpoints, logs)")
    ap.add_argument("--minutes", type=float, nargs=2, default=(8.0, 3.0),
                    metavar=("LLVIP", "DRONE"), help="fine-tune time budgets, minutes")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--results", type=Path, default=REPO / "docs" / "real_results.json")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "real.md")
    ap.add_argument("--thermal", action="store_true",
                    help="only compare real and synthetic thermal statistics (seconds)")
    ap.add_argument("--live", nargs=2, type=Path, default=None, metavar=("BAG", "MODEL"),
                    help="only replay a make-bag bag through the real node (see live_replay)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.live:
        res = live_replay(args.live[0], args.live[1], args.work / "live", args.threads)
        write_json(args.work / "live" / "live.json", res)
        print(json.dumps(res, indent=2, default=str))
        return 0
    if args.thermal:
        png = REPO / "docs" / "images" / "real_vs_synth_thermal.png"
        st = thermal_realism(args.real, png)
        write_json(args.results.with_name("real_thermal.json"), st)
        write_docs({}, args.doc, _thermal_text(st, png), T_BEGIN, T_END)
        print(_thermal_text(st, png))
        return 0
    torch.set_num_threads(args.threads)
    from dlrmamba_core.engine.finetune import model_from_onnx

    t0 = time.monotonic()
    onnx_in = shipped_model(args.model)
    log.info("starting model: %s", onnx_in)
    shipped = model_from_onnx(onnx_in)
    budgets = dict(zip(SETS, args.minutes, strict=True))
    results: dict[str, Any] = {
        "created_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu_model(), "threads": args.threads, "python": platform.python_version(),
        "torch": torch.__version__, "model": _repo_relative(onnx_in),
        "note": "tiny, one-scene (LLVIP) / six-pair (DroneVehicle), correlated REAL data",
        "sets": {}}
    for key in args.sets:
        log.info("%s: fine-tune budget %.1f min", key, budgets[key])
        results["sets"][key] = run_set(key, args.real, args.work, budgets[key], shipped,
                                       shipped_onnx=onnx_in)
    results["total_s"] = round(time.monotonic() - t0, 1)
    write_json(args.results, results)
    write_docs(results, args.doc)
    print(_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
