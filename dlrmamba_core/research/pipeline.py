"""The recipe that trains and evaluates the models we ship, on the SYNTHETIC benchmark.

    python -m dlrmamba_core.research.pipeline --out runs/synth --budget-min 16

Stages (each skipped when its output exists, so a rerun on the same folder resumes):

1. ``data/``: the synthetic benchmark from ``data.synthetic.write_frame_dataset`` (train / val /
   test splits, fixed seed); ``cache/``: the train and val splits pre-processed once
   (``engine.cache``), shared by every run (``--no-cache``: each run reads the images).
2. The runs listed in ``research/runs.yaml`` (``--runs FILE`` for another list), several at a
   time on one GPU (small models leave most of an H100 idle), each after the run it is
   distilled from. Phases A and B run by default; C, V and S only when ``--only`` names
   their runs. The list as shipped:

   * A: the full-rank ``teacher`` (fused), the same low-rank detector on ``rgb`` only and on
     ``thermal`` only, the ``cnn`` yardstick and the low-rank ``student_scratch`` (same
     architecture as the distilled student, random init, task loss only);
   * B, needs the teacher: ``student_sad`` (SVD init at ``MAIN_RANK`` -> SAD -> fine-tune),
     ``student_nodistill`` (the same schedule with the SVD/state/feature weights at 0: low-rank
     init + task loss only), and the rank sweep ``sweep_r050 / r055 / r060 / r065`` (SAD only);
   * C: the SAD losses switched off one at a time (``sad_no_svd``, ``sad_no_state``,
     ``sad_no_feat``) and ``student_sad_seed2`` / ``student_nodistill_seed2`` (phase B again
     with another seed: how far two runs of one recipe differ, the noise any distillation
     gain must clear);
   * V: the ``fusion_mamba`` and ``mobilemamba`` variants trained like phase A, and
     ``fusion_mamba_lr`` / ``mobilemamba_lr`` distilled from them like ``student_sad``;
   * S: the faster architectures (``models.config.FAST_PAIRS``, e.g. ``teacher_p5`` then
     ``student_p5``), each teacher trained like phase A, its student distilled like
     ``student_sad``, and the same student without the structural losses.
3. Every model's best-on-val checkpoint is evaluated on the TEST split (COCO mAP); everything
   goes to ``results.json``. ``--evaluate-only`` does this step alone, for runs trained
   elsewhere whose folders are in ``--out`` (e.g. those ``tools/gpu_campaign.sh watch``
   brought back before the machine went back), with the arguments they trained with.
4. ``--pack DIR`` copies results, logs, curves and fp16 checkpoints into a few files for transfer.

Each run is a ``dlrmamba train`` / ``dlrmamba distill`` subprocess (the same CLI users run), with
``--resume`` from its ``last.pt`` when one exists, a time budget and ``--fit-to-time`` (the
learning-rate schedule is sized to the budget from the first epochs' speed).
"""

from __future__ import annotations

import argparse
import dataclasses
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
#: The run list: names, phases, recipes, teachers, extra arguments (see the file's header).
RUNS_FILE = Path(__file__).with_name("runs.yaml")
#: How each recipe builds a run's arguments: see :func:`plan`.
RECIPES = ("train", "distill", "sweep")
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
        phase: the phase letter of ``runs.yaml`` (those outside its ``default_phases`` run
            only when ``--only`` names them).
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


@dataclass(frozen=True)
class RunSpec:
    """One entry of the run list, before the schedule's numbers are filled in.

    Attributes:
        name: run folder name and key in results.json.
        phase: phase letter.
        recipe: one of :data:`RECIPES`.
        teacher: the run whose ``best.pt`` distills this one (``distill`` / ``sweep``), or a
            model file (a name ending in ``.onnx`` or ``.pt``, e.g. the shipped
            ``models/dlrmamba_teacher.onnx``; relative to the working directory).
        args: extra CLI arguments (may hold placeholders, see ``runs.yaml``).
        info: what results.json records (may hold placeholders).
        seed: ``--seed`` after all other arguments (a repeat of another run), or None.
        overrides: CLI arguments after the recipe's (before ``--seed``): they replace the
            recipe's value of the same option (the CLI keeps the last one), e.g. a run's own
            batch size, loader workers or learning rate.
    """

    name: str
    phase: str
    recipe: str
    teacher: str | None = None
    args: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunList:
    """The parsed run list: the runs in order and the phases that run without ``--only``."""

    runs: tuple[RunSpec, ...]
    default_phases: tuple[str, ...]

    def phase_of(self) -> dict[str, str]:
        """{run name: phase letter}."""
        return {r.name: r.phase for r in self.runs}


def _pair(value: str, flag: str) -> tuple[str, str]:
    name, sep, path = value.partition("=")
    if not (sep and name and teacher_is_file(path)):
        raise ConfigError(f"{flag} {value!r}: give RUN=FILE, FILE a .onnx or .pt model file")
    return name, path


