"""The recipe that trains and evaluates the models we ship, on the SYNTHETIC benchmark.

    python -m dlrmamba_core.engine.pipeline --out runs/synth --budget-min 16

Stages (each skipped when its output exists, so a rerun on the same folder resumes):

1. ``data/``: the synthetic benchmark from ``data.synthetic.write_frame_dataset`` (train / val /
   test splits, fixed seed); ``cache/``: the train and val splits pre-processed once
   (``engine.cache``), shared by every run (``--no-cache``: each run reads the images).
2. Phase A, in parallel on one GPU (small models leave most of an H100 idle, so several runs
   share it): the full-rank ``teacher`` (fused), the same detector on ``rgb`` only and on
   ``thermal`` only, the ``cnn`` yardstick and the low-rank ``student_scratch`` (same
   architecture as the distilled student, random init, task loss only).
3. Phase B, needs the teacher: ``student_sad`` (SVD init at ``MAIN_RANK`` -> SAD -> fine-tune),
   ``student_nodistill`` (the same schedule with the SVD/state/feature weights at 0: low-rank
   init + task loss only), and the rank sweep ``sweep_r050 / r055 / r060 / r065`` (SAD only).
   Phase C runs only when ``--only`` names them: the SAD losses switched off one at a time
   (``sad_no_svd``, ``sad_no_state``, ``sad_no_feat``) and ``student_sad_seed2`` /
   ``student_nodistill_seed2`` (phase B again with another seed: how far two runs of one recipe
   differ, the noise any distillation gain must clear). Phase V, also only when named: the
   ``fusion_mamba`` and ``mobilemamba`` variants trained like phase A, and ``fusion_mamba_lr``
   / ``mobilemamba_lr`` distilled from them like ``student_sad``. Phase S, also only when
   named: the faster architectures (``models.config.FAST_PAIRS``, e.g. ``teacher_p5`` then
   ``student_p5``), each teacher trained like phase A, its student distilled like
   ``student_sad``.
4. Every model's best-on-val checkpoint is evaluated on the TEST split (COCO mAP); everything
   goes to ``results.json``.
5. ``--pack DIR`` copies results, logs, curves and fp16 checkpoints into a few files for transfer.

Each run is a ``dlrmamba train`` / ``dlrmamba distill`` subprocess (the same CLI users run), with
``--resume`` from its ``last.pt`` when one exists, a time budget and ``--fit-to-time`` (the
learning-rate schedule is sized to the budget from the first epochs' speed).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
import datetime as dt
import json
import logging
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tarfile
import time
from typing import Any

from dlrmamba_core.engine.fileio import write_json
from dlrmamba_core.errors import ConfigError
from dlrmamba_core.models.config import STUDENT_RANK_RATIO, STUDENT_STATE_RATIO, state_size
from dlrmamba_core.subproc import stop_process

log = logging.getLogger("dlrmamba.pipeline")

DATA_FORMAT = "synth"
SWEEP = (0.50, 0.55, 0.60, 0.65)
ABLATE_LOSSES = ("svd", "state", "feat")  # phase C: SAD with one loss switched off
REPEAT_SEED = 2  # phase C: phase B's two students again with this seed
VARIANT_RUNS = (  # phase V: (variant, role); each also gets a distilled "<variant>_lr" run
    ("fusion_mamba", "Fusion-Mamba dual-stream feature fusion (full rank)"),
    ("mobilemamba", "MobileMamba MRFFI backbone (full rank)"),
)
# The shipped student is the registered `student` variant (<= 30% of the teacher's params);
# the paper's rank ratios 0.50..0.65 are measured by the sweep.
MAIN_RANK = STUDENT_RANK_RATIO
STATE_RATIO = STUDENT_STATE_RATIO


@dataclass
class Run:
    """One training job of the pipeline.

    Attributes:
        name: run folder name and key in results.json.
        command: "train" or "distill".
        args: CLI arguments after the command (without --out / --resume).
        needs: names of runs that must have finished first.
        phase: "A", "B", "C", "V" or "S" (C, V and S: only run when ``--only`` names them).
        info: what results.json records about it (variant, modality, rank ratio, ...).
    """

    name: str
    command: str
    args: list[str]
    needs: list[str] = field(default_factory=list)
    phase: str = "A"
    info: dict[str, Any] = field(default_factory=dict)

    def model_files(self, root: Path) -> dict[str, Path]:
        """Best-on-val model files this run produces: {label: path}."""
        d = root / self.name
        if self.command == "train":
            return {"": d / "best.pt"}
        files = {"distill": d / "distill" / "best.pt"}
        if "--finetune-epochs" in self.args and self.args[
                self.args.index("--finetune-epochs") + 1] != "0":
            files["finetune"] = d / "finetune" / "best.pt"
        return files

    def done(self, root: Path) -> bool:
        """All its model files exist and its summary was written."""
        return (root / self.name / "summary.json").is_file()

    def last_checkpoint(self, root: Path) -> Path | None:
        """The ``last.pt`` to resume from, if any (fine-tune phase first)."""
        d = root / self.name
        for p in (d / "finetune" / "last.pt", d / "distill" / "last.pt", d / "last.pt"):
            if p.is_file():
                return p
        return None


def plan(data: Path, teacher_epochs: int, distill_epochs: int, finetune_epochs: int,
         sweep_epochs: int, batch: int, workers: int, input_hw: tuple[int, int],
         phase_a_min: float, phase_b_min: float, root: Path, device: str = "cuda",
         teacher_variant: str = "teacher", cache: Path | None = None,
         val_every: int = 1, lr: float = 0.01, warmup_epochs: float = 1.0) -> list[Run]:
    """The runs of the recipe (see the module docstring).

    Every run gets a time budget (phase A: ``phase_a_min``; phase B: half of ``phase_b_min``
    for the distillation and half for the fine-tune) and ``--fit-to-time``: its epoch count
    is an upper bound, shortened so the learning-rate schedule completes within the budget.
    """
    common = ["--data", str(data), "--data-format", DATA_FORMAT, "--batch-size", str(batch),
              "--workers", str(workers), "--no-progress", "--device", device,
              "--checkpoint-every", "200", "--val-every", str(val_every), "--fit-to-time",
              "--lr", str(lr)]
    if cache is not None:
        common += ["--cache", str(cache)]
    size = ["--input-size", str(input_hw[0]), str(input_hw[1])]
    a_time = ["--max-time-min", f"{phase_a_min:.2f}"]
    train = ["--epochs", str(teacher_epochs), "--warmup-epochs", str(warmup_epochs), *common,
             *size, *a_time]
    # Same architecture as student_from_teacher(teacher, MAIN_RANK, STATE_RATIO), from scratch;
    # the single-modality models use it too, so fused vs single compares like with like.
    from dlrmamba_core.models import get_config

    r_state = state_size(STATE_RATIO, get_config(teacher_variant, 1).d_state)
    low = ["--variant", "student", "--rank-ratio", str(MAIN_RANK), "--d-state", str(r_state)]
    runs = [
        Run("teacher", "train", ["--variant", teacher_variant, *train],
            info={"variant": "teacher", "modality": "fused", "role": "full-rank teacher"}),
        Run("student_scratch", "train", [*low, *train],
            info={"variant": "student", "modality": "fused", "rank_ratio": MAIN_RANK,
                  "role": "low rank, random init, no distillation"}),
        Run("rgb", "train", [*low, "--modality", "rgb", *train],
            info={"variant": "student", "modality": "rgb", "rank_ratio": MAIN_RANK,
                  "role": "RGB only (low rank, random init)"}),
        Run("thermal", "train", [*low, "--modality", "thermal", *train],
            info={"variant": "student", "modality": "thermal", "rank_ratio": MAIN_RANK,
                  "role": "thermal only (low rank, random init)"}),
        Run("cnn", "train", ["--variant", "cnn", *train],
            info={"variant": "cnn", "modality": "fused", "role": "conv yardstick"}),
    ]
    teacher_pt = str(root / "teacher" / "best.pt")
    b_time = ["--max-time-min", f"{phase_b_min / 2:.2f}"]
    sweep_time = ["--max-time-min", f"{phase_b_min:.2f}"]  # no fine-tune phase
    distill = ["--teacher", teacher_pt, "--state-ratio", str(STATE_RATIO),
               "--warmup-epochs", str(warmup_epochs / 2), *common]
    runs.append(Run("student_sad", "distill",
                    ["--rank-ratio", str(MAIN_RANK), "--epochs", str(distill_epochs),
                     "--finetune-epochs", str(finetune_epochs), *distill, *b_time],
                    needs=["teacher"], phase="B",
                    info={"variant": "student", "modality": "fused", "rank_ratio": MAIN_RANK,
                          "role": "SVD init -> SAD -> fine-tune (shipped)"}))
    runs.append(Run("student_nodistill", "distill",
                    ["--rank-ratio", str(MAIN_RANK), "--epochs", str(distill_epochs),
                     "--finetune-epochs", str(finetune_epochs),
                     "--weights", "task=1,svd=0,state=0,feat=0", *distill, *b_time],
                    needs=["teacher"], phase="B",
                    info={"variant": "student", "modality": "fused", "rank_ratio": MAIN_RANK,
                          "role": "SVD init, task loss only (no distillation)"}))
    for r in SWEEP:
        if r == MAIN_RANK:
            continue
        runs.append(Run(f"sweep_r{round(r * 100):03d}", "distill",
                        ["--rank-ratio", str(r), "--epochs", str(sweep_epochs),
                         "--finetune-epochs", "0", *distill, *sweep_time],
                        needs=["teacher"], phase="B",
                        info={"variant": "student", "modality": "fused", "rank_ratio": r,
                              "role": "rank sweep (SAD only)"}))
    # Phase C (only when named in --only): each distillation loss switched off in turn, and the
    # two phase-B students again with another seed, to tell an effect from run-to-run noise.
    sad = ["--rank-ratio", str(MAIN_RANK), "--epochs", str(distill_epochs),
           "--finetune-epochs", str(finetune_epochs), *distill, *b_time]
    for loss in ABLATE_LOSSES:
        runs.append(Run(f"sad_no_{loss}", "distill", [*sad, "--weights", f"{loss}=0"],
                        needs=["teacher"], phase="C",
                        info={"variant": "student", "modality": "fused",
                              "rank_ratio": MAIN_RANK, "ablated_loss": loss,
                              "role": f"SAD without L_{loss} -> fine-tune"}))
    for base in ("student_sad", "student_nodistill"):
        b = next(r for r in runs if r.name == base)
        runs.append(Run(f"{base}_seed{REPEAT_SEED}", "distill",
                        [*b.args, "--seed", str(REPEAT_SEED)], needs=["teacher"], phase="C",
                        info={**b.info, "repeat_of": base, "seed": REPEAT_SEED,
                              "role": f"{b.info['role']}, seed {REPEAT_SEED}"}))
    # Phase V (only when named in --only): the other seed systems as variants. Their
    # full-rank models train like phase A, their low-rank forms are distilled from them like
    # student_sad (SVD init at MAIN_RANK -> SAD -> fine-tune).
    for variant, role in VARIANT_RUNS:
        runs.append(Run(variant, "train", ["--variant", variant, *train], phase="V",
                        info={"variant": variant, "modality": "fused", "role": role}))
        runs.append(Run(f"{variant}_lr", "distill",
                        ["--rank-ratio", str(MAIN_RANK), "--epochs", str(distill_epochs),
                         "--finetune-epochs", str(finetune_epochs),
                         "--teacher", str(root / variant / "best.pt"),
                         "--state-ratio", str(STATE_RATIO),
                         "--warmup-epochs", str(warmup_epochs / 2), *common, *b_time],
                        needs=[variant], phase="V",
                        info={"variant": f"{variant}_lr", "modality": "fused",
                              "rank_ratio": MAIN_RANK,
                              "role": f"low-rank {variant}: SVD init -> SAD -> fine-tune"}))
    # Phase S (only when named in --only): the faster architectures of [speed]
    # (models.config.FAST_PAIRS): each full-rank teacher trained like phase A, then its
    # registered student distilled from it like student_sad (SVD init -> SAD -> fine-tune).
    from dlrmamba_core.models.config import FAST_PAIRS, variant_description

    for t_variant, s_variant in FAST_PAIRS:
        runs.append(Run(t_variant, "train", ["--variant", t_variant, *train], phase="S",
                        info={"variant": t_variant, "modality": "fused",
                              "role": f"fast teacher: {variant_description(t_variant)}"}))
        runs.append(Run(s_variant, "distill",
                        ["--rank-ratio", str(MAIN_RANK), "--epochs", str(distill_epochs),
                         "--finetune-epochs", str(finetune_epochs),
                         "--teacher", str(root / t_variant / "best.pt"),
                         "--state-ratio", str(STATE_RATIO),
                         "--warmup-epochs", str(warmup_epochs / 2), *common, *b_time],
                        needs=[t_variant], phase="S",
                        info={"variant": s_variant, "modality": "fused",
                              "rank_ratio": MAIN_RANK,
                              "role": f"fast student of {t_variant}: SVD init -> SAD -> "
                                      "fine-tune"}))
        # The same schedule with the structural losses off: what SAD adds on this architecture.
        s_run = runs[-1]
        runs.append(Run(f"{s_variant}_nodistill", "distill",
                        [*s_run.args, "--weights", "task=1,svd=0,state=0,feat=0"],
                        needs=[t_variant], phase="S",
                        info={**s_run.info,
                              "role": f"fast student of {t_variant}: SVD init, task loss only "
                                      "(no distillation)"}))
    return runs


def generate_data(root: Path, n_train: int, n_val: int, n_test: int, seed: int,
                  workers: int, synth_options: list[str] | None = None) -> dict[str, Any]:
    """Write the synthetic benchmark once (``DONE.json`` marks completion).

    ``synth_options`` (``KEY=VALUE`` SynthConfig overrides) are recorded in the returned info,
    so results of differently generated benchmarks are never merged into one table. A
    finished dataset generated with other options is an error, not silently reused.
    """
    from dlrmamba_core.data.synthetic import (
        GENERATOR_VERSION,
        SynthConfig,
        with_options,
        write_frame_dataset,
    )

    opts = sorted(synth_options or [])
    done = root / "DONE.json"
    if done.is_file():
        info = json.loads(done.read_text())
        if info.get("generator_version") != GENERATOR_VERSION:
            raise ConfigError(f"{root} holds a benchmark of generator version "
                              f"{info.get('generator_version', 1)}, this code generates version "
                              f"{GENERATOR_VERSION}: use another --out or delete it")
        if sorted(info.get("synth_options") or []) != opts:
            raise ConfigError(f"{root} holds a benchmark generated with synthetic options "
                              f"{info.get('synth_options') or []}, not {opts}: use another "
                              "--out or delete it")
        return info
    cfg = with_options(SynthConfig(), opts)
    t0 = time.monotonic()
    n = n_train + n_val + n_test
    write_frame_dataset(root, n, (("train", n_train / n), ("val", n_val / n),
                                  ("test", n_test / n)), seed, cfg, workers=workers,
                        overwrite=True)
    info = {"generator": "dlrmamba_core.data.synthetic.write_frame_dataset",
            "generator_version": GENERATOR_VERSION, "seed": seed,
            "splits": {"train": n_train, "val": n_val, "test": n_test},
            "seconds": round(time.monotonic() - t0, 1)}
    if opts:
        info["synth_options"] = opts
    write_json(done, info)
    return info


def build_caches(data: Path, cache: Path, input_hw: tuple[int, int]) -> Path:
    """Pre-process the train and val splits once (``engine.cache``) for all runs to share."""
    from dlrmamba_core.engine.cache import cached_dataset
    from dlrmamba_core.engine.runs import open_pairs

    t0 = time.monotonic()
    for split in ("train", "val"):
        pairs = open_pairs(DATA_FORMAT, data, split)
        cached_dataset(pairs, DATA_FORMAT, data, split, input_hw, cache, augment=False,
                       workers=os.cpu_count() or 4)
    log.info("sample cache ready in %.0f s: %s", time.monotonic() - t0, cache)
    return cache


def _launch(run: Run, root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = root / run.name
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dlrmamba_core.cli", run.command, *run.args, "--out", str(out)]
    last = run.last_checkpoint(root)
    if last is not None:
        cmd += ["--resume", str(last)]
    log.info("start %s: %s", run.name, " ".join(cmd))
    logf = open(out / "log.txt", "ab")  # noqa: SIM115 (closed when the process ends)
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    proc._logf = logf  # type: ignore[attr-defined]
    return proc


def run_all(runs: list[Run], root: Path, parallel: int, stall_s: float | None = None,
            deadline_s: float | None = None) -> dict[str, str]:
    """Run the jobs, ``parallel`` at a time, respecting ``needs``; returns {name: status}.

    Args:
        runs: the jobs.
        root: the pipeline's output folder.
        parallel: jobs at a time.
        stall_s: stop a job whose ``log.txt`` has not grown for this long (status
            ``stalled``): a hung job must not eat the machine's remaining time.
        deadline_s: stop every job still running this many seconds after the start (status
            ``stopped``; the best-on-val models saved so far are still evaluated) and start
            no new one.
    """
    t_start = time.monotonic()
    # Parallel runs share the host's cores: without a cap every process starts one BLAS/OpenMP
    # thread per core, and the oversubscribed threads make CPU work (the SVD init of a
    # student, data loading) crawl; each run gets its share unless the caller set one.
    threads = str(max(1, (os.cpu_count() or 1) // max(1, parallel)))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if not env.get(var):
            env[var] = threads
    status = {r.name: ("done" if r.done(root) else "pending") for r in runs}
    for r in runs:  # a need outside this selection (--only) counts when its files exist
        for n in r.needs:
            if n not in status:
                status[n] = "done" if (root / n / "best.pt").is_file() else "failed"
    active: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    growth: dict[str, tuple[int, float]] = {}  # name -> (log size, when it last grew)

    def end(name: str, why: str) -> None:
        proc, _ = active.pop(name)
        stop_process(proc)
        proc._logf.close()  # type: ignore[attr-defined]
        status[name] = why

    while any(s in ("pending", "running") for s in status.values()):
        if deadline_s is not None and time.monotonic() - t_start >= deadline_s:
            for name in list(active):
                log.warning("%s: pipeline deadline of %.0f s reached, stopping it", name,
                            deadline_s)
                end(name, "stopped")
            for name, st in status.items():
                if st == "pending":
                    status[name] = "skipped"
            write_json(root / "status.json", status)
            break
        for r in runs:
            if status[r.name] != "pending" or len(active) >= parallel:
                continue
            if any(status[n] not in ("done", "pending", "running") for n in r.needs):
                status[r.name] = "skipped"
                continue
            if all(status[n] == "done" for n in r.needs):
                active[r.name] = (_launch(r, root, env), time.monotonic())
                status[r.name] = "running"
        time.sleep(2.0)
        for name, (proc, t0) in list(active.items()):
            rc = proc.poll()
            if rc is None:
                size = (root / name / "log.txt").stat().st_size
                last_size, since = growth.get(name, (-1, time.monotonic()))
                if size != last_size:
                    growth[name] = (size, time.monotonic())
                elif stall_s is not None and time.monotonic() - since >= stall_s:
                    log.error("%s: no log output for %.0f s, stopping it (see %s)", name,
                              stall_s, root / name / "log.txt")
                    end(name, "stalled")
                continue
            proc._logf.close()  # type: ignore[attr-defined]
            del active[name]
            ok = rc == 0
            status[name] = "done" if ok else "failed"
            if ok:
                write_json(root / name / "summary.json",
                           {"seconds": round(time.monotonic() - t0, 1), "rc": rc})
            log.info("%s %s (rc %d, %.0f s)", name, status[name], rc, time.monotonic() - t0)
        write_json(root / "status.json", status)
    return status


def evaluate_all(runs: list[Run], root: Path, data: Path, device: str) -> dict[str, Any]:
    """Test-split COCO metrics of every run's best-on-val model(s)."""
    from dlrmamba_core.engine.runs import evaluate_file

    results: dict[str, Any] = {}
    for r in runs:
        for label, path in r.model_files(root).items():
            key = f"{r.name}/{label}" if label else r.name
            if not path.is_file():
                results[key] = {"error": f"{path} missing", **r.info}
                continue
            m = evaluate_file(path, DATA_FORMAT, data, "test", root / "eval" / key.replace(
                "/", "_"), batch_size=32, device=device)
            from dlrmamba_core.models.io import load_model

            _, meta = load_model(path)
            results[key] = {**r.info, "checkpoint": str(path.relative_to(root)),
                            "config": meta["config"], "val": (meta.get("extra") or {}).get(
                                "val"),
                            "test": {k: m[k] for k in ("mAP50", "mAP50_95", "per_class",
                                                       "num_images", "num_gt")}}
            summary = root / r.name / "summary.json"
            if summary.is_file():
                results[key]["train_seconds"] = json.loads(summary.read_text())["seconds"]
            log.info("test %s: mAP50 %.2f mAP50:95 %.2f", key, m["mAP50"], m["mAP50_95"])
    return results


