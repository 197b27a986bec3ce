"""Training, Structure-Aware Distillation and evaluation (torch side of dlrmamba).

Modules:
    evaluate: COCO mAP (pycocotools) on numpy predictions or on a model / ONNX detector.
    trainer: the training loop (SGD/AdamW, warmup + cosine, bf16 AMP, EMA, exact resume, DDP).
    distill: the distillation task (student + frozen teacher + ``losses.distill``).
    finetune: a shipped or trained model fine-tuned on a few labelled pairs.

The research pipeline that trains the shipped models with these, and the pages that report
them, are in :mod:`dlrmamba_core.research`.

Heavy dependencies (torch, pycocotools, matplotlib) are imported by the submodules, not here.
"""