def teacher_is_file(teacher: str) -> bool:
    """A run list's ``teacher`` names a model file (not a run) when it ends in .onnx or .pt."""
    return teacher.endswith((".onnx", ".pt"))


def teacher_path(spec: RunSpec, root: Path) -> str:
    """The ``--teacher`` of a distill or sweep run: the teacher run's ``best.pt`` under
    ``root``, or the model file it names (made absolute)."""
    teacher = str(spec.teacher)
    if not teacher_is_file(teacher):
        return str(root / teacher / "best.pt")
    return str(Path(teacher).resolve())


def resolved_specs(runs_file: Path, teacher_files: dict[str, str] | None
                   ) -> list[RunSpec]:
    """The run list's entries, with teacher runs replaced by ``teacher_files`` (see plan)."""
    files = teacher_files or {}
    return [dataclasses.replace(spec, teacher=files[spec.teacher])
            if spec.teacher in files else spec for spec in load_runs(runs_file).runs]


def check_teacher_files(specs: list[RunSpec], selected: list[str]) -> None:
    """Before the data generation: every selected run's teacher file exists.

    Raises:
        ConfigError: names the run and the missing file.
    """
    for spec in specs:
        if spec.name in selected and spec.teacher and teacher_is_file(spec.teacher) \
                and not Path(spec.teacher).is_file():
            raise ConfigError(f"run {spec.name}: its teacher file {spec.teacher} does not "
                              f"exist (looked from {Path.cwd()}); run the pipeline from the "
                              "repository root")


