"""Deploy: the torch-side tools around the runtime (not installed on the robot's path).

Modules:
    export: a ``.pt`` checkpoint -> ONNX + model card, with a torch/onnxruntime parity check.
    quantize: INT8 (static QDQ, dynamic MatMul/Gemm-only) of an exported ONNX model.
    bench: latency / FPS / memory of models x backends x threads (``docs/benchmarks.md``).
    profile: onnxruntime time by op, module and detector part (``docs/profile.md``).
    arch_latency: untrained candidate architectures (or ONNX files) timed alternately.
    torch_backend: the ``Detector``'s optional ``backend="torch"`` (eager ``.pt``).
    cli: ``dlrmamba export | quantize | bench``.

These import torch (or onnxruntime's quantization tools) inside their functions, so the
``dlrmamba`` parser builds without torch; :mod:`dlrmamba_core.runtime` never imports this package
except for ``Detector(backend="torch")``.
"""
