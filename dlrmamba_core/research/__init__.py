"""Research: the runs behind the shipped models and the pages that report them.

Not needed to train, deploy or run a model (``dlrmamba train`` / ``distill`` / ``export`` and
the runtime do not import it); it drives those commands to produce the numbers in ``docs/``.

Modules:
    runs.yaml: the run list of the pipeline (names, phases, recipes, teachers, extra args).
    pipeline: the GPU recipe: synthetic benchmark -> the runs of ``runs.yaml`` -> test mAP
        (``results.json``); ``tools/gpu_phase.sh`` runs one phase on an offline GPU machine.
    ship: joins the phases' results (``models/results_synth.json``), exports a run as a
        shipped model with its card, per-condition mAP, runs re-evaluated locally.
    results: regenerates ``docs/results.md`` from ``models/results_synth.json`` (params,
        GFLOPs and CPU latency measured where it runs).
    bench_real: fine-tuning the shipped student on REAL pairs, thermal statistics and the live
        node on a real-data bag (``docs/real.md``).
    sad_probe: a student's SAD quantities (factors, SS2D outputs and states, P3-P5 levels)
        against its teacher's, with mAP (``docs/sad_probe.md``).
    ablation: mAP of trained models with their SS2D blocks or a backbone level switched off
        (``docs/ablation.md``).

Heavy dependencies (torch, pycocotools, matplotlib) are imported by the submodules, not here.
"""


def publish(text: str, out: str | None, title: str, module: str, argv: list[str]) -> None:
    """Print a generated markdown page's body; with ``out``, also write the page atomically:
    ``# title``, the command that wrote it (``python -m module argv...``) with the UTC time,
    then the body."""
    import datetime
    from pathlib import Path

    from dlrmamba_core.engine.fileio import write_text

    print(text)
    if out:
        cmd = f"python -m {module} " + " ".join(a if " " not in a else repr(a) for a in argv)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        write_text(Path(out), f"# {title}\n\nWritten by `{cmd}` on {stamp}.\n\n{text}")


def short_names(paths: list[str]) -> dict[str, str]:
    """{path: label}: each path's file name, or as few of its last folders with it as tell it
    from the other paths (runs' ``RUN/finetune/best.pt`` files all share the name
    ``best.pt``)."""
    from pathlib import PurePath

    parts = {p: PurePath(p).parts for p in dict.fromkeys(paths)}
    out = {}
    for p, v in parts.items():
        n = 1
        while n < len(v) and any(w[-n:] == v[-n:] for q, w in parts.items() if q != p):
            n += 1
        out[p] = "/".join(v[-n:])
    return out
