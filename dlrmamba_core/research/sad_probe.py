"""How far a student's internals are from its teacher's: the quantities SAD pulls on, measured.

    python -m dlrmamba_core.research.sad_probe --teacher models/dlrmamba_teacher.onnx \
        --student models/dlrmamba_student_p5.onnx --data data/synth2026 --split val \
        --out docs/sad_probe.md

Structure-Aware Distillation adds three terms to the task loss (``losses.distill``): L_SVD
(the student's low-rank factors against the teacher's truncated SVD), L_state (chunk-boundary
scan states against a projection of the teacher's) and L_feat (every SS2D block's output
against the teacher's). Whether those terms can add anything depends on how far a student
trained *without* them drifts from the teacher in exactly these quantities. This script
measures them, in eval mode on the frames of one split (no augmentation), for:

* ``svd init``: the student built from the teacher by truncated SVD
  (``models.student_from_teacher``), before any training: where every SAD run starts;
* each ``--student`` (a trained student of the same teacher, ``.onnx`` or ``.pt``);
* ``random init`` (left out with ``--no-random``): a freshly initialised student, the far end.

Per SS2D block it reports ``feat`` (the scale-free output error that L_feat is, 0 = equal,
1 = unrelated at equal scale), ``state@init`` (L_state with the projection SAD starts from:
the teacher's kept states) and ``state@lsq`` (L_state with the best linear projection per
scan direction, fitted by least squares on the first half of the frames and scored on the
second: how much of the teacher's state dynamics the student's states carry at all). Per
feature level it reports the same scale-free error at the backbone outputs (P3-P5, where the
convolution stages the student shares with the teacher end) and at the neck outputs. ``svd``
is L_SVD itself (mean squared distance of the factors to their SVD targets).

Beside them, each model's mAP50 over the whole split (left out with ``--no-map``): how close
to the teacher a student is, next to what it detects. ``--rank-ratio`` / ``--state-ratio``
build the SVD init for students of another rank (e.g. the rank sweep's).

``--truncation R [R ...]`` measures instead what the truncation alone costs: the untrained SVD
init of each ``--teacher`` (repeatable there) at each rank ratio, with its parameters, its mean
SS2D output error and its mAP50 over the whole split (``docs/truncation.md``).

All numbers come from a real forward pass of both models over the frames; the table is
printed and, with ``--out``, written as markdown.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
import contextlib
import logging
import os
import sys
from typing import Any, cast

from dlrmamba_core.errors import ConfigError, DlrmambaError
from dlrmamba_core.research import short_names

log = logging.getLogger(__name__)

DEFAULT_FRAMES = 64


def load_detector(path: str | os.PathLike[str]) -> tuple[Any, tuple[int, int]]:
    """A torch detector (eval mode, float32, CPU) from a shipped ``.onnx`` or a ``.pt``, and
    the input (h, w) it was trained for."""
    from dlrmamba_core.engine.finetune import load_init

    model, meta = load_init(path)
    h, w = meta["input_hw"]
    return model.float().eval(), (int(h), int(w))


def probe_frames(data: str | os.PathLike[str], fmt: str, split: str, input_hw: tuple[int, int],
                 frames: int) -> tuple[Any, Any]:
    """The first ``frames`` pairs of a split, letterboxed to the model input: (rgb, thermal)."""
    import torch

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.engine.datasets import collate, detection_dataset

    ds: Any = detection_dataset(open_dataset(fmt, data, split), input_hw, augment=False)
    n = min(frames, len(ds))
    if n < 4:
        raise ConfigError(f"{data} ({split}) has {len(ds)} frames: the probe needs at least 4 "
                          "(half fit the state projection, half score it)")
    batch = collate([ds[i] for i in range(n)])
    return batch["rgb"].to(torch.float32), batch["thermal"].to(torch.float32)


@contextlib.contextmanager
def _level_outputs(model: Any) -> Any:
    """Record the backbone's and the neck's P3-P5 outputs of the next forward pass."""
    rec: dict[str, list[Any]] = {}

    def keep(name: str) -> Any:
        def hook(_m: Any, _inp: Any, out: Any) -> None:
            rec[name] = [t.detach() for t in out]
        return hook

    handles = [model.backbone.register_forward_hook(keep("backbone")),
               model.neck.register_forward_hook(keep("neck"))]
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


def run_model(model: Any, rgb: Any, thermal: Any, batch: int = 8) -> dict[str, Any]:
    """One eval-mode pass over the frames: SS2D outputs and states, backbone and neck levels."""
    import torch

    from dlrmamba_core.models.distill import capture

    blocks: dict[str, dict[str, list[Any]]] = {}
    levels: dict[str, list[list[Any]]] = {"backbone": [], "neck": []}
    with torch.no_grad():
        for i in range(0, len(rgb), batch):
            with capture(model) as rec, _level_outputs(model) as lv:
                model(rgb[i:i + batch], thermal[i:i + batch])
            for name, r in rec.items():
                d = blocks.setdefault(name, {"output": [], "states": []})
                d["output"].append(r["output"].detach().float())
                if "states" not in r:
                    raise ConfigError(f"SS2D block {name!r} recorded no scan states: the probe "
                                      "needs the chunked scan (scan='chunked')")
                d["states"].append(r["states"].detach().float())
            for k in levels:
                levels[k].append(lv[k])
    out: dict[str, Any] = {
        "blocks": {n: {k: torch.cat(v) for k, v in d.items()} for n, d in blocks.items()}}
    for k, per_batch in levels.items():
        out[k] = [torch.cat([b[j] for b in per_batch]) for j in range(len(per_batch[0]))]
    return out


def lsq_state_error(student: Any, teacher: Any, k: int) -> float:
    """L_state with the best linear map per scan direction (fit on half, score on the other).

    ``student`` (B, K*E, r, C) and ``teacher`` (B, K*E, N, C) boundary states, channels
    direction-major; per direction one ``N -> r`` matrix shared by its channels and chunks,
    as ``losses.distill.StateProjection``.
    """
    import torch

    from dlrmamba_core.losses.distill import scaled_mse

    b, ke, r, c = student.shape
    n = teacher.shape[2]
    half = b // 2
    s = student.reshape(b, k, ke // k, r, c)
    t = teacher.reshape(b, k, ke // k, n, c)
    proj = torch.empty(k, r, n, dtype=torch.float64)
    for d in range(k):  # rows: (frame, channel, chunk) samples of direction d
        x = t[:half, d].permute(0, 1, 3, 2).reshape(-1, n).double()
        y = s[:half, d].permute(0, 1, 3, 2).reshape(-1, r).double()
        proj[d] = torch.linalg.lstsq(x, y).solution.T
    pred = torch.einsum("krn,bkenc->bkerc", proj, t[half:].double())
    return float(scaled_mse(s[half:].double(), pred))


def compare(student: Any, sad: Any, s_run: dict[str, Any], t_run: dict[str, Any]
            ) -> dict[str, Any]:
    """Every probe quantity of one student against the teacher (see the module docstring).

    ``sad``: the ``losses.distill.StructureAwareDistillation`` of the teacher and its SVD
    student at the students' ranks (its SVD targets and initial state projections).
    """
    import torch

    from dlrmamba_core.losses.distill import StateProjection, scaled_mse

    with torch.no_grad():
        row: dict[str, Any] = {"svd": float(sad.svd_loss(student)), "blocks": {}, "levels": {}}
        for name, proj in zip(sad.block_names, sad.state_proj, strict=True):
            s, t = s_run["blocks"][name], t_run["blocks"][name]
            k = int(cast(StateProjection, proj).weight.shape[0])  # scan directions
            row["blocks"][name] = {
                "feat": float(scaled_mse(s["output"], t["output"])),
                "state_init": float(scaled_mse(s["states"], proj(t["states"]))),
                "state_lsq": lsq_state_error(s["states"], t["states"], k),
            }
    for where in ("backbone", "neck"):
        for j, (a, b) in enumerate(zip(s_run[where], t_run[where], strict=True)):
            row["levels"][f"{where} P{j + 3}"] = float(scaled_mse(a, b))
    return row


def split_map50(model: Any, dataset: Any, input_hw: tuple[int, int]) -> float:
    """COCO mAP50 (percent) of a torch detector over a whole split, as ``dlrmamba eval``."""
    from dlrmamba_core.engine.evaluate import evaluate

    return float(evaluate(model, dataset, input_hw=input_hw, progress=False)["mAP50"])


def _teacher_on_frames(teacher_path: str, data: str, fmt: str, split: str, frames: int
                       ) -> tuple[Any, tuple[int, int], Any, Any, dict[str, Any]]:
    """The full-rank teacher (refused if low-rank), its input size, the probe frames at that
    size and the teacher's run over them (:func:`run_model`)."""
    teacher, hw = load_detector(teacher_path)
    if teacher.cfg.rank_ratio is not None:
        raise ConfigError(f"{teacher_path} is a low-rank model ({teacher.cfg.variant}); "
                          "--teacher takes the full-rank teacher the students came from")
    rgb, thermal = probe_frames(data, fmt, split, hw, frames)
    return teacher, hw, rgb, thermal, run_model(teacher, rgb, thermal)


