"""``bag-eval``: run the detector over a rosbag the way the node would, offline.

The RGB and thermal messages are fed in log-time order to the same
:class:`~dlrmamba_core.runtime.pairing.ApproximateTimePairer` the node uses; every pair goes
through the same :class:`~dlrmamba_core.runtime.Detector`. Outputs in ``--out``:

* ``detections/``: a rosbag2 (mcap by default, opens in Foxglove) with
  ``vision_msgs/Detection2DArray`` on the RGB header of each pair (logged at the RGB message's
  log time) and a ``vision_msgs/LabelInfo`` class map;
* ``metrics.json``: pairing statistics, latency p50/p95, detection counts, COCO mAP
  (pycocotools) when ground truth is given; for a segment model ``"segm"``: mask mAP when the
  ground truth has instance masks (a COCO JSON with ``segmentation``), else why it was not
  scored; ``"partial": true`` after an interruption;
* ``annotated.mp4`` (or ``annotated_strip.png`` without a video encoder) and ``preview.png``
  (a segment model's masks drawn under its boxes);
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
from dlrmamba_core.errors import BagError, ConfigError, InputError, ModelFileError
from dlrmamba_core.sysinfo import cpu_model

log = logging.getLogger(__name__)

DET_TOPIC = "/dlrmamba/detections"
LABEL_TOPIC = "/dlrmamba/label_info"
MASK_TOPIC = "/dlrmamba/instance_masks"  # a segment model's index images (``instance_masks``)


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
        instance_masks: also write a segment model's instance masks to the detections bag,
            one ``sensor_msgs/Image`` per pair on ``/dlrmamba/instance_masks``, as the node's
            ``~/instance_masks`` (index image, mono8 up to 255 detections, else mono16).
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
    instance_masks: bool = False


@dataclass
class _Pending:
    """A processed pair waiting for its ground truth before it is drawn."""

    rgb: np.ndarray
    thermal: np.ndarray
    det: m.FrameDetections
    caption: str
    waited: int = 0
    masks: np.ndarray | None = None  # (N, H, W) instance masks of a segment model


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

    The steps, in order: check the inputs and load the model (:func:`_open_inputs`), open the
    outputs, detect on every pair of the bag, then finish a valid output: close the detections
    bag, COCO metrics, the annotated video, preview, ``metrics.json`` and ``report.md``.

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
    bag = Path(bag)
    with BagReader(bag) as reader:
        inputs = _open_inputs(bag, reader, opts)
        target = AtomicDir(out, overwrite=opts.overwrite)
        run = _BagEvaluation(reader, inputs, opts, target)
        try:
            run.open_outputs()
            run.detect_pairs()
            run.require_a_pair()
            # From here on every step finishes a valid output. The detections bag is closed
            # with Ctrl-C deferred (a half-written index would make it unreadable); the costly
            # steps (COCO, video encoding) are skipped on Ctrl-C, and the result says so.
            run.close_detections_bag()
            coco = run.coco_metrics()
            segm = run.segm_metrics()
            video_path = run.finish_video()
            with _deferred_sigint(run.state):
                _phase(opts, "report")
                preview = run.write_preview()
                metrics = run.write_metrics_and_report(coco, video_path, preview, segm)
                run.close_progress()
                final = target.commit()
        except BaseException:
            run.abort()
            target.discard()
            raise
    result = EvalResult(final, metrics, run.records.detections)
    if run.state.hit:
        raise EvalInterrupted(result)
    return result


@dataclass
class _Inputs:
    """What :func:`evaluate_bag` knows before the first pair: topics, ground truth, model."""

    bag: Path
    storage: str
    rgb_type: str
    thermal_type: str
    gt: GroundTruth | None
    gt_topic: str | None
    model_path: Path
    homography: np.ndarray | None
    detector: Any
    class_names: list[str]
    n_rgb: int
    synthetic: bool
    segment: bool = False  # a segment model: Detector.detect can give instance masks


def _open_inputs(bag: Path, reader: BagReader, opts: EvalOptions) -> _Inputs:
    """Check the image topics, find the ground truth, load the Detector the node runs.

    Ground truth comes from a bag topic of that name, else a file (COCO JSON, YOLO label
    folder, read with the model's class map). The homography is ``opts.homography``, else the
    bag's custom data.
    """
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
    if opts.instance_masks and not getattr(detector, "segment", False):
        raise ConfigError(f"instance masks asked for, but {model_path} is a detection model "
                          "(no mask outputs): pass a segment model (trained with --task "
                          "segment) or leave out --instance-masks")
    class_names = list(detector_class_names(detector))
    if opts.gt and gt is None:
        gt = GroundTruth.from_file(opts.gt, class_names)
    return _Inputs(bag=bag, storage=reader.storage, rgb_type=rgb_type,
                   thermal_type=thermal_type, gt=gt, gt_topic=gt_topic, model_path=model_path,
                   homography=homography, detector=detector, class_names=class_names,
                   n_rgb=reader.counts.get(opts.rgb_topic, 0),
                   synthetic=reader.custom.get(CUSTOM_SYNTHETIC) == "true",
                   segment=bool(getattr(detector, "segment", False)))


@dataclass
class _Records:
    """What the pass over the bag collected, per pair (keyed by the RGB stamp, ns)."""

    detections: dict[int, m.FrameDetections] = field(default_factory=dict)
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)  # RGB (width, height)
    latency_total: list[float] = field(default_factory=list)  # decode + detect, ms
    latency_infer: list[float] = field(default_factory=list)  # network alone, ms
    skews_ms: list[float] = field(default_factory=list)  # RGB - thermal stamp, ms
    masks: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # COCO RLE per box
    first_log: int | None = None  # log time of the first / last message read (ns)
    last_log: int | None = None


class _BagEvaluation:
    """The outputs of one :func:`evaluate_bag` run and its steps (called in that order)."""

    def __init__(self, reader: BagReader, inputs: _Inputs, opts: EvalOptions,
                 target: AtomicDir) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        from dlrmamba_core.runtime.pairing import ApproximateTimePairer

        self.reader, self.inputs, self.opts, self.target = reader, inputs, opts, target
        self.writer = Writer(target.tmp / "detections", version=9,
                             storage_plugin=StoragePlugin.MCAP if opts.out_storage == "mcap"
                             else StoragePlugin.SQLITE3)
        self.pairer: ApproximateTimePairer[BagMessage] = ApproximateTimePairer(
            queue_size=opts.queue_size, slop_s=opts.slop_s)
        self.records = _Records()
        self.state = _Interrupts()
        self.video: AnnotatedVideo | None = None
        self.pending: list[_Pending] = []  # detected frames waiting for their ground truth
        self.bar: Any = None
        self._label_written = False
        gt = inputs.gt
        # Segment model: masks are decoded only for what uses them (the video, segm scoring).
        self.score_masks = inputs.segment and gt is not None and gt.has_masks
        self.write_masks = inputs.segment and opts.instance_masks
        self.decode_masks = inputs.segment and (opts.video or self.score_masks
                                                or self.write_masks)

    def open_outputs(self) -> None:
        """Open the detections bag (+ LabelInfo topic), the video writer and the progress bar."""
        opts, store = self.opts, get_bag_typestore()
        self.writer.open()
        self.det_conn = self.writer.add_connection(DET_TOPIC, m.DETECTIONS, typestore=store)
        self.label_conn = self.writer.add_connection(LABEL_TOPIC, m.LABEL_INFO,
                                                     typestore=store)
        if self.write_masks:
            self.mask_conn = self.writer.add_connection(MASK_TOPIC, m.IMAGE, typestore=store)
        if opts.video:
            self.video = AnnotatedVideo(self.target.tmp / "annotated.mp4",
                                        self.target.tmp / "annotated_strip.png",
                                        fps=min(_rate(self.reader, opts.rgb_topic),
                                                _rate(self.reader, opts.thermal_topic)))
        if opts.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=self.inputs.n_rgb, unit="rgb", desc="bag-eval", leave=False)

    def detect_pairs(self) -> None:
        """Feed the messages in log-time order to the node's pairer; detect on every pair.

        Ground-truth messages are collected on the way. A Ctrl-C ends the pass; what was
        detected so far stays (the output becomes partial).
        """
        opts, rec, gt_topic = self.opts, self.records, self.inputs.gt_topic
        topics = [opts.rgb_topic, opts.thermal_topic] + ([gt_topic] if gt_topic else [])
        try:
            _phase(opts, "reading")
            for bm in self.reader.messages(topics):
                rec.first_log = bm.log_ns if rec.first_log is None else rec.first_log
                rec.last_log = bm.log_ns
                if bm.topic == gt_topic:
                    self._add_ground_truth(bm)
                    continue
                stream = "rgb" if bm.topic == opts.rgb_topic else "thermal"
                if stream == "rgb" and self.bar is not None:
                    self.bar.update(1)
                msg = bm.decode()
                for pair in self.pairer.add(stream, m.stamp_of(msg), bm):
                    self._detect_pair(pair)
                if opts.max_pairs is not None and len(rec.detections) >= opts.max_pairs:
                    break
        except KeyboardInterrupt:
            self.state.interrupt("reading the bag")

    def _add_ground_truth(self, bm: BagMessage) -> None:
        gt = self.inputs.gt
        assert gt is not None
        # numeric class ids are read with the model's class map
        gt.add(m.parse_detections(bm.decode(), self.inputs.class_names))
        _flush_video(self.video, self.pending, gt, self.inputs.class_names, force=False)

    def _detect_pair(self, pair: Any) -> None:
        """Decode both images, detect, write the detections message and record the pair."""
        opts, inp = self.opts, self.inputs
        _phase(opts, "inference")
        t0 = time.perf_counter()
        rgb_msg = pair.rgb.decode()
        rgb = m.decode_rgb(rgb_msg, inp.rgb_type, f"topic {opts.rgb_topic}")
        thermal = m.decode_thermal(pair.thermal.decode(), inp.thermal_type,
                                   f"topic {opts.thermal_topic}")
        res = inp.detector.detect(rgb, thermal, masks=self.decode_masks)
        total_ms = (time.perf_counter() - t0) * 1e3
        fd = m.FrameDetections.from_detections(pair.rgb_stamp_ns, str(rgb_msg.header.frame_id),
                                               res)
        rec = self.records
        with _deferred_sigint(self.state):  # a message is written whole or not
            self._write_detections(pair.rgb.log_ns, fd)
            if self.write_masks:
                self._write_masks(pair.rgb.log_ns, fd, res, rgb.shape[:2])
            rec.detections[fd.stamp_ns] = fd
            rec.sizes[fd.stamp_ns] = (rgb.shape[1], rgb.shape[0])
            rec.latency_total.append(total_ms)
            rec.latency_infer.append(float(getattr(res, "inference_ms", total_ms)))
            rec.skews_ms.append(pair.skew_ns / 1e6)
            if self.score_masks and res.masks is not None:
                from dlrmamba_core.data.masks import rle_encode

                rec.masks[fd.stamp_ns] = [rle_encode(mk) for mk in res.masks]
        if self.state.hit:
            raise KeyboardInterrupt
        if self.video is not None:
            cap = f"t={fd.stamp_ns / 1e9:.3f}s  {len(fd)} det  {total_ms:.0f} ms"
            self.pending.append(_Pending(rgb, thermal, fd, cap, masks=res.masks))
            _flush_video(self.video, self.pending, inp.gt, inp.class_names, force=False)
        if opts.on_pair is not None:
            opts.on_pair(len(rec.detections))

    def _write_detections(self, log_ns: int, fd: m.FrameDetections) -> None:
        """The detections message of one pair (the first one preceded by the LabelInfo)."""
        names = self.inputs.class_names
        if not self._label_written:
            self.writer.write(self.label_conn, log_ns, m.serialize(
                m.label_info_message(names, fd.stamp_ns, fd.frame_id,
                                     _threshold(self.inputs.detector, self.opts)),
                m.LABEL_INFO))
            self._label_written = True
        self.writer.write(self.det_conn, log_ns,
                          m.serialize(m.detections_message(fd, names), m.DETECTIONS))

    def _write_masks(self, log_ns: int, fd: m.FrameDetections, res: Any,
                     size: tuple[int, int]) -> None:
        """The instance-mask index image of one pair, as the node publishes it."""
        from dlrmamba_core.runtime.segment import instance_index_image, instance_mask_encoding

        encoding = instance_mask_encoding(max(int(getattr(self.inputs.detector,
                                                          "max_detections", 100)), len(fd)))
        masks = res.masks if res.masks is not None else np.zeros((0, *size), np.uint8)
        index = instance_index_image(masks, res.scores, res.boxes, encoding)
        self.writer.write(self.mask_conn, log_ns, m.serialize(
            m.image_message(index, encoding, fd.stamp_ns, fd.frame_id), m.IMAGE))

    def require_a_pair(self) -> None:
        """Raise when the whole bag gave no pair (an interrupted run may have none)."""
        if self.records.detections or self.state.hit:
            return
        opts, stats = self.opts, self.pairer.stats
        raise BagError(
            f"{self.inputs.bag}: no RGB/thermal pair matched on {opts.rgb_topic} + "
            f"{opts.thermal_topic} with slop {opts.slop_s} s and queue size "
            f"{opts.queue_size} (rgb {stats.rgb.received} msgs, thermal "
            f"{stats.thermal.received} msgs): check the topics, or raise "
            "--slop if the cameras' stamps differ more than that"
        )

    def close_detections_bag(self) -> None:
        """Close the detections bag with Ctrl-C deferred."""
        with _deferred_sigint(self.state):
            self.writer.close()

    def coco_metrics(self) -> dict[str, Any] | None:
        """COCO mAP against the ground truth, if any (skipped after a Ctrl-C)."""
        gt, names, rec = self.inputs.gt, self.inputs.class_names, self.records
        if gt is None:
            return None
        result: dict[str, Any] | None = _interruptible(
            self.state, self.opts, "metrics",
            lambda: coco_on_frames(rec.detections, gt, names, rec.sizes))
        return result

    def segm_metrics(self) -> dict[str, Any] | None:
        """A segment model's mask mAP, or why it was not scored; None for a detect model."""
        inp, rec = self.inputs, self.records
        if not inp.segment:
            return None
        gt = inp.gt
        if gt is None:
            return {"scored": False, "reason": "no ground truth given"}
        if not self.score_masks:
            return {"scored": False,
                    "reason": f"the ground truth ({gt.source}) has boxes only, no instance "
                              "masks: segm mAP is not computed (masks are drawn in the video)"}
        result: dict[str, Any] | None = _interruptible(
            self.state, self.opts, "metrics",
            lambda: segm_on_frames(rec.detections, rec.masks, gt, inp.class_names, rec.sizes))
        if result is None:
            return {"scored": False, "reason": "interrupted"}
        return result

    def finish_video(self) -> Path | None:
        """Draw the frames still pending and close the video.

        Interrupted before: the few frames left are drawn with Ctrl-C deferred. Interrupted
        while encoding: the MP4 is dropped and the PNG strip kept.
        """
        video = self.video
        if video is None:
            return None
        gt, names = self.inputs.gt, self.inputs.class_names

        def finish() -> Path | None:
            _flush_video(video, self.pending, gt, names, force=True)
            return video.close()

        if self.state.hit:
            with _deferred_sigint(self.state):
                return finish()
        path: Path | None = _interruptible(self.state, self.opts, "video", finish,
                                           fallback=video.close_as_strip)
        return path

    def write_preview(self) -> Path | None:
        """``preview.png``: a frame of the video, if there is one."""
        frame = self.video.preview_frame() if self.video is not None else None
        if frame is None:
            return None
        preview = self.target.tmp / "preview.png"
        cv2.imwrite(str(preview), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        return preview

    def write_metrics_and_report(self, coco: dict[str, Any] | None, video_path: Path | None,
                                 preview: Path | None,
                                 segm: dict[str, Any] | None = None) -> dict[str, Any]:
        """``metrics.json`` and ``report.md`` (rewritten if a Ctrl-C arrives meanwhile)."""
        outputs = {"detections_bag": "detections",
                   "video": video_path.name if video_path else None,
                   "preview": preview.name if preview else None,
                   "report": "report.md",
                   "instance_masks_topic": MASK_TOPIC if self.write_masks else None}
        while True:
            partial = self.state.hit
            metrics = _metrics(self, coco, outputs, partial, segm)
            (self.target.tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
            (self.target.tmp / "report.md").write_text(render_report(metrics))
            if self.state.hit == partial:
                return metrics

    def close_progress(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def abort(self) -> None:
        """After an error: close the bar, abort the bag and video writers."""
        if self.bar is not None:
            self.bar.close()
        if self.writer.storage is not None:
            self.writer.abort()
        if self.video is not None:
            self.video.abort()


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
        video.add(draw(p.rgb, p.det, truth, class_names, p.caption, p.thermal, p.masks))
        pending.pop(0)


def _metrics(run: _BagEvaluation, coco: dict[str, Any] | None, outputs: dict[str, Any],
             partial: bool, segm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    inp, rec, opts, pairer = run.inputs, run.records, run.opts, run.pairer
    detections = rec.detections
    stats = pairer.stats.as_dict()
    for st in ("rgb", "thermal"):  # still queued at the end of the bag: neither paired nor dropped
        stats[st]["pending"] = stats[st]["received"] - stats[st]["paired"] - stats[st]["dropped"]
    n_det = sum(len(d) for d in detections.values())
    metrics: dict[str, Any] = {
        "partial": partial,
        "interrupted_during": run.state.where,
        "bag": str(inp.bag),
        "storage": inp.storage,
        "synthetic_data": inp.synthetic,
        "model": str(inp.model_path),
        "class_names": inp.class_names,
        "topics": {"rgb": opts.rgb_topic, "rgb_type": inp.rgb_type,
                   "thermal": opts.thermal_topic, "thermal_type": inp.thermal_type,
                   "ground_truth": opts.gt, "detections": DET_TOPIC, "label_info": LABEL_TOPIC},
        "homography": None if inp.homography is None else np.asarray(inp.homography).tolist(),
        "bag_span_s": round(((rec.last_log or 0) - (rec.first_log or 0)) / 1e9, 3),
        "pairing": {
            "slop_s": opts.slop_s, "queue_size": opts.queue_size,
            "pairs": len(detections), **stats,
            "skew_ms": _percentiles([abs(s) for s in rec.skews_ms]),
        },
        "latency_ms": {
            "decode_and_detect": _percentiles(rec.latency_total),
            "inference": _percentiles(rec.latency_infer),
            "cpu": cpu_model(), "threads": opts.threads,
        },
        "detections": {"frames": len(detections), "total": n_det,
                       "per_frame_mean": round(n_det / max(len(detections), 1), 3)},
        "coco": coco,
        "task": "segment" if inp.segment else "detect",
        "segm": segm,
        "input_warnings": dict(getattr(inp.detector, "input_warning_messages", {})),
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
        _check_truth_classes(truth.class_names, index, gt, stamp, class_names)
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


def _check_truth_classes(names: list[str], index: dict[str, int], gt: GroundTruth,
                         stamp: int, class_names: list[str]) -> None:
    """Raise BagError when ground truth at ``stamp`` names a class the model lacks."""
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise BagError(f"ground truth ({gt.source}) at stamp {stamp} has classes {unknown} "
                       f"that the model's class map {class_names} lacks")


def segm_on_frames(detections: dict[int, m.FrameDetections],
                   masks: dict[int, list[dict[str, Any]]], gt: GroundTruth,
                   class_names: list[str],
                   sizes: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """COCO mask mAP (pycocotools ``segm``) over the evaluated frames whose ground truth has
    instance masks.

    Args:
        detections: per RGB stamp.
        masks: per RGB stamp one COCO RLE per detection (in order), RGB pixels.
        gt: ground truth per RGB stamp (:meth:`GroundTruth.masks`).
        class_names: the model's class map; ground truth names must be in it.
        sizes: RGB ``(width, height)`` (px) per stamp.

    Raises:
        BagError: a ground-truth class the model does not know.
    """
    from dlrmamba_core.engine.evaluate import coco_segm_metrics
    from dlrmamba_core.runtime.detections import Detections

    index = {n: i for i, n in enumerate(class_names)}
    preds, pred_masks, labels, truth_masks = [], [], [], []
    for stamp in sorted(detections):
        width, height = sizes[stamp]
        truth = gt.get(stamp, width, height)
        rles = gt.masks(stamp, width, height)
        if truth is None or rles is None or stamp not in masks:
            continue
        _check_truth_classes(truth.class_names, index, gt, stamp, class_names)
        d = detections[stamp]
        preds.append(Detections.of(d.boxes, d.scores, [index[n] for n in d.class_names]))
        pred_masks.append(masks[stamp])
        labels.append(np.array([index[n] for n in truth.class_names], np.int64))
        truth_masks.append(rles)
    res = coco_segm_metrics(preds, pred_masks, labels, truth_masks, class_names)
    return {"scored": True, "mAP50": res["mAP50"], "mAP50_95": res["mAP50_95"],
            "per_class": res["per_class"], "frames_evaluated": len(preds),
            "num_gt": res["num_gt"], "num_det": res["num_det"], "source": gt.source}


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
    segm = metrics.get("segm")
    if segm is not None and segm.get("scored"):
        lines += ["", "## Instance masks (COCO segm, pycocotools)", "",
                  f"- mask mAP50 {segm['mAP50']:.1f}, mAP50:95 {segm['mAP50_95']:.1f} over "
                  f"{segm['frames_evaluated']} frames ({segm['num_gt']} objects)"]
    elif segm is not None:
        lines += ["", "## Instance masks", "", f"- not scored: {segm['reason']}"]
    out = metrics["outputs"]
    lines += ["", "## Files", "", f"- detections bag: `{out['detections_bag']}/`"]
    if out.get("instance_masks_topic"):
        lines.append(f"- instance masks: topic `{out['instance_masks_topic']}` of the detections "
                     "bag (index images: pixel = 1 + detection index, 0 = background)")
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


def read_instance_masks_bag(path: str | Path,
                            topic: str = MASK_TOPIC) -> dict[int, np.ndarray]:
    """Instance-mask index images per RGB stamp from a bag: ``bag-eval --instance-masks``'s
    output, or a recording of the node's ``~/instance_masks`` (``bag-play --record-masks``).

    Returns:
        (H, W) uint8 or uint16 arrays: pixel = 1 + index of the detection in the
        ``Detection2DArray`` of the same stamp, 0 = background.

    Raises:
        BagError: no such Image topic, or an index image that is not mono8 / mono16.
    """
    from dlrmamba_core.runtime import image_codec

    out: dict[int, np.ndarray] = {}
    with BagReader(path) as reader:
        reader.require_topic(topic, [m.IMAGE])
        for bm in reader.messages([topic]):
            msg = bm.decode()
            if str(msg.encoding) not in ("mono8", "mono16"):
                raise BagError(f"{path} topic {topic}: an instance-mask image is mono8 or "
                               f"mono16, this one is {msg.encoding}")
            try:
                out[m.stamp_of(msg)] = image_codec.image_msg_to_numpy(msg, f"topic {topic}")
            except InputError as exc:
                raise BagError(f"{path} {exc}") from exc
    return out
