"""INT8 static quantization of an exported model (onnxruntime.quantization, torch-free).

QDQ format, per-channel int8 weights, uint8 activations, calibrated on validation image pairs
that go through exactly the runtime pre-processing. Only convolutions and matrix products
are quantized by default: the selective scan's exp / cumulative-sum arithmetic spans orders
of magnitude that 8 bits cannot hold, so it stays float.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import tempfile
from typing import Any

import numpy as np

from dlrmamba_core.errors import ConfigError, DatasetError, ModelFileError
from dlrmamba_core.runtime.metadata import (
    ModelInfo,
    card_path_for,
    read_model_card,
    write_model_card,
)

__all__ = ["DEFAULT_OP_TYPES", "DYNAMIC_OP_TYPES", "PairCalibrationReader", "QuantizeResult",
           "quantize_dynamic_model", "quantize_model", "scan_matmuls"]

log = logging.getLogger(__name__)

#: Operators quantized by default (the compute-heavy ones that have int8 kernels).
DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
_METHODS = ("minmax", "percentile", "entropy")


def _read_info(path: Path) -> ModelInfo:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError / OSError variants for foreign files
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc}); re-export it") from exc
    meta = {p.key: p.value for p in proto.metadata_props}
    return ModelInfo.from_metadata(meta, str(path))


class PairCalibrationReader:
    """Feeds RGB + thermal pairs to the onnxruntime calibrator (``CalibrationDataReader``).

    Args:
        samples: ``PairSample``-like objects (``rgb``, ``thermal``, ``homography``).
        input_hw: network input (h, w).
        thermal_norm: the model's thermal normalization (dict or ``ThermalNorm``).
        limit: use at most this many pairs.

    Raises:
        DatasetError: no samples.
    """

    def __init__(self, samples: Iterable[Any], input_hw: tuple[int, int],
                 thermal_norm: Any = None, limit: int | None = None) -> None:
        from dlrmamba_core.data.preprocess import prepare_inputs

        self.feeds: list[dict[str, np.ndarray]] = []
        for i, s in enumerate(samples):
            if limit is not None and i >= limit:
                break
            p = prepare_inputs(s.rgb, s.thermal, s.homography, input_hw,
                               thermal_norm=thermal_norm)
            # (3, h, w) -> (1, 3, h, w), (1, h, w) -> (1, 1, h, w)
            self.feeds.append({"rgb": p.rgb[None], "thermal": p.thermal[None]})
        if not self.feeds:
            raise DatasetError("calibration: no image pairs; pass a dataset with images")
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next input feed, or None when all were given."""
        if self._pos >= len(self.feeds):
            return None
        self._pos += 1
        return self.feeds[self._pos - 1]

    def rewind(self) -> None:
        """Start again from the first pair."""
        self._pos = 0

    def __len__(self) -> int:
        return len(self.feeds)


@dataclass
class QuantizeResult:
    """What :func:`quantize_model` wrote."""

    onnx_path: Path
    card_path: Path | None
    info: ModelInfo
    calibration_pairs: int
    fp32_bytes: int
    int8_bytes: int


def _fp32_info(src: Path) -> ModelInfo:
    """The metadata of the fp32 model ``src``.

    Raises:
        ModelFileError: not a dlrmamba model, or already quantized.
    """
    info = _read_info(src)
    if info.quantization is not None:
        raise ModelFileError(
            f"{src}: already quantized ({info.quantization}); pass the fp32 model"
        )
    return info


