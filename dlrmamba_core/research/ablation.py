"""What each part of a trained detector is worth: mAP50 with parts switched off at inference.

    python -m dlrmamba_core.research.ablation models/dlrmamba_teacher.onnx \
        models/dlrmamba_student_p5.onnx --data data/synth2026 --split val \
        --out docs/ablation.md

For every model (``.onnx`` traced back to torch, or ``.pt``) it evaluates COCO mAP50 over a
split with nothing changed, then once per ablation, the model's weights untouched:

* ``SS2D off, stage i``: every SS2D block of backbone stage ``i`` returns zeros, so the block
  keeps only its residual path (and its MLP, where it has one): what the selective scan of that
  stage adds;
* ``SS2D off, all``: the same for every SS2D block of the model;
* ``P3 = 0`` / ``P4 = 0`` / ``P5 = 0``: the backbone's output at that stride is replaced by
  zeros before the neck: what the neck and head take from that level.

A part whose removal costs nothing on the data is a part distillation of that part cannot
improve either (docs/distillation.md). Removing a part is not retraining without it: a model
trained without its SS2D blocks could do better than the ablated one.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
import contextlib
import logging
import sys
from typing import Any

from dlrmamba_core.errors import DlrmambaError
from dlrmamba_core.research import short_names

log = logging.getLogger(__name__)


@contextlib.contextmanager
def zeroed(modules: Sequence[Any]) -> Iterator[None]:
    """Within the block, each module's forward returns zeros of its output's shape."""
    import torch

    handles = [m.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
               for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def level_zeroed(model: Any, level: int) -> Iterator[None]:
    """Within the block, the backbone's output ``level`` (0 = P3) is zeros."""
    import torch

    def hook(_m: Any, _i: Any, out: Any) -> Any:
        return [torch.zeros_like(t) if j == level else t for j, t in enumerate(out)]

    handle = model.backbone.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def ss2d_by_stage(model: Any) -> dict[str, list[Any]]:
    """The SS2D blocks of a model, grouped by backbone stage (``"stage 2"``) in stage order."""
    from dlrmamba_core.layers import SS2D

    groups: dict[str, list[Any]] = {}
    for name, m in model.named_modules():
        if not isinstance(m, SS2D):
            continue
        parts = name.split(".")
        stage = (f"stage {parts[2]}" if parts[:2] == ["backbone", "stages"] and len(parts) > 2
                 else parts[0])
        groups.setdefault(stage, []).append(m)
    return groups


def ablate(path: str, data: str, fmt: str = "synth", split: str = "val",
           limit: int | None = None) -> dict[str, Any]:
    """mAP50 of one model whole and under each ablation (see the module docstring).

    Returns:
        ``{"model", "variant", "input_hw", "mAP50": {ablation: value}}``, "full" first.
    """
    from dlrmamba_core.data.readers import open_dataset
    from dlrmamba_core.engine.evaluate import evaluate
    from dlrmamba_core.engine.finetune import load_init

    model, meta = load_init(path)
    model = model.float().eval()
    hw = tuple(meta["input_hw"])
    ds = open_dataset(fmt, data, split)

    def score() -> float:
        return float(evaluate(model, ds, input_hw=hw, limit=limit, progress=False)["mAP50"])

    res: dict[str, float] = {"full": score()}
    groups = ss2d_by_stage(model)
    if not groups:
        log.info("%s has no SS2D blocks: only the level ablations", path)
    for stage, mods in groups.items():
        with zeroed(mods):
            res[f"SS2D off, {stage}"] = score()
    if len(groups) > 1:
        with zeroed([m for mods in groups.values() for m in mods]):
            res["SS2D off, all"] = score()
    for level in range(3):
        with level_zeroed(model, level):
            res[f"P{level + 3} = 0"] = score()
    log.info("%s: %s", path, res)
    return {"model": str(path), "variant": model.cfg.variant, "input_hw": list(hw),
            "mAP50": res}


def render(rows: Sequence[dict[str, Any]], data: str, split: str) -> str:
    """One markdown table: a row per model, the mAP50 and its change under each ablation."""
    seen = {c for r in rows for c in r["mAP50"] if c != "full"}
    # SS2D columns in stage order, then all of them, then the levels P3-P5
    cols = sorted(c for c in seen if c.startswith("SS2D off, ") and c != "SS2D off, all")
    cols += [c for c in ("SS2D off, all", "P3 = 0", "P4 = 0", "P5 = 0") if c in seen]
    cols += sorted(seen - set(cols))
    lines = [f"mAP50 over the `{split}` split of `{data}`; each ablation's change from the whole "
             "model in brackets (an empty cell: the model has no such part).", "",
             "| model | variant | input | mAP50 | " + " | ".join(cols) + " |",
             "|---|---|---|---:|" + "---:|" * len(cols)]
    names = short_names([r["model"] for r in rows])
    for r in rows:
        m = r["mAP50"]
        cells = [f"{m[c]:.2f} ({m[c] - m['full']:+.2f})" if c in m else "" for c in cols]
        lines.append(f"| `{names[r['model']]}` | {r['variant']} | "
                     f"{r['input_hw'][0]}x{r['input_hw'][1]} | {m['full']:.2f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="model files (.onnx or .pt)")
    ap.add_argument("--data", required=True, help="dataset root")
    ap.add_argument("--data-format", default="synth")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--out", help="write the table as markdown here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        rows = [ablate(m, args.data, args.data_format, args.split, args.limit)
                for m in args.models]
    except DlrmambaError as exc:  # a bad file, data or setting: said in one line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from dlrmamba_core.research import publish

    publish(render(rows, args.data, args.split), args.out,
            "Ablation: what each part of a trained model is worth",
            "dlrmamba_core.research.ablation", list(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