def probe(teacher_path: str, students: Sequence[str], data: str, fmt: str = "synth",
          split: str = "val", frames: int = DEFAULT_FRAMES, random_init: bool = True,
          seed: int = 0, with_map: bool = True, rank_ratio: float | None = None,
          state_ratio: float | None = None) -> dict[str, Any]:
    """Measure every student (and the SVD init, and a random init) against the teacher.

    With ``with_map`` each row (and the teacher) also gets its mAP50 over the whole split, so
    the distance to the teacher can be read beside what it detects. ``rank_ratio`` and
    ``state_ratio`` (default: the registry's student) build the SVD init, and must be those
    of the students (e.g. a rank-sweep student).

    Returns:
        ``{"teacher", "frames", "split", "data", "teacher_map50", "rows": {label:
        compare(...) + "map50"}}``.
    """
    import torch

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.losses.distill import StructureAwareDistillation
    from dlrmamba_core.models import student_from_teacher
    from dlrmamba_core.models.config import STUDENT_RANK_RATIO, STUDENT_STATE_RATIO
    from dlrmamba_core.models.student import redraw_parameters

    teacher, hw, rgb, thermal, t_run = _teacher_on_frames(teacher_path, data, fmt, split,
                                                          frames)
    ratios = {"rank_ratio": STUDENT_RANK_RATIO if rank_ratio is None else rank_ratio,
              "state_ratio": STUDENT_STATE_RATIO if state_ratio is None else state_ratio}
    torch.manual_seed(seed)
    init = student_from_teacher(teacher, **ratios).eval()
    models: dict[str, Any] = {"svd init": init}
    names = short_names([str(p) for p in students])
    for path in students:
        m, _ = load_detector(path)
        if m.cfg.variant != init.cfg.variant:
            raise ConfigError(f"{path} is a {m.cfg.variant}; the SVD student of "
                              f"{teacher_path} is a {init.cfg.variant}: pass students of "
                              "that teacher")
        if (m.cfg.rank_ratio, m.cfg.d_state) != (init.cfg.rank_ratio, init.cfg.d_state):
            raise ConfigError(f"{path} has rank ratio {m.cfg.rank_ratio} and {m.cfg.d_state} "
                              f"states, the SVD init {init.cfg.rank_ratio} and "
                              f"{init.cfg.d_state}: pass --rank-ratio / --state-ratio of the "
                              "student")
        models[names[str(path)]] = m
    if random_init:
        models["random init"] = redraw_parameters(
            student_from_teacher(teacher, **ratios)).eval()
    sad = StructureAwareDistillation(init, teacher)  # the same targets for every student
    whole = open_dataset(fmt, data, split) if with_map else None
    rows = {}
    for label, m in models.items():
        log.info("probing %s", label)
        rows[label] = compare(m, sad, run_model(m, rgb, thermal), t_run)
        if whole is not None:
            rows[label]["map50"] = split_map50(m, whole, hw)
    return {"teacher": str(teacher_path), "frames": len(rgb), "split": split, "data": str(data),
            "teacher_map50": split_map50(teacher, whole, hw) if whole is not None else None,
            "rows": rows}