def _write_quantized(src: Path, dest: Path, out_info: ModelInfo,
                     quantize: Callable[[str, str], object]) -> None:
    """Run ``quantize(tmpdir, out_path)``, give its output ``out_info``'s metadata, check it
    and move it to ``dest`` (atomic: nothing is written on failure).

    Raises:
        ModelFileError: the quantizer or the ONNX checker failed.
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix=".quant.", dir=dest.parent) as tmpdir:
        out = os.path.join(tmpdir, "int8.onnx")
        try:
            quantize(tmpdir, out)
            proto = onnx.load(out)
            # Keys ModelInfo does not carry (e.g. a segment model's dlrmamba.task and
            # dlrmamba.num_protos) are kept from the source model.
            meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False)
                    .metadata_props}
            meta.update(out_info.to_metadata())
            del proto.metadata_props[:]
            for key, value in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.checker.check_model(proto)
            onnx.save(proto, out)
        except (RuntimeError, ValueError, TypeError, onnx.checker.ValidationError) as exc:
            raise ModelFileError(
                f"quantizing {src} failed ({type(exc).__name__}: {exc}); nothing was written"
            ) from exc
        os.chmod(out, 0o644)
        os.replace(out, dest)


def quantize_model(
    onnx_in: str | os.PathLike[str],
    onnx_out: str | os.PathLike[str],
    samples: Iterable[Any],
    num_calibration: int = 32,
    method: str = "minmax",
    per_channel: bool = True,
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    write_card: bool = True,
    metrics: dict[str, Any] | None = None,
    card_extra: dict[str, Any] | None = None,
) -> QuantizeResult:
    """Statically quantize ``onnx_in`` to INT8 (QDQ) into ``onnx_out`` (atomic).

    Args:
        onnx_in: a float model written by ``dlrmamba export``.
        onnx_out: destination; its model card goes beside it.
        samples: calibration pairs (validation split, never the test split).
        num_calibration: how many pairs to use.
        method: calibration method: ``minmax``, ``percentile`` or ``entropy``.
        per_channel: per-output-channel weight scales (more accurate for depthwise convs).
        op_types: operator types to quantize.
        write_card: write ``<out stem>.json``.
        metrics: metrics of the INT8 model for its card, if measured (the fp32 model's
            metrics are not copied: they do not describe this file).
        card_extra: extra card fields (e.g. the accuracy change measured).

    Returns:
        :class:`QuantizeResult`.

    Raises:
        ModelFileError: input missing / not a dlrmamba model, or quantization failed.
        ConfigError: unknown calibration method.
        DatasetError: no calibration pairs.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    src = Path(onnx_in)
    if not src.is_file():
        raise ModelFileError(f"{src}: no such ONNX file; export one with `dlrmamba export`")
    if method not in _METHODS:
        raise ConfigError(f"calibration method {method!r}: use one of {_METHODS}")
    info = _fp32_info(src)
    reader_impl = PairCalibrationReader(samples, info.input_hw, info.normalization,
                                        num_calibration)

    class _Reader(CalibrationDataReader):  # the ORT base class is abstract, wrap ours
        def get_next(self) -> dict[str, np.ndarray] | None:
            return reader_impl.get_next()

        def rewind(self) -> None:
            reader_impl.rewind()

    dest = Path(onnx_out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    qinfo = {
        "format": "QDQ",
        "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
        "activations": "uint8",
        "calibration": method,
        "calibration_pairs": len(reader_impl),
        "op_types": list(op_types),
    }
    out_info = ModelInfo(info.class_names, info.input_hw, info.variant, info.version,
                         info.weights_sha256, info.normalization, qinfo)

    def quantize(tmpdir: str, out: str) -> None:
        pre = os.path.join(tmpdir, "pre.onnx")
        # Shape inference + graph clean-up first, as onnxruntime recommends for QDQ.
        quant_pre_process(str(src), pre, skip_symbolic_shape=True)
        quantize_static(
            pre, out, _Reader(), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types), per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method.capitalize()
                                     if method != "minmax" else "MinMax"),
        )

    _write_quantized(src, dest, out_info, quantize)
    card: Path | None = None
    if write_card:
        src_card = card_path_for(src)
        base = read_model_card(src_card) if src_card.is_file() else {}
        extra = {"source_model": src.name, **(card_extra or {})}
        try:
            card = write_model_card(dest, out_info, data=base.get("data"),
                                    metrics=metrics, extra=extra)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
    return QuantizeResult(dest, card, out_info, len(reader_impl), src.stat().st_size,
                          dest.stat().st_size)


#: Operators of the dynamic quantization ([speed] section 3): the projections only.
DYNAMIC_OP_TYPES = ("MatMul", "Gemm")
_PROJECTIONS = ("/in_proj/", "/x_proj/", "/dt_proj/", "/out_proj/")


def scan_matmuls(proto: Any) -> list[str]:
    """Names of the MatMul nodes of the chunked selective scan (inside an SS2D block, not one
    of its projections): the in-chunk cumulative sums, whose exp-scaled operands span orders of
    magnitude that 8 bits cannot hold. Dynamic quantization must leave them in fp32."""
    return [n.name for n in proto.graph.node if n.op_type == "MatMul" and "/ssm/" in n.name
            and not any(p in n.name for p in _PROJECTIONS)]


