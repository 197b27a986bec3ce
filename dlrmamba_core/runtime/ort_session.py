"""The one way the project opens an onnxruntime session (torch-free).

The runtime ``Detector``, the export parity check, the benchmarks and the model tables all get
their sessions here, so threads, providers, optimization level and logging are set the same way
and a file ORT cannot load fails with the same clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
import os
from typing import Any

from dlrmamba_core.errors import ConfigError, ModelFileError

#: ``graph_optimization`` names -> onnxruntime.GraphOptimizationLevel member names.
GRAPH_OPTIMIZATION = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def ort_session(
    model: str | os.PathLike[str] | bytes,
    threads: int | None = None,
    inter_op_threads: int = 1,
    graph_optimization: str = "all",
    providers: Sequence[str] | None = None,
    profile_prefix: str | None = None,
    allow_spinning: bool = False,
) -> Any:
    """An ``onnxruntime.InferenceSession`` that runs the graph sequentially.

    Args:
        model: an ``.onnx`` path, or the serialized model bytes.
        threads: intra-op threads (the ones that matter on a CPU at batch 1); None: ORT's
            default (one per core).
        inter_op_threads: inter-op threads (1: one operator at a time).
        graph_optimization: ``disable`` | ``basic`` | ``extended`` | ``all``.
        providers: execution providers in priority order (default: CPU only).
        profile_prefix: if set, ORT writes a JSON profile with this file prefix
            (``session.end_profiling()`` returns its path).
        allow_spinning: whether the intra-op threads busy-wait for work between operators
            and after a run (``session.intra_op.allow_spinning``; onnxruntime's own default
            is to spin). Off in every session of this project, the benchmarks included, so
            they measure what the robot runs: spinning threads take CPU the rest of the
            process and other processes need (on a 2-core machine with one other busy
            process the shipped student at 2 threads ran at 45 ms with spinning and 22 ms
            without; docs/runtime.md).

    Raises:
        ConfigError: an unknown optimization level or provider, or fewer than 1 thread.
        ModelFileError: onnxruntime cannot load the model.
    """
    import onnxruntime as ort

    if graph_optimization not in GRAPH_OPTIMIZATION:
        raise ConfigError(f"graph_optimization={graph_optimization!r}: use one of "
                          f"{sorted(GRAPH_OPTIMIZATION)}")
    if (threads is not None and threads < 1) or inter_op_threads < 1:
        raise ConfigError(f"threads={threads}, inter_op_threads={inter_op_threads}: need >= 1")
    available = ort.get_available_providers()
    chosen = list(providers) if providers else ["CPUExecutionProvider"]
    unknown = [p for p in chosen if p not in available]
    if unknown:
        raise ConfigError(f"execution providers {unknown} are not available in this "
                          f"onnxruntime build (available: {available}); pick from those")
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = int(inter_op_threads)
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                            GRAPH_OPTIMIZATION[graph_optimization])
    opts.log_severity_level = 3  # errors only: warnings about unused initializers are noise
    opts.add_session_config_entry("session.intra_op.allow_spinning",
                                  "1" if allow_spinning else "0")
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, opts, providers=chosen)
    except Exception as exc:  # ORT raises its own untyped errors (Fail, InvalidGraph, ...)
        name = "the serialized model" if isinstance(model, bytes) else str(model)
        raise ModelFileError(
            f"{name}: onnxruntime cannot load it ({type(exc).__name__}: {exc}); the file is "
            "corrupt or not an ONNX model: re-export it with `dlrmamba export`") from exc