def truncation_sweep(teacher_path: str, ratios: Sequence[float], data: str,
                     fmt: str = "synth", split: str = "val", frames: int = DEFAULT_FRAMES,
                     state_ratio: float | None = None) -> dict[str, Any]:
    """What the truncated SVD alone costs: the untrained SVD init of ``teacher_path`` at each
    rank ratio, its parameters, its mean SS2D output error against the teacher and its mAP50
    over the whole split. Where every SAD or task-only student starts, so the accuracy a
    student must recover by training at that rank.

    Returns:
        ``{"teacher", "teacher_params_M", "teacher_map50", "split", "data", "frames",
        "rows": [{"rank_ratio", "params_M", "feat", "map50"}]}``.
    """
    import torch

    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.losses.distill import StructureAwareDistillation
    from dlrmamba_core.models import student_from_teacher
    from dlrmamba_core.models.config import STUDENT_STATE_RATIO

    if not ratios or any(not 0.0 < r <= 1.0 for r in ratios):
        raise ConfigError(f"--truncation takes rank ratios in (0, 1], got {list(ratios)}")
    teacher, hw, rgb, thermal, t_run = _teacher_on_frames(teacher_path, data, fmt, split,
                                                          frames)
    whole = open_dataset(fmt, data, split)

    def params(m: Any) -> float:
        return sum(p.numel() for p in m.parameters()) / 1e6

    rows = []
    for r in sorted(ratios):
        log.info("truncating at rank ratio %.2f", r)
        init = student_from_teacher(teacher, rank_ratio=r, state_ratio=(
            STUDENT_STATE_RATIO if state_ratio is None else state_ratio)).eval()
        with torch.no_grad():
            c = compare(init, StructureAwareDistillation(init, teacher),
                        run_model(init, rgb, thermal), t_run)
        feats = [b["feat"] for b in c["blocks"].values()]
        rows.append({"rank_ratio": r, "params_M": params(init),
                     "feat": sum(feats) / len(feats), "map50": split_map50(init, whole, hw)})
    return {"teacher": str(teacher_path), "teacher_params_M": params(teacher),
            "teacher_map50": split_map50(teacher, whole, hw), "split": split,
            "data": str(data), "frames": len(rgb), "rows": rows}