def quantize_dynamic_model(
    onnx_in: str | os.PathLike[str],
    onnx_out: str | os.PathLike[str],
    per_channel: bool = True,
    op_types: Sequence[str] = DYNAMIC_OP_TYPES,
    write_card: bool = True,
) -> QuantizeResult:
    """Dynamically quantize ``onnx_in``'s MatMul/Gemm weights to INT8 into ``onnx_out``
    (atomic); activations are quantized at run time, so no calibration data is needed. The
    selective scan's MatMuls (:func:`scan_matmuls`) and everything else stay fp32.

    Raises:
        ModelFileError: input missing / not a dlrmamba model / already quantized, or the
            quantizer failed.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = Path(onnx_in)
    if not src.is_file():
        raise ModelFileError(f"{src}: no such ONNX file; export one with `dlrmamba export`")
    info = _fp32_info(src)
    excluded = scan_matmuls(onnx.load(str(src)))
    qinfo = {"format": "dynamic (MatMulInteger / DynamicQuantizeLinear)",
             "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
             "activations": "uint8, quantized at run time", "calibration": "none",
             "calibration_pairs": 0, "op_types": list(op_types),
             "kept_fp32": "selective scan MatMuls, all other operators"}
    out_info = ModelInfo(info.class_names, info.input_hw, info.variant, info.version,
                         info.weights_sha256, info.normalization, qinfo)
    dest = Path(onnx_out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _write_quantized(src, dest, out_info, lambda _tmpdir, out: quantize_dynamic(
        str(src), out, op_types_to_quantize=list(op_types), per_channel=per_channel,
        weight_type=QuantType.QInt8, nodes_to_exclude=excluded))
    card: Path | None = None
    if write_card:
        src_card = card_path_for(src)
        base = read_model_card(src_card) if src_card.is_file() else {}
        card = write_model_card(dest, out_info, data=base.get("data"),
                                extra={"source_model": src.name})
    return QuantizeResult(dest, card, out_info, 0, src.stat().st_size, dest.stat().st_size)


def compare_int8(fp32_path: str | os.PathLike[str], int8_path: str | os.PathLike[str],
                 dataset: Any, limit: int | None = None, threads: int = 2) -> dict[str, Any]:
    """mAP50 of the fp32 and INT8 models on the same images (pycocotools, via the evaluator).

    Args:
        fp32_path: the float ONNX model.
        int8_path: its quantized version.
        dataset: a ``PairDataset`` (use the validation or test split, never calibration data
            alone).
        limit: evaluate only the first ``limit`` images.
        threads: onnxruntime intra-op threads.

    Returns:
        ``{"images", "fp32_mAP50", "int8_mAP50", "mAP50_change", "fp32_mAP50_95",
        "int8_mAP50_95"}`` (percent; change = int8 - fp32).
    """
    from dlrmamba_core.engine.evaluate import evaluate
    from dlrmamba_core.runtime.detector import Detector

    out: dict[str, Any] = {}
    for tag, path in (("fp32", fp32_path), ("int8", int8_path)):
        det = Detector(path, threads=threads, conf_threshold=0.001, iou_threshold=0.6)
        m = evaluate(det, dataset, limit=limit)
        out[f"{tag}_mAP50"] = float(m["mAP50"])
        out[f"{tag}_mAP50_95"] = float(m["mAP50_95"])
        out["images"] = int(m["num_images"])
    out["mAP50_change"] = out["int8_mAP50"] - out["fp32_mAP50"]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m dlrmamba_core.deploy.quantize MODEL --out X [--data DIR --split test]``:
    dynamic INT8 of the MatMul/Gemm weights (scan kept fp32), fp32 and INT8 timed in
    alternation (``deploy.arch_latency.time_files``) and, with ``--data``, both evaluated
    (mAP50 on that split of a synthetic dataset). Prints one JSON line."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m dlrmamba_core.deploy.quantize",
                                 description=main.__doc__)
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-tensor", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--data", type=Path, default=None, help="synthetic dataset folder")
    ap.add_argument("--split", default="test")
    args = ap.parse_args(argv)
    from dlrmamba_core.deploy.arch_latency import time_files

    res = quantize_dynamic_model(args.model, args.out, per_channel=not args.per_tensor)
    times = time_files([str(args.model), str(res.onnx_path)], args.threads, args.rounds)
    fp32_t, int8_t = times[str(args.model)], times[str(res.onnx_path)]
    report: dict[str, Any] = {"model": str(args.model), "threads": args.threads,
                              "fp32_p50_ms": round(fp32_t["p50_ms"], 1),
                              "int8_p50_ms": round(int8_t["p50_ms"], 1),
                              "int8_over_fp32": round(int8_t["ratio"], 3),
                              "fp32_mb": round(res.fp32_bytes / 1e6, 2),
                              "int8_mb": round(res.int8_bytes / 1e6, 2)}
    if args.data is not None:
        from dlrmamba_core.engine.runs import open_pairs

        report.update(compare_int8(args.model, res.onnx_path,
                                   open_pairs("synth", args.data, args.split),
                                   threads=args.threads))
    print(json.dumps(report), flush=True)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
