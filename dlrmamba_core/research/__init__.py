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

Heavy dependencies (torch, pycocotools, matplotlib) are imported by the submodules, not here.
"""