def render_truncation(result: dict[str, Any]) -> str:
    """The markdown table of :func:`truncation_sweep`."""
    t = result["teacher_map50"]
    lines = [f"Teacher `{result['teacher']}`: {result['teacher_params_M']:.2f} M parameters, "
             f"mAP50 {t:.2f} over the whole `{result['split']}` split of `{result['data']}`. "
             "Each row is its truncated SVD at one rank ratio, untrained (where a student of "
             "that rank starts); `SS2D feat` is the mean scale-free output error of its SS2D "
             f"blocks against the teacher's on the first {result['frames']} frames (0 = equal, "
             "about 1 = unrelated).", "",
             "| rank ratio | params (M) | SS2D feat | mAP50 | vs teacher |",
             "|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['rank_ratio']:.2f} | {r['params_M']:.2f} | {r['feat']:.3f} | "
                     f"{r['map50']:.2f} | {r['map50'] - t:+.2f} |")
    return "\n".join(lines) + "\n"


def render(result: dict[str, Any]) -> str:
    """The probe as markdown: one table per quantity group, students as rows."""
    rows = result["rows"]
    labels = list(rows)
    first = rows[labels[0]]
    blocks = list(first["blocks"])
    short = {b: b.replace("backbone.stages.", "stage ").replace(".blocks.", " block ")
             .replace(".ssm", "") for b in blocks}
    has_map = result.get("teacher_map50") is not None
    teacher_map = (f" (mAP50 {result['teacher_map50']:.2f} on the whole {result['split']} "
                   "split)") if has_map else ""
    lines = [f"Teacher `{result['teacher']}`{teacher_map}; the internals on the first "
             f"{result['frames']} frames of `{result['data']}` ({result['split']} split), eval "
             "mode, no augmentation. Errors are scale-free (MSE over the mean square of both "
             "sides: 0 = equal, about 1 = unrelated at the same scale)."
             + (" mAP50: each student over the whole split." if has_map else ""), "",
             "| student |" + (" mAP50 |" if has_map else "") + " L_SVD | " + " | ".join(
                 f"{short[b]}: {q}" for b in blocks for q in ("feat", "state@init",
                                                              "state@lsq")) + " |",
             "|---|" + "---:|" * (3 * len(blocks) + 1 + has_map)]
    for label in labels:
        r = rows[label]
        cells = ([f"{r['map50']:.2f}"] if has_map else []) + [f"{r['svd']:.2e}"]
        for b in blocks:
            v = r["blocks"][b]
            cells += [f"{v['feat']:.3f}", f"{v['state_init']:.3f}", f"{v['state_lsq']:.3f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    levels = list(first["levels"])
    lines += ["", "| student | " + " | ".join(levels) + " |",
              "|---|" + "---:|" * len(levels)]
    for label in labels:
        lines.append(f"| {label} | " + " | ".join(
            f"{rows[label]['levels'][lv]:.3f}" for lv in levels) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True, action="append",
                    help="the full-rank teacher (.onnx or .pt); with --truncation repeatable")
    ap.add_argument("--student", action="append", default=[],
                    help="a trained student of that teacher (.onnx or .pt); repeatable")
    ap.add_argument("--data", required=True, help="dataset root")
    ap.add_argument("--data-format", default="synth")
    ap.add_argument("--split", default="val")
    ap.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    ap.add_argument("--no-random", action="store_true", help="skip the random-init row")
    ap.add_argument("--rank-ratio", type=float, default=None,
                    help="the students' rank ratio (default: the registry's student)")
    ap.add_argument("--state-ratio", type=float, default=None,
                    help="the students' state ratio (default: the registry's student)")
    ap.add_argument("--no-map", action="store_true",
                    help="skip the mAP50 of each model over the whole split")
    ap.add_argument("--truncation", type=float, nargs="+", metavar="RATIO",
                    help="instead of the probe: the untrained SVD init at each of these rank "
                         "ratios, its SS2D output error and mAP50 (what the truncation alone "
                         "costs)")
    ap.add_argument("--out", help="write the tables as markdown here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from dlrmamba_core.research import publish

    cmd = list(argv if argv is not None else sys.argv[1:])
    if args.truncation and args.student:
        print("error: --truncation measures the untrained SVD init; pass no --student",
              file=sys.stderr)
        return 2
    if args.truncation:
        try:
            tables = [render_truncation(truncation_sweep(
                t, args.truncation, args.data, args.data_format, args.split, args.frames,
                args.state_ratio)) for t in args.teacher]
        except DlrmambaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        publish("\n".join(tables), args.out, "What the truncated SVD alone costs",
                "dlrmamba_core.research.sad_probe", cmd)
        return 0
    if len(args.teacher) > 1:
        print("error: one --teacher per probe (several only with --truncation)",
              file=sys.stderr)
        return 2
    try:
        res = probe(args.teacher[0], args.student, args.data, args.data_format, args.split,
                    args.frames, random_init=not args.no_random, with_map=not args.no_map,
                    rank_ratio=args.rank_ratio, state_ratio=args.state_ratio)
    except DlrmambaError as exc:  # a bad file, data or setting: said in one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    publish(render(res), args.out, "SAD probe: the student's internals against the teacher's",
            "dlrmamba_core.research.sad_probe", cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
