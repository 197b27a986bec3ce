"""``bag-eval``: run the detector over a rosbag the way the node would, offline.

The RGB and thermal messages are fed in log-time order to the same
:class:`~dlrmamba_core.runtime.pairing.ApproximateTimePairer` the node uses; every pair goes
through the same :class:`~dlrmamba_core.runtime.Detector`. Outputs in ``--out``:

* ``detections/``: a rosbag2 (mcap by default, opens in Foxglove) with
  ``vision_msgs/Detection2DArray`` on the RGB header of each pair (logged at the RGB message's
  log time) and a ``vision_msgs/LabelInfo`` class map;
* ``metrics.json``: pairing statistics, latency p50/p95, detection counts, COCO mAP
  (pycocotools) when ground truth is given; ``"partial": true`` after an interruption;
* ``annotated.mp4`` (or ``annotated_strip.png`` without a video encoder) and ``preview.png``;
* ``report.md``: a short human-readable summary.

The output directory is written under a temporary name and renamed at the end. An error
removes it; Ctrl-C finishes it as a valid, closed, partial result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import signal
import threading
import time
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.bag import messages as m
from dlrmamba_core.bag.annotate import AnnotatedVideo, draw
from dlrmamba_core.bag.groundtruth import GroundTruth
from dlrmamba_core.bag.outdir import AtomicDir
from dlrmamba_core.bag.reader import BagMessage, BagReader
from dlrmamba_core.bag.synth import CUSTOM_HOMOGRAPHY, CUSTOM_SYNTHETIC
from dlrmamba_core.bag.typestore import get_bag_typestore
from dlrmamba_core.errors import BagError, ModelFileError
from dlrmamba_core.sysinfo import cpu_model

log = logging.getLogger(__name__)

DET_TOPIC = "/dlrmamba/detections"
LABEL_TOPIC = "/dlrmamba/label_info"


@dataclass
class EvalOptions:
    """Options of :func:`evaluate_bag` (CLI flags of ``bag-eval``).

    Attributes:
        rgb_topic: RGB Image / CompressedImage topic.
        thermal_topic: thermal Image / CompressedImage topic.
        gt: ground-truth topic of the bag, a COCO JSON, a YOLO label dir, or None.
        model: model file (.onnx or a model card / default.json), None = shipped default.
        slop_s: pairing slop (s), as the node's ``slop`` parameter.
        queue_size: pairing queue size, as the node's ``queue_size`` parameter.
        threads: onnxruntime intra-op threads.
        conf_threshold: detector score threshold (None = the Detector's default).
        homography: (3, 3) thermal->RGB, None = from the bag's custom_data (if any).
        video: write the annotated video.
        out_storage: storage of the output bag ("mcap" or "sqlite3").
        overwrite: replace an existing output directory.
        progress: show a tqdm progress bar.
        max_pairs: stop after this many pairs (None = whole bag).
        on_pair: called with the number of pairs done after each pair (progress hooks).
        on_phase: called with the name of each phase as it starts: "reading", "inference"
            (before each pair), "metrics", "video", "report" (tests interrupt each one).
    """

    rgb_topic: str
    thermal_topic: str
    gt: str | None = None
    model: str | None = None
    slop_s: float = 0.05
    queue_size: int = 10
    threads: int = 2
    conf_threshold: float | None = None
    homography: np.ndarray | None = None
    video: bool = True
    out_storage: str = "mcap"
    overwrite: bool = False
    progress: bool = True
    max_pairs: int | None = None
    on_pair: Callable[[int], None] | None = None
    on_phase: Callable[[str], None] | None = None


@dataclass
class _Pending:
    """A processed pair waiting for its ground truth before it is drawn."""

    rgb: np.ndarray
    thermal: np.ndarray
    det: m.FrameDetections
    caption: str
    waited: int = 0


@dataclass
class EvalResult:
    """What :func:`evaluate_bag` produced."""

    out: Path
    metrics: dict[str, Any]
    detections: dict[int, m.FrameDetections] = field(default_factory=dict)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_model_candidates() -> list[Path]:
    """Where the shipped default model card is looked for, in order."""
    out = [_repo_root() / "models" / "default.json"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            out.append(Path(prefix) / "share" / "dlrmamba_ros" / "models" / "default.json")
    return out


def resolve_model(model: str | os.PathLike[str] | None) -> Path:
    """The ONNX file to run: ``model`` itself, the file a ``.json`` card names, or the default.

    Raises:
        ModelFileError: nothing found; the message lists what was looked for.
    """
    if model is None:
        cands = default_model_candidates()
        card = next((c for c in cands if c.is_file()), None)
        if card is None:
            raise ModelFileError(
                "no model given and no shipped default model: none of "
                f"{[str(c) for c in cands]} exists; pass --model path/to/model.onnx or "
                "export one with `dlrmamba export`"
            )
        return resolve_model(card)
    p = Path(model)
    if not p.exists():
        raise ModelFileError(f"model file {p} does not exist")
    if p.suffix == ".json":
        try:
            name = json.loads(p.read_text())["model"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{p}: expected a JSON object with a \"model\" key naming the "
                                 f"ONNX file ({exc!r})") from exc
        onnx = (p.parent / str(name)).resolve()
        if not onnx.is_file():
            raise ModelFileError(f"{p} names {name!r}, but {onnx} does not exist; run the "
                                 "training pipeline or `dlrmamba export` to create it")
        return onnx
    return p


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "mean": None, "max": None}
    a = np.asarray(values, np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3),
            "mean": round(float(a.mean()), 3), "max": round(float(a.max()), 3)}


def evaluate_bag(bag: str | Path, out: str | Path, opts: EvalOptions) -> EvalResult:
    """Evaluate a detector on a rosbag; see the module docstring for the outputs.

    Args:
        bag: rosbag2 directory or .db3/.mcap file.
        out: output directory (created atomically).
        opts: topics, model, pairing and output options.

    Returns:
        An :class:`EvalResult` (metrics as written to metrics.json, detections per RGB stamp).

    Raises:
        BagError: missing topics, unsupported encodings, corrupt bag, no pair found.
        ModelFileError: no usable model.
        KeyboardInterrupt: after writing a partial (valid, closed) output.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    from dlrmamba_core.runtime.pairing import ApproximateTimePairer

    bag = Path(bag)
    with BagReader(bag) as reader:
        rgb_type = reader.require_topic(opts.rgb_topic, m.IMAGE_TYPES)
        thermal_type = reader.require_topic(opts.thermal_topic, m.IMAGE_TYPES)
        gt: GroundTruth | None = None
        gt_topic = None
        if opts.gt:
            if opts.gt in reader.topics:
                reader.require_topic(opts.gt, [m.DETECTIONS])
                gt_topic = opts.gt
                gt = GroundTruth(f"topic {opts.gt}")
            elif opts.gt.startswith("/") and not Path(opts.gt).exists():
                reader.require_topic(opts.gt)  # raises, listing the bag's topics
        model_path = resolve_model(opts.model)
        homography = opts.homography
        if homography is None and CUSTOM_HOMOGRAPHY in reader.custom:
            homography = np.asarray(json.loads(reader.custom[CUSTOM_HOMOGRAPHY]), np.float64)
        detector = _make_detector(model_path, opts, homography)
        class_names = list(detector_class_names(detector))
        if opts.gt and gt is None:
            gt = GroundTruth.from_file(opts.gt, class_names)
        n_rgb = reader.counts.get(opts.rgb_topic, 0)
        synthetic = reader.custom.get(CUSTOM_SYNTHETIC) == "true"

        target = AtomicDir(out, overwrite=opts.overwrite)
        store = get_bag_typestore()
        writer = Writer(target.tmp / "detections", version=9,
                        storage_plugin=StoragePlugin.MCAP if opts.out_storage == "mcap"
                        else StoragePlugin.SQLITE3)
        video: AnnotatedVideo | None = None
        pairer: ApproximateTimePairer[BagMessage] = ApproximateTimePairer(
            queue_size=opts.queue_size, slop_s=opts.slop_s)
        detections: dict[int, m.FrameDetections] = {}
        sizes: dict[int, tuple[int, int]] = {}  # RGB (width, height) per stamp
        latency_total: list[float] = []
        latency_infer: list[float] = []
        skews_ms: list[float] = []
        pending: list[_Pending] = []
        state = _Interrupts()
        first_log = last_log = None
        bar = None
        try:
            writer.open()
            det_conn = writer.add_connection(DET_TOPIC, m.DETECTIONS, typestore=store)
            label_conn = writer.add_connection(LABEL_TOPIC, m.LABEL_INFO, typestore=store)
            label_written = False
            if opts.video:
                video = AnnotatedVideo(target.tmp / "annotated.mp4",
                                       target.tmp / "annotated_strip.png",
                                       fps=min(_rate(reader, opts.rgb_topic),
                                               _rate(reader, opts.thermal_topic)))
            if opts.progress:
                from tqdm import tqdm

                bar = tqdm(total=n_rgb, unit="rgb", desc="bag-eval", leave=False)
            topics = [opts.rgb_topic, opts.thermal_topic] + ([gt_topic] if gt_topic else [])
            try:
                _phase(opts, "reading")
                for bm in reader.messages(topics):
                    first_log = bm.log_ns if first_log is None else first_log
                    last_log = bm.log_ns
                    if bm.topic == gt_topic:
                        assert gt is not None
                        # numeric class ids are read with the model's class map
                        gt.add(m.parse_detections(bm.decode(), class_names))
                        _flush_video(video, pending, gt, class_names, force=False)
                        continue
                    stream = "rgb" if bm.topic == opts.rgb_topic else "thermal"
                    if stream == "rgb" and bar is not None:
                        bar.update(1)
                    msg = bm.decode()
                    for pair in pairer.add(stream, m.stamp_of(msg), bm):
                        _phase(opts, "inference")
                        t0 = time.perf_counter()
                        rgb_msg = pair.rgb.decode()
                        rgb = m.decode_rgb(rgb_msg, rgb_type, f"topic {opts.rgb_topic}")
                        thermal = m.decode_thermal(pair.thermal.decode(), thermal_type,
                                                   f"topic {opts.thermal_topic}")
                        res = detector.detect(rgb, thermal)
                        total_ms = (time.perf_counter() - t0) * 1e3
                        fd = m.FrameDetections(
                            pair.rgb_stamp_ns, str(rgb_msg.header.frame_id),
                            np.asarray(res.boxes, np.float32).reshape(-1, 4),
                            np.asarray(res.scores, np.float32).reshape(-1),
                            [res.class_names[int(c)] for c in res.class_ids])
                        with _deferred_sigint(state):  # a message is written whole or not
                            if not label_written:
                                writer.write(label_conn, pair.rgb.log_ns, m.serialize(
                                    m.label_info_message(class_names, pair.rgb_stamp_ns,
                                                         fd.frame_id,
                                                         _threshold(detector, opts)),
                                    m.LABEL_INFO))
                                label_written = True
                            writer.write(det_conn, pair.rgb.log_ns, m.serialize(
                                m.detections_message(fd, class_names), m.DETECTIONS))
                            detections[fd.stamp_ns] = fd
                            sizes[fd.stamp_ns] = (rgb.shape[1], rgb.shape[0])
                            latency_total.append(total_ms)
                            latency_infer.append(float(getattr(res, "inference_ms",
                                                               total_ms)))
                            skews_ms.append(pair.skew_ns / 1e6)
                        if state.hit:
                            raise KeyboardInterrupt
                        if video is not None:
                            cap = (f"t={fd.stamp_ns / 1e9:.3f}s  {len(fd)} det  "
                                   f"{total_ms:.0f} ms")
                            pending.append(_Pending(rgb, thermal, fd, cap))
                            _flush_video(video, pending, gt, class_names, force=False)
                        if opts.on_pair is not None:
                            opts.on_pair(len(detections))
                    if opts.max_pairs is not None and len(detections) >= opts.max_pairs:
                        break
            except KeyboardInterrupt:
                state.interrupt("reading the bag")
            if not detections and not state.hit:
                raise BagError(
                    f"{bag}: no RGB/thermal pair matched on {opts.rgb_topic} + "
                    f"{opts.thermal_topic} with slop {opts.slop_s} s and queue size "
                    f"{opts.queue_size} (rgb {pairer.stats.rgb.received} msgs, thermal "
                    f"{pairer.stats.thermal.received} msgs): check the topics, or raise "
                    "--slop if the cameras' stamps differ more than that"
                )
            # From here on every step finishes a valid output. The detections bag is closed
            # with Ctrl-C deferred (a half-written index would make it unreadable); the costly
            # steps (COCO, video encoding) are skipped on Ctrl-C, and the result says so.
            with _deferred_sigint(state):
                writer.close()
            coco = None
            if gt is not None:
                coco = _interruptible(state, opts, "metrics",
                                      lambda: coco_on_frames(detections, gt, class_names,
                                                             sizes))
            video_path = preview = None
            if video is not None:
                v = video

                def finish_video() -> Path | None:
                    _flush_video(v, pending, gt, class_names, force=True)
                    return v.close()

                if state.hit:  # interrupted earlier: close what was drawn (a few frames left)
                    with _deferred_sigint(state):
                        video_path = finish_video()
                else:  # interrupted while encoding: drop the MP4, keep the PNG strip
                    video_path = _interruptible(state, opts, "video", finish_video,
                                                fallback=v.close_as_strip)
            with _deferred_sigint(state):
                _phase(opts, "report")
                frame = video.preview_frame() if video is not None else None
                if frame is not None:
                    preview = target.tmp / "preview.png"
                    cv2.imwrite(str(preview), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                while True:  # rewritten if a Ctrl-C arrives while the files are written
                    partial = state.hit
                    metrics = _metrics(
                        bag=bag, storage=reader.storage, model_path=model_path, opts=opts,
                        class_names=class_names, synthetic=synthetic, partial=partial,
                        pairer=pairer, skews_ms=skews_ms, latency_total=latency_total,
                        latency_infer=latency_infer, detections=detections, coco=coco,
                        rgb_type=rgb_type, thermal_type=thermal_type,
                        span_ns=(last_log or 0) - (first_log or 0),
                        outputs={"detections_bag": "detections",
                                 "video": video_path.name if video_path else None,
                                 "preview": preview.name if preview else None,
                                 "report": "report.md"},
                        homography=homography, sizes=sizes,
                        input_warnings=getattr(detector, "input_warning_messages", {}),
                        interrupted_during=state.where,
                    )
                    (target.tmp / "metrics.json").write_text(json.dumps(metrics, indent=2)
                                                             + "\n")
                    (target.tmp / "report.md").write_text(render_report(metrics))
                    if state.hit == partial:
                        break
                if bar is not None:
                    bar.close()
                    bar = None
                final = target.commit()
        except BaseException:
            if bar is not None:
                bar.close()
            if writer.storage is not None:
                writer.abort()
            if video is not None:
                video.abort()
            target.discard()
            raise
    result = EvalResult(final, metrics, detections)
    if state.hit:
        raise EvalInterrupted(result)
    return result


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``bag-eval``: the partial (valid, closed) output is in ``result.out``."""

    def __init__(self, result: EvalResult) -> None:
        super().__init__(f"bag-eval interrupted; partial output in {result.out}")
        self.result = result


class _Interrupts:
    """Whether (and in which phase first) a Ctrl-C arrived."""

    def __init__(self) -> None:
        self.hit = False
        self.where: str | None = None

    def interrupt(self, where: str) -> None:
        if not self.hit:
            log.warning("interrupted while %s: finishing a partial output (Ctrl-C again is "
                        "deferred until the output is closed)", where)
            self.hit, self.where = True, where


@contextlib.contextmanager
def _deferred_sigint(state: _Interrupts) -> Iterator[None]:
    """Hold SIGINT back (recording it in ``state``) while a step that must not be cut runs.

    Only the main thread can install signal handlers; elsewhere the step runs unprotected.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # a background job: SIGINT is ignored anyway
        yield
        return
    signal.signal(signal.SIGINT, lambda *_: state.interrupt("finishing the output"))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _phase(opts: EvalOptions, name: str) -> None:
    if opts.on_phase is not None:
        opts.on_phase(name)


def _interruptible(state: _Interrupts, opts: EvalOptions, name: str, step: Callable[[], Any],
                   fallback: Callable[[], Any] | None = None) -> Any:
    """Run an optional, costly finishing step; after a Ctrl-C (before or during it) run the
    quick ``fallback`` instead (deferred) and return its result (None without one)."""
    if not state.hit:
        try:
            _phase(opts, name)
            return step()
        except KeyboardInterrupt:
            state.interrupt(_PHASE_NAMES.get(name, name))
    if fallback is None:
        return None
    with _deferred_sigint(state):
        return fallback()


_PHASE_NAMES = {"metrics": "computing the COCO metrics", "video": "writing the video"}


def _make_detector(model_path: Path, opts: EvalOptions, homography: np.ndarray | None) -> Any:
    from dlrmamba_core.runtime import Detector

    kw: dict[str, Any] = {"threads": opts.threads}
    if opts.conf_threshold is not None:
        kw["conf_threshold"] = opts.conf_threshold
    if homography is not None:
        kw["homography"] = homography
    return Detector(str(model_path), **kw)


def detector_class_names(detector: Any) -> list[str]:
    """The class map of a runtime Detector."""
    names = getattr(detector, "class_names", None)
    if names is None:
        raise ModelFileError("the detector exposes no class_names; re-export the model with "
                             "dlrmamba.class_names metadata")
    return list(names)


def _threshold(detector: Any, opts: EvalOptions) -> float:
    if opts.conf_threshold is not None:
        return opts.conf_threshold
    return float(getattr(detector, "conf_threshold", 0.0))


def _rate(reader: BagReader, topic: str) -> float:
    """Average message rate of a topic (Hz) from the bag's counts and duration, 1..60."""
    dur = getattr(reader._reader, "duration", 0) / 1e9
    n = reader.counts.get(topic, 0)
    return float(min(max(round((n - 1) / dur) if dur > 0 and n > 1 else 10, 1), 60))


def _flush_video(video: AnnotatedVideo | None, pending: list[_Pending], gt: GroundTruth | None,
                 class_names: list[str], force: bool) -> None:
    """Draw pending frames in order once their ground truth is known (or after 5 messages)."""
    if video is None:
        return
    while pending:
        p = pending[0]
        h, w = p.rgb.shape[:2]
        truth = gt.get(p.det.stamp_ns, w, h) if gt is not None else None
        if truth is None and gt is not None and not force and p.waited < 5:
            p.waited += 1
            return
        video.add(draw(p.rgb, p.det, truth, class_names, p.caption, p.thermal))
        pending.pop(0)


def _metrics(*, bag: Path, storage: str, model_path: Path, opts: EvalOptions,
             class_names: list[str], synthetic: bool, partial: bool, pairer: Any,
             skews_ms: list[float], latency_total: list[float], latency_infer: list[float],
             detections: dict[int, m.FrameDetections], coco: dict[str, Any] | None,
             rgb_type: str, thermal_type: str, span_ns: int, outputs: dict[str, Any],
             homography: np.ndarray | None, sizes: dict[int, tuple[int, int]],
             input_warnings: dict[str, str], interrupted_during: str | None
             ) -> dict[str, Any]:
    stats = pairer.stats.as_dict()
    for st in ("rgb", "thermal"):  # still queued at the end of the bag: neither paired nor dropped
        stats[st]["pending"] = stats[st]["received"] - stats[st]["paired"] - stats[st]["dropped"]
    n_det = sum(len(d) for d in detections.values())
    metrics: dict[str, Any] = {
        "partial": partial,
        "interrupted_during": interrupted_during,
        "bag": str(bag),
        "storage": storage,
        "synthetic_data": synthetic,
        "model": str(model_path),
        "class_names": class_names,
        "topics": {"rgb": opts.rgb_topic, "rgb_type": rgb_type,
                   "thermal": opts.thermal_topic, "thermal_type": thermal_type,
                   "ground_truth": opts.gt, "detections": DET_TOPIC, "label_info": LABEL_TOPIC},
        "homography": None if homography is None else np.asarray(homography).tolist(),
        "bag_span_s": round(span_ns / 1e9, 3),
        "pairing": {
            "slop_s": opts.slop_s, "queue_size": opts.queue_size,
            "pairs": len(detections), **stats,
            "skew_ms": _percentiles([abs(s) for s in skews_ms]),
        },
        "latency_ms": {
            "decode_and_detect": _percentiles(latency_total),
            "inference": _percentiles(latency_infer),
            "cpu": cpu_model(), "threads": opts.threads,
        },
        "detections": {"frames": len(detections), "total": n_det,
                       "per_frame_mean": round(n_det / max(len(detections), 1), 3)},
        "coco": coco,
        "input_warnings": dict(input_warnings),
        "outputs": outputs,
    }
    return metrics


def coco_on_frames(detections: dict[int, m.FrameDetections], gt: GroundTruth,
                   class_names: list[str],
                   sizes: dict[int, tuple[int, int]] | None = None) -> dict[str, Any]:
    """COCO mAP over the evaluated frames that have ground truth (pycocotools).

    Args:
        detections: per RGB stamp.
        gt: ground truth per RGB stamp.
        class_names: the model's class map; ground truth names must be in it.
        sizes: RGB ``(width, height)`` (px) per stamp, needed for normalized (YOLO) ground
            truth.

    Raises:
        BagError: a ground-truth class the model does not know.
    """
    from dlrmamba_core.engine.evaluate import coco_metrics

    index = {n: i for i, n in enumerate(class_names)}
    preds, truths = [], []
    frames = 0
    for stamp in sorted(detections):
        width, height = (sizes or {}).get(stamp, (0, 0))
        truth = gt.get(stamp, width, height)
        if truth is None:
            continue
        unknown = sorted(set(truth.class_names) - set(index))
        if unknown:
            raise BagError(f"ground truth ({gt.source}) at stamp {stamp} has classes {unknown} "
                           f"that the model's class map {class_names} lacks")
        d = detections[stamp]
        preds.append((d.boxes, d.scores, np.array([index[n] for n in d.class_names], np.int64)))
        truths.append((truth.boxes, np.array([index[n] for n in truth.class_names], np.int64)))
        frames += 1
    res = coco_metrics(preds, truths, class_names)
    return {
        "mAP50": res["mAP50"], "mAP50_95": res["mAP50_95"], "per_class": res["per_class"],
        "frames_evaluated": frames, "frames_without_ground_truth": len(detections) - frames,
        "ground_truth_frames_not_evaluated": len(gt.stamps() - set(detections)),
        "num_gt": res["num_gt"], "num_det": res["num_det"],
        "source": gt.source,
    }


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def render_report(metrics: dict[str, Any]) -> str:
    """A short markdown summary of ``metrics``."""
    pr = metrics["pairing"]
    lat = metrics["latency_ms"]
    lines = [
        "# Rosbag evaluation" + (" (PARTIAL: interrupted)" if metrics["partial"] else ""),
        "",
        f"- Bag: `{metrics['bag']}` ({metrics['storage']}, {metrics['bag_span_s']} s)"
        + (" - **synthetic data**" if metrics["synthetic_data"] else ""),
        f"- Model: `{metrics['model']}` ({len(metrics['class_names'])} classes)",
        f"- Topics: RGB `{metrics['topics']['rgb']}`, thermal `{metrics['topics']['thermal']}`",
        "",
        "## Pairing",
        "",
        f"- pairs: {pr['pairs']} (slop {pr['slop_s']} s, queue {pr['queue_size']})",
        f"- RGB: received {pr['rgb']['received']}, paired {pr['rgb']['paired']}, "
        f"dropped {pr['rgb']['dropped']}, left unpaired at the end {pr['rgb']['pending']}",
        f"- thermal: received {pr['thermal']['received']}, paired {pr['thermal']['paired']}, "
        f"dropped {pr['thermal']['dropped']}, left unpaired at the end "
        f"{pr['thermal']['pending']}",
        f"- |skew| ms: p50 {pr['skew_ms']['p50']}, p95 {pr['skew_ms']['p95']}, "
        f"max {pr['skew_ms']['max']}",
        "",
        "## Latency (decode + pre-processing + inference + NMS, per pair)",
        "",
        f"- p50 {_f(lat['decode_and_detect']['p50'])} ms, p95 "
        f"{_f(lat['decode_and_detect']['p95'])} ms (inference only: p50 "
        f"{_f(lat['inference']['p50'])} ms) on {lat['cpu']}, "
        f"{lat['threads']} threads",
        "",
        "## Detections",
        "",
        f"- {metrics['detections']['total']} detections on {metrics['detections']['frames']} "
        f"frames ({metrics['detections']['per_frame_mean']} per frame)",
    ]
    coco = metrics.get("coco")
    if coco:
        lines += ["", "## Accuracy (COCO, pycocotools)", "",
                  f"- mAP50 {coco['mAP50']:.1f}, mAP50:95 {coco['mAP50_95']:.1f} over "
                  f"{coco['frames_evaluated']} frames ({coco['num_gt']} objects)", "",
                  "| class | AP50 | AP50:95 | objects |", "|---|---|---|---|"]
        for name, c in coco["per_class"].items():
            ap50 = "-" if c["AP50"] is None else f"{c['AP50']:.1f}"
            ap = "-" if c["AP50_95"] is None else f"{c['AP50_95']:.1f}"
            lines.append(f"| {name} | {ap50} | {ap} | {c['num_gt']} |")
    out = metrics["outputs"]
    lines += ["", "## Files", "", f"- detections bag: `{out['detections_bag']}/`"]
    if out.get("video"):
        lines.append(f"- annotated video: `{out['video']}` (white: ground truth; coloured: "
                     "detections with class and score)")
    if out.get("preview"):
        lines.append(f"- preview frame: `{out['preview']}`")
    return "\n".join(lines) + "\n"


def read_detections_bag(path: str | Path, topic: str = DET_TOPIC,
                        class_map: list[str] | None = None) -> dict[int, m.FrameDetections]:
    """Detections per RGB stamp from a bag written by ``bag-eval`` or the recorder.

    Args:
        path: the bag.
        topic: its Detection2DArray topic.
        class_map: index -> name for numeric class ids; None = the bag's LabelInfo topic
            (``/dlrmamba/label_info``) when it has one.
    """
    out: dict[int, m.FrameDetections] = {}
    with BagReader(path) as reader:
        reader.require_topic(topic, [m.DETECTIONS])
        if class_map is None and reader.topics.get(LABEL_TOPIC) == m.LABEL_INFO:
            for bm in reader.messages([LABEL_TOPIC]):
                class_map = [c.class_name for c in sorted(bm.decode().class_map,
                                                          key=lambda c: c.class_id)]
        for bm in reader.messages([topic]):
            fd = m.parse_detections(bm.decode(), class_map)
            out[fd.stamp_ns] = fd
    return out
