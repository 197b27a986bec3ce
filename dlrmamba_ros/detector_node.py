"""The RGB + thermal detector as a ROS 2 lifecycle node (console script ``detector_node``).

Lifecycle: *configure* loads the model and creates the publishers; *activate* subscribes to
the cameras and starts the inference worker; *deactivate* unsubscribes and stops the worker;
*cleanup* unloads the model.

Topics (node-relative, remap them at launch):
    in   ``rgb/image``       sensor_msgs/Image or CompressedImage (``rgb_compressed``)
    in   ``thermal/image``   sensor_msgs/Image or CompressedImage (``thermal_compressed``)
    out  ``detections``      vision_msgs/Detection2DArray, header = the RGB image's header
    out  ``labels``          vision_msgs/LabelInfo (transient local: late joiners get it)
    out  ``~/debug_image``   sensor_msgs/Image, only while someone subscribes
    out  ``~/instance_masks`` sensor_msgs/Image mono8/mono16, a segment model only, only while
                             someone subscribes: pixel = 1 + index of the detection in the
                             Detection2DArray of the same header (``Detection2D.id``), 0 =
                             background; overlaps go to the higher score
    out  ``/diagnostics``    diagnostic_msgs/DiagnosticArray
Service: ``~/enable`` std_srvs/SetBool.

Threads: subscription callbacks only check and pair messages (cheap); a worker thread takes
the **latest** pair from a one-slot mailbox, decodes it, runs the detector and publishes.
No image math happens here beyond calling dlrmamba_core.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
import json
import os
import sys
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.event_handler import SubscriptionEventCallbacks, UnsupportedEventTypeError
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import Detection2DArray, LabelInfo

from dlrmamba_core.errors import ConfigError, DlrmambaError, InputError, ModelFileError
from dlrmamba_core.runtime.image_codec import ImageDataError
from dlrmamba_core.runtime.pairing import PairingStats
from dlrmamba_ros import conversions, debug_image, params
from dlrmamba_ros import diagnostics as diag
from dlrmamba_ros.latest import LatestSlot
from dlrmamba_ros.qos import Mismatch, incompatible_publishers, make_qos
from dlrmamba_ros.stats import DeliveryMeter, LossMeter, RateMeter, Window
from dlrmamba_ros.sync import PairSync, make_sync

PACKAGE = "dlrmamba_ros"
RGB_TOPIC = "rgb/image"
THERMAL_TOPIC = "thermal/image"


def resolve_default_model(share_dir: str | None = None) -> str:
    """The ONNX file named by ``<share>/models/default.json`` (``{"model": "<file>.onnx"}``).

    Args:
        share_dir: the package share directory; None = ``ament_index`` lookup.

    Raises:
        ModelFileError: no share directory, no/invalid default.json, or a missing model file.
    """
    if share_dir is None:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            share_dir = get_package_share_directory(PACKAGE)
        except PackageNotFoundError as exc:
            raise ModelFileError(
                f"package {PACKAGE} is not installed (no share directory): set the 'model' "
                "parameter to an ONNX file"
            ) from exc
    card = os.path.join(share_dir, "models", "default.json")
    try:
        with open(card, encoding="utf-8") as fh:
            name = json.load(fh)["model"]
    except FileNotFoundError as exc:
        raise ModelFileError(
            f"{card} not found: no default model is installed; set the 'model' parameter "
            "to an ONNX file (dlrmamba export ...)"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{card} is not valid: expected {{\"model\": \"<file>.onnx\"}} ({exc})"
        ) from exc
    path = os.path.join(share_dir, "models", str(name))
    if not os.path.isfile(path):
        raise ModelFileError(f"{card} names {name!r} but {path} does not exist")
    return path


@dataclass
class Job:
    """One unit of work for the inference worker.

    Attributes:
        rgb: the RGB message.
        thermal: the thermal message, or None in RGB-only degraded mode.
        ready_ns: monotonic time (ns) when the node had all inputs of this job.
        skew_ns: RGB minus thermal stamp (ns), or None.
    """

    rgb: Image | CompressedImage
    thermal: Image | CompressedImage | None
    ready_ns: int
    skew_ns: int | None


@dataclass
class FrameTiming:
    """Per-frame timings (ms) kept for diagnostics and the benchmark."""

    latency_ms: float  # inputs complete -> detections published
    detect_ms: float  # Detector.detect wall time (pre + model + post)
    inference_ms: float  # network forward alone, as the Detector reports it
    decode_ms: float
    publish_ms: float
    done_ns: int = 0  # monotonic ns when published
    stamp_ns: int = 0  # the RGB header stamp (ns)
    n_detections: int = 0
    node_cpu_ms: float = 0.0  # worker-thread CPU time of decode + convert + publish


@dataclass
class NodeCounters:
    """Counters reported in diagnostics (all monotonically increasing)."""

    processed: int = 0
    published: int = 0
    skipped_stale: int = 0
    paused: int = 0
    rgb_only: int = 0
    disabled: int = 0
    debug_rendered: int = 0
    masks_published: int = 0  # ~/instance_masks messages (masks decoded for a subscriber)
    drops: Counter = field(default_factory=Counter)  # (stream, kind) -> count


class DetectorNode(LifecycleNode):
    """RGB + thermal detector lifecycle node. See the module docstring for the interface.

    Args:
        node_name: ROS node name.
        **kwargs: passed to ``LifecycleNode`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = "dlrmamba_detector", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare_all(self)
        # Parameters are read once here and once per parameter event (post-set callback),
        # never by name on the message path.
        self._values: dict[str, Any] = {n: self._read_param(n) for n in params.SPEC_BY_NAME}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._lock = threading.Lock()
        self.events: deque[tuple[str, str, str]] = deque(maxlen=1000)
        self._listeners: list[Callable[[str, str, str], None]] = []
        self._logged_kinds: set[tuple[str, str]] = set()
        self._warned_qos: set[tuple[str, tuple[int, ...]]] = set()
        self.counters = NodeCounters()
        self.timings: deque[FrameTiming] = deque(maxlen=256)  # recent frames (bench, tests)
        self._detector: Any = None
        self._class_names: list[str] = []
        self._sync: PairSync | None = None
        self._last_stats = PairingStats()
        self._qos_texts: dict[tuple[str, tuple[int, ...]], str] = {}
        self._subs: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self._slot: LatestSlot[Job] = LatestSlot()
        self._worker: threading.Thread | None = None
        self._rates = {"rgb": RateMeter(), "thermal": RateMeter()}
        self._received = {"rgb": 0, "thermal": 0}
        self._latency = Window(300)
        self._detect_ms = Window(300)
        self._inference_ms = Window(300)
        self._overhead = Window(300)
        self._skew_ms = Window(300)
        self._last_thermal_ns = 0
        self._thermal_missing = False
        self._sync_backend = "internal"
        self._publisher_counts: dict[str, int] = {}
        self._topics: dict[str, str] = {}
        self._state = "unconfigured"
        self._active_since_ns = 0
        self._thermal_seen = False  # a thermal frame arrived since activation
        self._first_msg_ns: int | None = None  # first input of either stream since activation
        self._last_msg_ns: dict[str, int] = {}
        self._delivery = {"rgb": DeliveryMeter(), "thermal": DeliveryMeter()}
        self._loss = {"rgb": LossMeter(), "thermal": LossMeter()}  # DDS message-lost counts
        self._loss_events: dict[str, bool] = {}  # stream -> the rmw reports lost messages
        self._warned_delivery: set[str] = set()
        self._publisher_since: dict[str, int] = {}  # stream -> monotonic ns, publishers > 0
        self._delivery_texts: dict[str, str] = {}  # stream -> low-delivery finding
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_period = float(self._param("diagnostics_period_s"))
        self._diag_timer = self.create_timer(self._diag_period, self._on_diag_timer)
        self._qos: dict[str, QoSProfile] = {}
        self._enabled = bool(self._param("start_enabled"))
        bad = params.validate("thermal_homography", self._param("thermal_homography"))
        if bad is not None:
            raise ConfigError(f"parameter {bad}")
        self._homography: np.ndarray | None = self._homography_from(
            self._param("thermal_homography"))
        self._active = False
        self.create_service(SetBool, "~/enable", self._on_enable)

    # ------------------------------------------------------------------ events / logging
    def add_event_listener(self, fn: Callable[[str, str, str], None]) -> None:
        """Call ``fn(level, kind, message)`` for every warning/error event the node logs."""
        self._listeners.append(fn)

    def _event(self, level: str, kind: str, message: str) -> None:
        """Log ``message`` at ``level`` and record it in :attr:`events` (a test/ops hook)."""
        # One call site per severity: rclpy refuses a call site whose severity changes.
        log = self.get_logger()
        if level == "info":
            log.info(message)
        elif level == "warn":
            log.warning(message)
        else:
            log.error(message)
        self.events.append((level, kind, message))
        for fn in list(self._listeners):
            fn(level, kind, message)

    def _read_param(self, name: str) -> Any:
        try:
            return self.get_parameter(name).value
        except ParameterUninitializedException:
            return None  # an optional parameter left unset (thermal_homography)

    def _param(self, name: str) -> Any:
        """The cached value of parameter ``name`` (refreshed on every parameter event)."""
        return self._values[name]

    def _on_parameters_set(self, updates: list[Any]) -> None:
        for p in updates:
            if p.name in self._values:
                self._values[p.name] = self._read_param(p.name)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and create the publishers."""
        try:
            model = self._param("model") or resolve_default_model()
            from dlrmamba_core.runtime import Detector

            self._detector = Detector(
                model,
                backend=self._param("backend"),
                threads=int(self._param("threads")),
                spin=bool(self._param("ort_spin")),
                conf_threshold=float(self._param("conf_threshold")),
                iou_threshold=float(self._param("iou_threshold")),
                max_detections=int(self._param("max_detections")),
            )
        except DlrmambaError as exc:
            self._event("error", "configure", f"cannot load the model: {exc}")
            return TransitionCallbackReturn.FAILURE
        self._class_names = list(self._detector.class_names)
        self._event("info", "configure", f"loaded {model} ({len(self._class_names)} classes)")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pubs = {
            "detections": self.create_publisher(Detection2DArray, "detections", 10),
            "labels": self.create_publisher(LabelInfo, "labels", latched),
            "debug": self.create_publisher(Image, "~/debug_image", 2),
        }
        if getattr(self._detector, "segment", False):
            # Only a segment model has the topic: a detect model's node does not advertise it.
            self._pubs["masks"] = self.create_publisher(Image, "~/instance_masks", 2)
            self._event("info", "configure", "segment model: instance masks are decoded and "
                        f"published on {self._pubs['masks'].topic_name} while it has a "
                        "subscriber")
        self._state = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the cameras, start the worker and the diagnostics timer."""
        try:
            self._create_inputs()
        except DlrmambaError as exc:
            self._event("error", "activate", f"cannot subscribe: {exc}")
            self._destroy_inputs()
            return TransitionCallbackReturn.FAILURE
        self._enabled = bool(self._param("start_enabled"))
        self._active_since_ns = self._last_thermal_ns = time.monotonic_ns()
        self._thermal_seen = False
        self._first_msg_ns = None
        self._last_msg_ns = {}
        self._thermal_missing = False
        self._delivery = {"rgb": DeliveryMeter(), "thermal": DeliveryMeter()}
        self._loss = {"rgb": LossMeter(), "thermal": LossMeter()}
        self._publisher_since = {}
        self._delivery_texts = {}
        self._publisher_counts = {}
        self._warned_delivery = set()
        self._slot = LatestSlot()
        self._active = True
        self._worker = threading.Thread(target=self._work, name="dlrmamba_infer", daemon=True)
        self._worker.start()
        period = float(self._param("diagnostics_period_s"))
        if period != self._diag_period:  # [activate] parameter: re-arm the shared timer
            self.destroy_timer(self._diag_timer)
            self._diag_period = period
            self._diag_timer = self.create_timer(period, self._on_diag_timer)
        header = Header(frame_id="")
        header.stamp = self.get_clock().now().to_msg()
        self._pubs["labels"].publish(conversions.label_info_msg(
            self._class_names, header, float(self._param("conf_threshold"))))
        self._check_qos()
        self._state = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop the worker (the model stays loaded)."""
        self._stop_active()
        self._state = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unload the model and destroy the publishers."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, whatever state we were in."""
        self._stop_active()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_active()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the worker, unsubscribe, unload the model (idempotent; used by main())."""
        self._stop_active()
        self._release()

    def _stop_active(self) -> None:
        was_active = self._active
        self._active = False
        self._destroy_inputs()
        self._slot.close()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        if was_active:
            self._event("info", "summary", "input and output counts: " + self.run_summary())

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        self._detector = None
        self._state = "unconfigured"

    # ------------------------------------------------------------------ inputs
    def _create_inputs(self) -> None:
        depth = int(self._param("qos_depth"))
        exact = self._param("sync") == "exact"
        qsize, slop = int(self._param("sync_queue_size")), float(self._param("sync_slop_s"))
        self._qos = {s: make_qos(self._param(f"{s}_qos"), depth) for s in ("rgb", "thermal")}
        types = {s: CompressedImage if self._param(f"{s}_compressed") else Image
                 for s in ("rgb", "thermal")}
        topics = {"rgb": RGB_TOPIC, "thermal": THERMAL_TOPIC}
        self._sync = make_sync(str(self._param("sync_backend")), self._on_pair, qsize, slop,
                               exact)
        self._sync_backend = self._sync.name
        self._subs = []
        for s in ("rgb", "thermal"):
            self._subs.append(self._subscribe(s, types[s], topics[s]))
        self._topics = {s: sub.topic_name for s, sub in zip(("rgb", "thermal"), self._subs,
                                                            strict=True)}
        policy = "exact stamps" if exact else f"slop {slop} s"
        self._event("info", "sync_backend",
                    f"pairing {self._topics['rgb']} + {self._topics['thermal']} with the "
                    f"{self._sync.name} synchronizer ({policy}, queue {qsize})")

    def _subscribe(self, stream: str, msg_type: Any, topic: str) -> Any:
        """One input subscription with its QoS events: incompatible QoS, and the messages
        DDS lost on the way (where the rmw reports them; without, delivery is estimated from
        stamps)."""
        incompatible = self._qos_event(stream)
        try:
            sub = self.create_subscription(
                msg_type, topic, self._make_callback(stream), self._qos[stream],
                event_callbacks=SubscriptionEventCallbacks(
                    incompatible_qos=incompatible, message_lost=self._lost_event(stream)))
            self._loss_events[stream] = True
            return sub
        except UnsupportedEventTypeError:
            self._loss_events[stream] = False
            return self.create_subscription(
                msg_type, topic, self._make_callback(stream), self._qos[stream],
                event_callbacks=SubscriptionEventCallbacks(incompatible_qos=incompatible))

    def _lost_event(self, stream: str) -> Callable[[Any], None]:
        """Message-lost event handler of one input: count what DDS lost."""

        def handler(info: Any) -> None:
            self._loss[stream].lost(int(info.total_count_change), time.monotonic_ns())

        return handler

    def _qos_event(self, stream: str) -> Callable[[Any], None]:
        """Incompatible-QoS event handler of one input: name the offending publishers."""

        def handler(_info: Any) -> None:
            self._check_qos(stream)

        return handler

    def _destroy_inputs(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._sync is not None:  # drops its queued frames and callbacks
            self._sync.close()
            self._sync = None

    def _make_callback(self, stream: str) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            now = time.monotonic_ns()
            if not self._accept(stream, msg, now):
                return
            self._pair(stream, msg, now)

        return callback

    def _accept(self, stream: str, msg: Any, now: int) -> bool:
        """Count, rate-meter and sanity-check one input message; False = do not pair it."""
        self._received[stream] += 1
        self._rates[stream].tick(now)
        self._loss[stream].received(now)
        self._last_msg_ns[stream] = now
        if self._first_msg_ns is None:
            self._first_msg_ns = now
        try:
            conversions.check_image_msg(msg, stream, self._topics[stream])
        except ImageDataError as exc:
            self._drop(stream, exc.kind, str(exc))
            return False
        if isinstance(msg, Image) and not self._size_ok(stream, msg.height, msg.width):
            return False
        self._delivery[stream].add(conversions.stamp_ns(msg.header), now)
        if msg.header.stamp.sec < 0:  # builtin_interfaces/Time.sec is signed
            self._drop(stream, "stamp", f"negative stamp sec={msg.header.stamp.sec} on "
                       f"{self._topics[stream]}: the publisher's clock is not set")
            return False
        if stream == "thermal":  # only a well-formed thermal frame proves the camera alive
            self._last_thermal_ns = now
            self._thermal_seen = True
            if self._thermal_missing:
                self._thermal_missing = False
                self._event("info", "thermal_recovered",
                            f"thermal input {self._topics['thermal']} is back: fused detection "
                            "resumed")
        if not self._enabled:
            self.counters.disabled += 1
            return False
        if stream == "rgb" and self._thermal_stale(now):
            if self._param("thermal_dropout_policy") == "rgb_only":
                self.counters.rgb_only += 1
                self._submit(Job(msg, None, now, None))
            else:
                self.counters.paused += 1
            return False
        return True

    def _size_ok(self, stream: str, height: int, width: int) -> bool:
        """False (dropped, counted, logged once) when a frame exceeds ``max_image_pixels``."""
        limit = int(self._param("max_image_pixels"))
        if height * width <= limit:
            return True
        self._drop(stream, "oversize",
                   f"{width}x{height} = {height * width} pixels on {self._topics[stream]} is "
                   f"over max_image_pixels={limit}; raise the parameter if this camera is real")
        return False

    def _pair(self, stream: str, msg: Any, now: int) -> None:
        sync = self._sync
        if sync is None:
            return
        try:
            sync.feed(stream, conversions.stamp_ns(msg.header), msg)
        except InputError as exc:  # e.g. a negative stamp (sec is a signed int32)
            self._drop(stream, "stamp", str(exc))

    def _on_pair(self, rgb_msg: Any, th_msg: Any, skew_ns: int) -> None:
        """Either synchronizer: a pair is complete now (on the later message's arrival)."""
        self._submit(Job(rgb_msg, th_msg, time.monotonic_ns(), skew_ns))

    def _submit(self, job: Job) -> None:
        if job.skew_ns is not None:
            self._skew_ms.add(abs(job.skew_ns) / 1e6)
        if self._slot.put(job):
            self.counters.skipped_stale += 1

    def _thermal_stale(self, now: int) -> bool:
        """True (and mode switched, logged once) when thermal is older than the timeout."""
        # Before the first thermal frame, the clock starts at the first message of either
        # input (not at activation): a camera that starts a little later is not a dropout.
        ref = self._last_thermal_ns
        if not self._thermal_seen:
            ref = max(ref, self._first_msg_ns or now)
        age_s = (now - ref) / 1e9
        if age_s <= float(self._param("thermal_timeout_s")):
            return False
        if not self._thermal_missing:
            self._thermal_missing = True
            if self._param("thermal_dropout_policy") == "rgb_only":
                self._event("warn", "thermal_missing",
                            f"no thermal image on {self._topics['thermal']} for {age_s:.1f} s: "
                            "continuing RGB-only (blank thermal), accuracy is degraded")
            else:
                self._event("error", "thermal_missing",
                            f"no thermal image on {self._topics['thermal']} for {age_s:.1f} s: "
                            "detection paused until it returns "
                            "(thermal_dropout_policy:=rgb_only to continue on RGB)")
        return True

    def _drop(self, stream: str, kind: str, message: str) -> None:
        """Count a dropped input; log the first one of each (stream, kind) as a warning."""
        with self._lock:
            self.counters.drops[(stream, kind)] += 1
            first = (stream, kind) not in self._logged_kinds
            self._logged_kinds.add((stream, kind))
        if first:
            self._event("warn", f"drop_{kind}",
                        f"dropping {stream} frame ({kind}): {message} "
                        "(further drops of this kind are only counted in /diagnostics)")

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        slot = self._slot
        while True:
            job = slot.take(timeout_s=0.5)
            if job is None:
                if not self._active:
                    return
                continue
            try:
                self._process(job)
            except InputError as exc:  # the detector refused the decoded pair
                self._drop("pair", "detector_input", str(exc))
            except Exception as exc:
                self._drop("pair", "inference", f"{type(exc).__name__}: {exc}")

    def _process(self, job: Job) -> None:
        detector = self._detector
        if detector is None:
            return
        t0, c0 = time.monotonic_ns(), time.thread_time_ns()
        try:
            rgb = conversions.decode_image_msg(job.rgb, "rgb", self._topics["rgb"])
        except ImageDataError as exc:
            self._drop("rgb", exc.kind, str(exc))
            return
        if not self._size_ok("rgb", *rgb.shape[:2]):  # compressed: known after decoding
            return
        if job.thermal is not None:
            try:
                thermal = conversions.decode_image_msg(job.thermal, "thermal",
                                                       self._topics["thermal"])
            except ImageDataError as exc:
                self._drop("thermal", exc.kind, str(exc))
                return
            if not self._size_ok("thermal", *thermal.shape[:2]):
                return
            homography = self._homography
        else:
            thermal = np.zeros(rgb.shape[:2], np.uint8)  # RGB-only mode: blank thermal
            homography = None
        mask_pub = self._pubs.get("masks")  # None: a detect model
        # Decode masks (the costly part of a segment model's post-processing) only for a
        # subscriber: like the debug image, nobody listening costs nothing.
        want_masks = bool(mask_pub is not None and self._param("instance_masks")
                          and mask_pub.get_subscription_count() > 0)
        t1, c1 = time.monotonic_ns(), time.thread_time_ns()
        dets = detector.detect(rgb, thermal, homography=homography, masks=want_masks)
        t2, c2 = time.monotonic_ns(), time.thread_time_ns()
        self._pubs["detections"].publish(conversions.detections_to_msg(dets, job.rgb.header))
        t3, c3 = time.monotonic_ns(), time.thread_time_ns()
        self.counters.processed += 1
        self.counters.published += 1
        timing = FrameTiming(
            latency_ms=(t3 - job.ready_ns) / 1e6, detect_ms=(t2 - t1) / 1e6,
            inference_ms=float(getattr(dets, "inference_ms", 0.0)),
            decode_ms=(t1 - t0) / 1e6, publish_ms=(t3 - t2) / 1e6, done_ns=t3,
            stamp_ns=conversions.stamp_ns(job.rgb.header), n_detections=len(dets.scores),
            node_cpu_ms=((c1 - c0) + (c3 - c2)) / 1e6)
        self.timings.append(timing)
        self._latency.add(timing.latency_ms)
        self._detect_ms.add(timing.detect_ms)
        self._inference_ms.add(timing.inference_ms)
        self._overhead.add(timing.latency_ms - timing.detect_ms)
        debug_pub = self._pubs.get("debug")
        if (self._param("debug_image") and debug_pub is not None
                and debug_pub.get_subscription_count() > 0):
            overlay = debug_image.render(rgb, thermal if job.thermal is not None else None, dets)
            self.counters.debug_rendered += 1
            debug_pub.publish(conversions.numpy_to_image_msg(overlay, "rgb8", job.rgb.header))
        if want_masks and mask_pub is not None and dets.masks is not None:
            encoding = conversions.instance_mask_encoding(
                max(int(self._param("max_detections")), len(dets.scores)))
            mask_pub.publish(conversions.instance_masks_msg(dets, job.rgb.header, encoding))
            self.counters.masks_published += 1

    # ------------------------------------------------------------------ QoS check
    def _check_qos(self, only: str | None = None) -> list[Mismatch]:
        """Warn (once per publisher) about publishers whose QoS cannot reach us."""
        found = []
        for stream in ("rgb", "thermal") if only is None else (only,):
            topic = self._topics.get(stream)
            if topic is None:
                continue
            for m in incompatible_publishers(self, topic, self._qos[stream]):
                found.append(m)
                key = (m.topic, m.gid)
                if key in self._warned_qos:
                    continue
                self._warned_qos.add(key)
                self._qos_texts[key] = (f"{m.topic}: publisher {m.node} offers {m.offered}, "
                                        f"this node requests {m.requested}")
                self._event(
                    "warn", "qos_incompatible",
                    f"QoS mismatch on {m.topic}: publisher {m.node} offers {m.offered} but "
                    f"this node requests {m.requested} ({m.reason}); no {stream} images will "
                    f"arrive from it. Set {stream}_qos:=sensor_data (best effort) or make the "
                    "publisher reliable.")
        return found

    # ------------------------------------------------------------------ timer: diag + checks
    def _on_diag_timer(self) -> None:
        """Every diagnostics period, in every lifecycle state: checks, then /diagnostics."""
        now = time.monotonic_ns()
        if self._active:
            counts = {s: self.count_publishers(t) for s, t in self._topics.items()}
            if counts != self._publisher_counts:  # publishers appeared or left: re-check QoS
                self._publisher_counts = counts
                for s, n in counts.items():
                    if n == 0:
                        self._publisher_since.pop(s, None)
                    else:
                        self._publisher_since.setdefault(s, now)
                self._check_qos()
            if self._received["rgb"] or self._received["thermal"]:
                self._thermal_stale(now)
            self._check_delivery()
        self._diag_pub.publish(self.diagnostics(now))

    def _both_stopped_s(self, now: int) -> float | None:
        """Seconds since the last image of either input, when both are older than the
        thermal timeout and both had sent something since activation; else None."""
        if not self._active or len(self._last_msg_ns) < 2:
            return None
        age_s = (now - max(self._last_msg_ns.values())) / 1e9
        return age_s if age_s > float(self._param("thermal_timeout_s")) else None

    def _low_delivery(self) -> dict[str, str]:
        """Streams receiving far fewer frames than the publisher sends (from stamp gaps)."""
        out = {}
        now = time.monotonic_ns()
        for stream, since in self._publisher_since.items():
            silent_s = (now - since) / 1e9
            if (self._received[stream] == 0 and silent_s > SILENT_PUBLISHER_S
                    and not any(k[0] == self._topics.get(stream) for k in self._qos_texts)):
                out[stream] = (
                    f"{self._topics.get(stream, stream)}: a publisher has been matched for "
                    f"{silent_s:.0f} s but no frame arrived. If the camera is publishing, "
                    "large images are being lost in DDS: launch with dds_profile:=fastdds "
                    "and export the same FASTDDS_DEFAULT_PROFILES_FILE for the camera "
                    "(docs/ros.md 'Large images').")
        for stream in ("rgb", "thermal"):
            ratio, evidence = self._delivery_ratio(stream, now)
            if ratio is None or ratio >= LOW_DELIVERY_RATIO or stream in out:
                continue
            out[stream] = (
                f"{self._topics.get(stream, stream)}: {ratio:.0%} of the frames the publisher "
                f"sent arrived ({evidence}). Large images over best-effort DDS are lost in "
                "fragments: launch with dds_profile:=fastdds (shared memory, see docs/ros.md "
                f"'Large images'), or set {stream}_qos:=reliable on both sides.")
        return out

    def _delivery_ratio(self, stream: str, now_ns: int) -> tuple[float | None, str]:
        """Share of the publisher's frames that arrived, and how it was measured: the lower
        of DDS's own lost-message count (where the rmw reports losses) and the header-stamp
        estimate (one publisher only). Both are kept because neither always sees the loss:
        the stamp estimate needs enough frames to arrive, and DDS counts a large sample whose
        fragments never all arrived only in some rmw versions. None while neither can tell."""
        found: list[float] = []
        evidence: list[str] = []
        if self._loss_events.get(stream):
            loss = self._loss[stream]
            got, lost = loss.counts(now_ns)  # one pass over the window for text and ratio
            evidence.append(f"DDS lost {lost} of {got + lost} in the last {loss.window_s:.0f} s")
            ratio = loss.ratio_of(got, lost)
            if ratio is not None:
                found.append(ratio)
        meter = self._delivery[stream]
        if self._publisher_counts.get(stream, 1) > 1:
            evidence.append("stamps of several publishers interleave")
        else:
            ratio = meter.delivered_ratio()
            if ratio is not None:
                found.append(ratio)
                evidence.append(f"stamps every {meter.period_ms():.0f} ms")
        return (min(found) if found else None), "; ".join(evidence)

    def _check_delivery(self) -> None:
        """Refresh the low-delivery findings (kept until the stream delivers well again)."""
        found = self._low_delivery()
        now = time.monotonic_ns()
        for stream in list(self._delivery_texts):
            ratio = self._delivery_ratio(stream, now)[0]
            if stream not in found and ratio is not None and ratio >= LOW_DELIVERY_RATIO:
                del self._delivery_texts[stream]
        self._delivery_texts.update(found)
        for stream, text in found.items():
            if stream not in self._warned_delivery:
                self._warned_delivery.add(stream)
                self._event("warn", "low_delivery", f"low delivery on {text}")

    def diagnostics(self, now_ns: int | None = None) -> DiagnosticArray:
        """The node's current DiagnosticArray (statuses: see dlrmamba_ros.diagnostics)."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        st = self.pairing_stats()
        values: dict[str, Any] = {
            "enabled": self._enabled,
            "sync_backend": self._sync_backend,
            "rgb_rate_hz": round(self._rates["rgb"].rate_hz(now_ns), 2),
            "thermal_rate_hz": round(self._rates["thermal"].rate_hz(now_ns), 2),
            "rgb_received": self._received["rgb"],
            "thermal_received": self._received["thermal"],
            "frames_processed": self.counters.processed,
            "pairs_skipped_stale": self.counters.skipped_stale,
            "instance_masks_published": self.counters.masks_published,
            "rgb_frames_paused": self.counters.paused,
            "rgb_only_frames": self.counters.rgb_only,
            "skew_ms_p95": round(self._skew_ms.percentile(95), 3),
            "detect_ms_mean": round(self._detect_ms.mean(), 2),
            "detect_ms_p95": round(self._detect_ms.percentile(95), 2),
            "inference_ms_mean": round(self._inference_ms.mean(), 2),
            "latency_ms_p95": round(self._latency.percentile(95), 2),
            "node_overhead_ms_p95": round(self._overhead.percentile(95), 3),
        }
        for s in ("rgb", "thermal"):
            values[f"{s}_paired"] = st.stream(s).paired
            values[f"{s}_lost_in_dds"] = self._loss[s].total_lost
            values[f"{s}_sync_dropped"] = st.stream(s).dropped
        values["skew_ms_max"] = round(st.max_abs_skew_ns / 1e6, 3)
        drops = dict(self.counters.drops)
        for (stream, kind), n in sorted(drops.items()):
            values[f"{stream}_dropped_{kind}"] = n
        for s in ("rgb", "thermal"):  # pairing drops are input drops too
            if st.stream(s).dropped:
                drops[(s, "sync_unpaired")] = st.stream(s).dropped
        detector = self._detector
        snap = diag.Snapshot(
            name=self.get_name(), hardware_id=self.get_fully_qualified_name(),
            state=self._state, enabled=self._enabled, thermal_missing=self._thermal_missing,
            dropout_policy=str(self._param("thermal_dropout_policy")),
            received=dict(self._received), values=values, drops=drops,
            qos_mismatches=list(self._qos_texts.values()),
            low_delivery=list(self._delivery_texts.values()) if self._active else [],
            both_stopped_s=self._both_stopped_s(now_ns),
            input_warnings=dict(getattr(detector, "input_warnings", None) or {}))
        arr = DiagnosticArray(status=diag.statuses(snap))
        arr.header.stamp = self.get_clock().now().to_msg()
        return arr

    def run_summary(self) -> str:
        """One line accounting for every input message and pair (logged at each deactivation).

        Node counters run from the node's start, the synchronizer's (``paired``, ``pairs``,
        ``sync_unpaired``) from the last activation. ``received`` counts messages per camera,
        ``paired`` the messages that left the synchronizer in a pair, ``pairs`` the pairs made,
        ``published`` the detection messages, ``skipped_stale`` the pairs replaced by a newer
        one before inference (the latest-pair worker), ``paused`` / ``rgb_only`` the RGB frames
        handled without thermal, and ``dropped`` every dropped input by stream and kind
        (``sync_unpaired``: evicted by the synchronizer without a partner). ``lost in DDS``
        counts the messages the middleware reported lost before they reached the node (since
        the last activation; 0 where the rmw does not report losses).
        """
        st = self.pairing_stats()
        drops = {f"{s}/{k}": n for (s, k), n in sorted(self.counters.drops.items())}
        for s in ("rgb", "thermal"):
            if st.stream(s).dropped:
                drops[f"{s}/sync_unpaired"] = st.stream(s).dropped
        pairs = st.thermal.paired
        c = self.counters
        return (f"received rgb={self._received['rgb']} thermal={self._received['thermal']}; "
                f"paired rgb={st.rgb.paired} thermal={st.thermal.paired}; pairs={pairs}; "
                f"published={c.published} skipped_stale={c.skipped_stale} paused={c.paused} "
                f"rgb_only={c.rgb_only} disabled={c.disabled}; dropped="
                + (",".join(f"{k}:{n}" for k, n in drops.items()) or "none")
                + f"; lost in DDS rgb={self._loss['rgb'].total_lost} "
                f"thermal={self._loss['thermal'].total_lost}")

    def pairing_stats(self) -> PairingStats:
        """Counters of the running synchronizer (either backend), or the last ones."""
        if self._sync is not None:
            self._last_stats = self._sync.stats()
        return self._last_stats

    def pairing_summary(self) -> dict[str, Any]:
        """Pairs made and stamp skew, whichever sync backend runs.

        Returns:
            ``rgb_paired``, ``thermal_paired`` (messages that left the synchronizer in a
            pair), ``rgb_dropped``, ``thermal_dropped`` (evicted unpaired), ``last_skew_ns``
            (RGB minus thermal stamp of the last pair, or None) and ``max_abs_skew_ns``.
        """
        st = self.pairing_stats()
        return {"rgb_paired": st.rgb.paired, "thermal_paired": st.thermal.paired,
                "rgb_dropped": st.rgb.dropped, "thermal_dropped": st.thermal.dropped,
                "last_skew_ns": st.last_skew_ns, "max_abs_skew_ns": st.max_abs_skew_ns}

    # ------------------------------------------------------------------ services / params
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        self._enabled = bool(request.data)
        if not self._enabled:
            self._slot.clear()
            if self._sync is not None:
                self._sync.reset()
        response.success = True
        response.message = "detection enabled" if self._enabled else "detection disabled"
        self.get_logger().info(response.message)
        return response

    @property
    def enabled(self) -> bool:
        """Whether detection is enabled (``~/enable``)."""
        return self._enabled

    @property
    def thermal_missing(self) -> bool:
        """Whether the node is in thermal-dropout mode."""
        return self._thermal_missing

    def _on_set_parameters(self, updates: list[Any]) -> SetParametersResult:
        for p in updates:
            reason = params.validate(p.name, p.value)
            if reason is not None:
                self.get_logger().warning(f"rejected parameter update: {reason}")
                return SetParametersResult(successful=False, reason=reason)
        live = {"conf_threshold": float, "iou_threshold": float, "max_detections": int}
        for p in updates:
            if p.name == "thermal_homography":
                self._homography = self._homography_from(p.value)
            elif p.name in live and self._detector is not None:
                # The Detector reads these attributes on every detect() call.
                setattr(self._detector, p.name, live[p.name](p.value))
        return SetParametersResult(successful=True)

    @staticmethod
    def _homography_from(values: Any) -> np.ndarray | None:
        """9 validated floats -> (3, 3) thermal->RGB homography, or None when unset."""
        if values is None:
            return None
        return np.asarray(values, dtype=np.float64).reshape(3, 3)  # row-major 9 -> (3, 3)


GIL_SWITCH_INTERVAL_S = 0.001
SILENT_PUBLISHER_S = 3.0  # a matched publisher and no frame for this long: WARN
LOW_DELIVERY_RATIO = 0.5  # below this share of the publisher's frames: WARN low delivery


def tune_process() -> None:
    """Process-wide settings of the node's executable (also used by the benchmark).

    Why: a completed pair wakes the worker thread, which then needs the GIL while the
    executor thread keeps running Python; with CPython's default 5 ms switch interval that
    hand-off alone can take up to 5 ms. 1 ms keeps it well below the node's budget.
    """
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def main(args: list[str] | None = None) -> int:
    """Console script ``detector_node``: spin one DetectorNode until shutdown.

    The node starts unconfigured (lifecycle); the launch file configures and activates it.
    Returns 0, or 2 when a parameter given at start is invalid.
    """
    tune_process()
    rclpy.init(args=args)
    node = None
    rc = 0
    try:
        node = DetectorNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.get_logger().info("detector node ready (unconfigured): configure to load the model")
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C / launch shutdown: the normal way out, cleaned up below
    except DlrmambaError as exc:
        print(f"detector_node: error: {exc}", file=sys.stderr)
        rc = 2
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