def pack(root: Path, dest: Path) -> list[Path]:
    """Copy results into <= 8 files for transfer: results.json, models (fp16), logs."""
    import torch

    dest.mkdir(parents=True, exist_ok=True)
    files = []
    if (root / "results.json").is_file():
        files.append(Path(shutil.copy(root / "results.json", dest / "results.json")))
    models = dest / "models_fp16.tar"
    with tarfile.open(models, "w") as tar:
        for pt in sorted(root.glob("*/best.pt")) + sorted(root.glob("*/*/best.pt")):
            ckpt = torch.load(pt, map_location="cpu", weights_only=True)
            # fp16 halves the transfer; the ONNX built from it is re-evaluated where it lands.
            ckpt["state_dict"] = {k: (v.half() if v.is_floating_point() else v)
                                  for k, v in ckpt["state_dict"].items()}
            tmp = dest / "tmp.pt"
            torch.save(ckpt, tmp)
            tar.add(tmp, arcname=str(pt.relative_to(root)))
            tmp.unlink()
    files.append(models)
    logs = dest / "logs.tar.gz"
    with tarfile.open(logs, "w:gz") as tar:
        for pattern in ("*.json", "*/log.txt", "*/metrics.csv", "*/curves.png",
                        "*/*/metrics.csv", "*/*/curves.png", "*/*/log.txt", "*/summary.json",
                        "eval/*/metrics.json", "eval/*/*.png", "data/DONE.json"):
            for p in sorted(root.glob(pattern)):
                tar.add(p, arcname=str(p.relative_to(root)))
    files.append(logs)
    return files