def _spec_error(path: Path, where: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {what} (the fields are described at the top of "
                       f"{RUNS_FILE.name})")


def _run_spec(entry: Any, i: int, known: dict[str, RunSpec], path: Path) -> RunSpec:
    """One ``runs:`` entry as a :class:`RunSpec`; ``repeat_of`` resolved against ``known``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise _spec_error(path, f"run {i + 1}", "needs a mapping with a name")
    name = entry["name"]
    if name in known:
        raise _spec_error(path, name, "the name is used twice")
    phase = str(entry.get("phase", ""))
    if not phase:
        raise _spec_error(path, name, "has no phase")
    base_name = entry.get("repeat_of")
    if base_name is not None:
        base = known.get(str(base_name))
        if base is None:
            raise _spec_error(path, name, f"repeat_of {base_name!r} is not an earlier run")
        seed = entry.get("seed")
        if not isinstance(seed, int):
            raise _spec_error(path, name, "repeat_of needs an integer seed")
        info = {**base.info, "repeat_of": base.name, "seed": seed,
                "role": f"{base.info.get('role', '')}, seed {seed}"}
        return RunSpec(name, phase, base.recipe, base.teacher, base.args, info, seed,
                       base.overrides)
    recipe = entry.get("recipe")
    if recipe not in RECIPES:
        raise _spec_error(path, name, f"recipe {recipe!r} is not one of {', '.join(RECIPES)}")
    teacher = entry.get("teacher")
    if (recipe == "train") != (teacher is None):
        raise _spec_error(path, name, "distill and sweep runs name a teacher, train runs none")
    info = dict(entry.get("info") or {})
    if recipe != "train" and "rank_ratio" not in info:
        raise _spec_error(path, name, "a distill or sweep run needs info.rank_ratio")
    args = tuple(str(a) for a in entry.get("args") or ())
    overrides = tuple(str(a) for a in entry.get("overrides") or ())
    return RunSpec(name, phase, str(recipe), None if teacher is None else str(teacher), args,
                   info, overrides=overrides)


def load_runs(path: Path = RUNS_FILE) -> RunList:
    """Read the run list (default: the packaged ``runs.yaml``).

    Raises:
        ConfigError: the file is missing or an entry is malformed (says which and why).
    """
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run list ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise ConfigError(f"{path}: needs a 'runs:' list (see {RUNS_FILE})")
    known: dict[str, RunSpec] = {}
    for i, entry in enumerate(doc["runs"]):
        spec = _run_spec(entry, i, known, Path(path))
        known[spec.name] = spec
    for spec in known.values():
        if spec.teacher is not None and not teacher_is_file(spec.teacher) \
                and spec.teacher not in known:
            raise _spec_error(Path(path), spec.name, f"teacher {spec.teacher!r} is not a run")
    default = tuple(str(p) for p in doc.get("default_phases") or ())
    return RunList(tuple(known.values()), default)


def _fill(value: Any, values: dict[str, Any], variant: str | None) -> Any:
    """Fill ``{placeholder}`` in a string; a value that is only a placeholder keeps its type."""
    if not isinstance(value, str) or "{" not in value:
        return value
    if "{description}" in value:
        from dlrmamba_core.models.config import variant_description

        values = {**values, "description": variant_description(str(variant))}
    key = value[1:-1]
    if value.startswith("{") and value.endswith("}") and key in values:
        return values[key]
    try:
        return value.format_map(values)
    except KeyError as exc:
        raise ConfigError(f"run list: unknown placeholder {exc} in {value!r}; known: "
                          f"{', '.join(sorted(values))}") from exc


def plan(data: Path, teacher_epochs: int, distill_epochs: int, finetune_epochs: int,
         sweep_epochs: int, batch: int, workers: int, input_hw: tuple[int, int],
         phase_a_min: float, phase_b_min: float, root: Path, device: str = "cuda",
         teacher_variant: str = "teacher", cache: Path | None = None,
         val_every: int = 1, lr: float = 0.01, warmup_epochs: float = 1.0,
         runs_file: Path = RUNS_FILE, teacher_files: dict[str, str] | None = None
         ) -> list[Run]:
    """The runs of the run list (``runs_file``) with the schedule's arguments filled in.

    ``teacher_files`` maps a teacher run's name to a model file that stands in for it (e.g. a
    teacher trained in an earlier session and shipped as ONNX): the runs it teaches distill
    from that file and wait for nothing.

    Every run gets a time budget and ``--fit-to-time``: its epoch count is an upper bound,
    shortened so the learning-rate schedule completes within the budget. Its arguments are the
    run's own ``args``, its recipe's, its ``overrides``, then ``--seed`` for a repeat:

    * ``train``: ``teacher_epochs``, ``warmup_epochs`` and ``phase_a_min`` minutes;
    * ``distill``: SVD init -> SAD (``distill_epochs``) -> fine-tune (``finetune_epochs``)
      from the teacher run's ``best.pt``, half of ``phase_b_min`` for each stage, half the
      warmup;
    * ``sweep``: SAD only (``sweep_epochs``), the whole ``phase_b_min``.
    """
    common = ["--data", str(data), "--data-format", DATA_FORMAT, "--batch-size", str(batch),
              "--workers", str(workers), "--no-progress", "--device", device,
              "--checkpoint-every", "200", "--val-every", str(val_every), "--fit-to-time",
              "--lr", str(lr)]
    if cache is not None:
        common += ["--cache", str(cache)]
    size = ["--input-size", str(input_hw[0]), str(input_hw[1])]
    train = ["--epochs", str(teacher_epochs), "--warmup-epochs", str(warmup_epochs), *common,
             *size, "--max-time-min", f"{phase_a_min:.2f}"]
    # The low-rank architecture of student_from_teacher(teacher, MAIN_RANK, STATE_RATIO).
    from dlrmamba_core.models import get_config

    values: dict[str, Any] = {
        "teacher_variant": teacher_variant, "main_rank": MAIN_RANK,
        "r_state": state_size(STATE_RATIO, get_config(teacher_variant, 1).d_state)}

    def distill(spec: RunSpec, rank: Any) -> list[str]:
        stages = (["--epochs", str(distill_epochs), "--finetune-epochs", str(finetune_epochs)]
                  if spec.recipe == "distill" else
                  ["--epochs", str(sweep_epochs), "--finetune-epochs", "0"])
        minutes = phase_b_min / 2 if spec.recipe == "distill" else phase_b_min  # no fine-tune
        return ["--rank-ratio", str(rank), *stages,
                "--teacher", teacher_path(spec, root),
                "--state-ratio", str(STATE_RATIO), "--warmup-epochs", str(warmup_epochs / 2),
                *common, "--max-time-min", f"{minutes:.2f}"]

    runs = []
    for spec in resolved_specs(runs_file, teacher_files):
        variant = spec.info.get("variant")
        info = {k: _fill(v, values, variant) for k, v in spec.info.items()}
        own = [str(_fill(a, values, variant)) for a in spec.args]
        last = [str(_fill(a, values, variant)) for a in spec.overrides]
        seed = [] if spec.seed is None else ["--seed", str(spec.seed)]
        if spec.recipe == "train":
            runs.append(Run(spec.name, "train", [*own, *train, *last, *seed], phase=spec.phase,
                            info=info))
        else:
            runs.append(Run(spec.name, "distill",
                            [*own, *distill(spec, info["rank_ratio"]), *last, *seed],
                            needs=[] if teacher_is_file(str(spec.teacher))
                            else [str(spec.teacher)], phase=spec.phase, info=info))
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


def returned_status(runs: list[Run], root: Path) -> dict[str, str]:
    """{name: status} of runs trained elsewhere whose folders are in ``root``: ``done`` when
    the run's ``summary.json`` came back with exit status 0, ``failed`` with another,
    ``missing`` without one (it did not finish, or its folder did not come back)."""
    status = {}
    for r in runs:
        summary = root / r.name / "summary.json"
        if not summary.is_file():
            status[r.name] = "missing"
            log.warning("%s: no %s (did not finish or did not come back)", r.name, summary)
            continue
        status[r.name] = "done" if json.loads(summary.read_text()).get("rc") == 0 else "failed"
    return status


def evaluate_all(runs: list[Run], root: Path, data: Path, device: str,
                 returned_only: bool = False) -> dict[str, Any]:
    """Test-split COCO metrics of every run's best-on-val model(s).

    ``returned_only``: a model file that is not there was not brought back (e.g. a
    distillation stage's, which ``gpu_campaign.sh watch`` leaves behind): it is logged and left
    out, not recorded as an error.
    """
    from dlrmamba_core.engine.runs import evaluate_file

    results: dict[str, Any] = {}
    for r in runs:
        for label, path in r.model_files(root).items():
            key = f"{r.name}/{label}" if label else r.name
            if returned_only and not path.is_file():
                log.info("%s: %s not here, left out", key, path)
                continue
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
    """Entry point of ``python -m dlrmamba_core.research.pipeline``."""
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
    ap.add_argument("--teacher-file", action="append", default=[], metavar="RUN=FILE",
                    help="a model file (.onnx or .pt, e.g. models/dlrmamba_teacher.onnx) that "
                    "stands in for teacher run RUN: the runs it teaches distill from it and "
                    "wait for nothing (repeatable)")
    ap.add_argument("--runs", type=Path, default=RUNS_FILE, metavar="FILE",
                    help="the run list (default: research/runs.yaml)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--teacher-variant", default="teacher",
                    help="teacher architecture (nano: CPU smoke test of the pipeline)")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="train nothing: evaluate the runs already in --out (e.g. those a "
                    "gpu_campaign.sh `watch` brought back before the machine went back), with "
                    "the arguments they were trained with")
    ap.add_argument("--trained-on", default=None, metavar="DEVICE",
                    help="with --evaluate-only: the device the runs trained on, for "
                    "results.json (default: the evaluating one)")
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
    teacher_files = dict(_pair(v, "--teacher-file") for v in args.teacher_file)
    names = [r.name for r in plan(data, 1, 1, 1, 1, 1, 0, tuple(args.input_size), a_min, b_min,
                                  root, teacher_variant=args.teacher_variant,
                                  runs_file=args.runs, teacher_files=teacher_files)]
    unknown_teachers = sorted(set(teacher_files) - set(names))
    if unknown_teachers:
        raise ConfigError(f"--teacher-file: no run named {', '.join(unknown_teachers)}; give "
                          "RUN=FILE with RUN a teacher run of the run list")
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:  # before minutes of data generation, not after
        raise ConfigError(f"--only: no run named {', '.join(unknown)}; the runs are "
                          f"{', '.join(names)}")
    run_list = load_runs(args.runs)
    check_teacher_files(resolved_specs(args.runs, teacher_files), args.only or [
        r.name for r in run_list.runs if r.phase in run_list.default_phases])
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    data_info = generate_data(data, args.n_train, args.n_val, args.n_test, args.seed,
                              workers=os.cpu_count() or 4, synth_options=args.synth_opt)
    log.info("data ready in %.0f s: %s", time.monotonic() - t0, data_info)
    cache = None if args.no_cache or args.evaluate_only else build_caches(
        data, root / "cache", tuple(args.input_size))
    runs = plan(data, args.teacher_epochs, args.distill_epochs, args.finetune_epochs,
                args.sweep_epochs, args.batch_size, args.workers, tuple(args.input_size),
                a_min, b_min, root, args.device, args.teacher_variant, cache, args.val_every,
                args.lr, args.warmup_epochs, args.runs, teacher_files)
    if args.only:
        runs = [r for r in runs if r.name in args.only]
    else:
        default = load_runs(args.runs).default_phases
        runs = [r for r in runs if r.phase in default]
    if args.evaluate_only:
        status = returned_status(runs, root)
    else:
        status = run_all(runs, root, args.parallel,
                         stall_s=60 * args.stall_min if args.stall_min else None,
                         deadline_s=(60 * args.deadline_min - (time.monotonic() - t0)
                                     if args.deadline_min else None))
    if not args.skip_eval:
        import torch

        device = args.device
        here = torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"
        results = {
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": args.trained_on or here,
            "torch": torch.__version__, "data": {**data_info, "format": DATA_FORMAT,
                                                  "synthetic": True},
            "input_hw": list(args.input_size), "status": status,
            "settings": {k: (str(v) if isinstance(v, Path) else v)
                         for k, v in vars(args).items()},
            "models": evaluate_all(runs, root, data, device,
                                   returned_only=args.evaluate_only),
        }
        if args.evaluate_only:
            results["evaluated_on"] = here
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
