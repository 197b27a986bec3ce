"""Training, Structure-Aware Distillation and evaluation (torch side of dlrmamba).

Modules:
    evaluate: COCO mAP (pycocotools) on numpy predictions or on a model / ONNX detector.
    trainer: the training loop (SGD/AdamW, warmup + cosine, bf16 AMP, EMA, exact resume, DDP).
    distill: the distillation task (student + frozen teacher + ``losses.distill``).
    pipeline: the GPU recipe that trains and evaluates the shipped models.
    results: regenerates ``docs/results.md`` from a pipeline's results JSON.

Heavy dependencies (torch, pycocotools, matplotlib) are imported by the submodules, not here.
"""