def probe_speed(variant: str, batch: int, input_hw: tuple[int, int], steps: int = 20,
                device: str = "cuda", compile_model: bool = False) -> dict[str, Any]:
    """Optimizer steps per second of one variant on random inputs (for sizing the epochs).

    Random tensors (not data) are used: this measures the model, not the data loader.
    """
    import torch

    from dlrmamba_core.engine.trainer import DetectionTask, TrainConfig, build_optimizer
    from dlrmamba_core.models import build_model

    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    h, w = input_hw
    model = build_model(variant, 7)
    task = DetectionTask(model).to(device)
    opt = build_optimizer(task, TrainConfig())
    fwd = torch.compile(task) if compile_model else task
    rgb = torch.rand(batch, 3, h, w, device=device)
    thermal = torch.rand(batch, 1, h, w, device=device)
    n = 4 * batch
    xy = torch.rand(n, 2, device=device) * torch.tensor([w - 40.0, h - 40.0], device=device)
    wh = 8 + torch.rand(n, 2, device=device) * 30
    targets = torch.cat([torch.arange(n, device=device)[:, None] % batch,
                         torch.randint(0, 7, (n, 1), device=device), xy, xy + wh], 1).float()

    def step() -> None:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                            enabled=device == "cuda"):
            loss, _ = fwd(rgb, thermal, targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_warm = time.perf_counter()
    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / steps
    return {"variant": variant, "batch": batch, "compile": compile_model,
            "warmup_s": round(t0 - t_warm, 1), "step_s": round(sec, 4),
            "images_per_s": round(batch / sec, 1)}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dlrmamba_core.engine.pipeline``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--synth-opt", action="append", default=[], metavar="KEY=VALUE",
                    help="generator setting of the benchmark (SynthConfig field), e.g. "
                         "night_light=0.0005,0.0015")
    ap.add_argument("--stall-min", type=float, default=6.0,
                    help="stop a run whose log stays silent this long (0: never)")
    ap.add_argument("--deadline-min", type=float, default=None,
                    help="wall-clock minutes from the start (data generation included) after "
                         "which running runs are stopped and the evaluation starts")
    ap.add_argument("--budget-min", type=float, default=16.0,
                    help="wall-clock minutes for training (phase A gets 45%%, B 45%%)")
    ap.add_argument("--phase-a-min", type=float, default=None,
                    help="minutes per phase-A run (default: 45%% of --budget-min)")
    ap.add_argument("--phase-b-min", type=float, default=None,
                    help="minutes per phase-B run, distill + fine-tune (default: 45%%)")
    ap.add_argument("--val-every", type=int, default=2, metavar="EPOCHS")
    ap.add_argument("--lr", type=float, default=0.01, help="peak SGD learning rate of every run")
    ap.add_argument("--warmup-epochs", type=float, default=1.0,
                    help="warmup of the training runs (distillation: half of it)")
    ap.add_argument("--no-cache", action="store_true",
                    help="train from the images (full augmentation) instead of engine.cache")
    ap.add_argument("--n-train", type=int, default=3000)
    ap.add_argument("--n-val", type=int, default=500)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--input-size", type=int, nargs=2, default=(256, 320))
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=3, help="DataLoader workers per run")
    ap.add_argument("--parallel", type=int, default=5, help="runs at a time on the GPU")
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--distill-epochs", type=int, default=12)
    ap.add_argument("--finetune-epochs", type=int, default=6)
    ap.add_argument("--sweep-epochs", type=int, default=10)
    ap.add_argument("--only", nargs="*", default=None, help="run only these runs")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--teacher-variant", default="teacher",
                    help="teacher architecture (nano: CPU smoke test of the pipeline)")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--pack", type=Path, default=None, help="also pack results into DIR")
    ap.add_argument("--probe", nargs="*", default=None, metavar="VARIANT",
                    help="only time training steps of these variants on random inputs")
    ap.add_argument("--compile", action="store_true", help="probe with torch.compile")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.probe is not None:
        for v in args.probe or ["teacher", "student", "cnn"]:
            print(json.dumps(probe_speed(v, args.batch_size, tuple(args.input_size),
                                         compile_model=args.compile)), flush=True)
        return 0
    root: Path = args.out
    data = root / "data"
    a_min = args.phase_a_min if args.phase_a_min is not None else 0.45 * args.budget_min
    b_min = args.phase_b_min if args.phase_b_min is not None else 0.45 * args.budget_min
    names = [r.name for r in plan(data, 1, 1, 1, 1, 1, 0, tuple(args.input_size), a_min, b_min,
                                  root, teacher_variant=args.teacher_variant)]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:  # before minutes of data generation, not after
        raise ConfigError(f"--only: no run named {', '.join(unknown)}; the runs are "
                          f"{', '.join(names)}")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    data_info = generate_data(data, args.n_train, args.n_val, args.n_test, args.seed,
                              workers=os.cpu_count() or 4, synth_options=args.synth_opt)
    log.info("data ready in %.0f s: %s", time.monotonic() - t0, data_info)
    cache = None if args.no_cache else build_caches(data, root / "cache",
                                                     tuple(args.input_size))
    runs = plan(data, args.teacher_epochs, args.distill_epochs, args.finetune_epochs,
                args.sweep_epochs, args.batch_size, args.workers, tuple(args.input_size),
                a_min, b_min, root, args.device, args.teacher_variant, cache, args.val_every,
                args.lr, args.warmup_epochs)
    if args.only:
        runs = [r for r in runs if r.name in args.only]
    else:
        runs = [r for r in runs if r.phase not in ("C", "V", "S")]
    status = run_all(runs, root, args.parallel,
                     stall_s=60 * args.stall_min if args.stall_min else None,
                     deadline_s=(60 * args.deadline_min - (time.monotonic() - t0)
                                 if args.deadline_min else None))
    if not args.skip_eval:
        import torch

        device = args.device
        results = {
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "data": {**data_info, "format": DATA_FORMAT,
                                                  "synthetic": True},
            "input_hw": list(args.input_size), "status": status,
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "models": evaluate_all(runs, root, data, device),
        }
        write_json(root / "results.json", results)
    if args.pack is not None:
        for f in pack(root, args.pack):
            log.info("packed %s (%.1f MB)", f, f.stat().st_size / 1e6)
    log.info("pipeline finished in %.0f s: %s", time.monotonic() - t0, status)
    return 0 if all(s == "done" for s in status.values()) else 1


def _main_cli() -> int:
    from dlrmamba_core.errors import DlrmambaError

    try:
        return main()
    except DlrmambaError as exc:
        print(f"pipeline: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_main_cli())
