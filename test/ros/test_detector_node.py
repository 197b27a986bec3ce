"""The detector node over real rclpy (loopback): outputs, lifecycle, services, faults."""

from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import (
    CLASS_NAMES,
    CONF,
    compressed_msg,
    image_msg,
    synthetic_pair,
    wait_for,
)
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from dlrmamba_core.runtime import Detector

pytestmark = pytest.mark.ros
MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000  # a realistic epoch stamp (ns)


def _xyxy(msg: Detection2DArray) -> np.ndarray:
    out = []
    for d in msg.detections:
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        w2, h2 = d.bbox.size_x / 2, d.bbox.size_y / 2
        out.append([cx - w2, cy - h2, cx + w2, cy + h2])
    return np.asarray(out, np.float64).reshape(-1, 4)


def _send_pair(h, pubs, k: int, rgb_enc: str = "rgb8", compressed: bool = False,
               skew_ns: int = 4 * MS) -> tuple[np.ndarray, np.ndarray, int]:
    """Publish synthetic pair k; return (rgb as RGB array, thermal, rgb stamp)."""
    rgb, thermal = synthetic_pair(k)
    stamp = T0 + k * 100 * MS
    if compressed:
        rgb_msg = compressed_msg(rgb, "rgb8", "jpeg", stamp, "cam_rgb")
        th_msg = compressed_msg(thermal, "mono16", "png", stamp - skew_ns, "cam_thermal")
    else:
        layout = {"rgb8": rgb, "bgr8": rgb[..., ::-1].copy()}[rgb_enc]
        rgb_msg = image_msg(layout, rgb_enc, stamp, "cam_rgb")
        th_msg = image_msg(thermal, "mono16", stamp - skew_ns, "cam_thermal")
    # Thermal first, and received before the RGB: after a silence longer than
    # thermal_timeout_s an RGB frame that overtook its thermal partner would be (correctly)
    # dropped as "thermal missing", which is not what these tests are about.
    n_thermal = h.node._received["thermal"]
    pubs[1].publish(th_msg)
    assert wait_for(lambda: h.node._received["thermal"] > n_thermal), "thermal not received"
    pubs[0].publish(rgb_msg)
    return rgb, thermal, stamp


def _decoded_rgb(rgb: np.ndarray, compressed: bool) -> np.ndarray:
    """What the node sees: the JPEG round trip is lossy, so the reference gets it too."""
    if not compressed:
        return rgb
    import cv2

    from dlrmamba_core.runtime import image_codec as ic

    _fmt, data = ic.numpy_to_compressed(rgb, "rgb8", "jpeg")
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize(("rgb_enc", "compressed"),
                         [("rgb8", False), ("bgr8", False), ("rgb8", True)])
def test_detections_have_rgb_header_and_match_runtime_detector(
    harness_factory, nano_model, rgb_enc: str, compressed: bool
) -> None:
    h = harness_factory(rgb_compressed=compressed, thermal_compressed=compressed)
    h.configure_activate()
    msg_type = CompressedImage if compressed else Image
    pubs = (h.publisher(msg_type, "rgb/image"), h.publisher(msg_type, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    reference = Detector(nano_model, threads=1, conf_threshold=CONF)
    for k in range(3):
        rgb, thermal, stamp = _send_pair(h, pubs, k, rgb_enc, compressed)
        assert wait_for(lambda k=k: len(dets) == k + 1), f"no detections for pair {k}"
        out = dets[k]
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == divmod(stamp, 10**9)
        assert out.header.frame_id == "cam_rgb"
        expected = reference.detect(_decoded_rgb(rgb, compressed), thermal)
        assert len(out.detections) == len(expected) > 0
        np.testing.assert_allclose(_xyxy(out), expected.boxes, atol=1e-3)
        for d, score, cls in zip(out.detections, expected.scores, expected.class_ids,
                                 strict=True):
            assert d.header == out.header
            assert d.results[0].hypothesis.class_id == str(int(cls))
            assert d.results[0].hypothesis.score == pytest.approx(float(score), abs=1e-6)
    summary = h.node.pairing_summary()
    assert summary["rgb_paired"] == summary["thermal_paired"] == 3
    assert summary["last_skew_ns"] == 4 * MS


def test_worker_takes_latest_pair_under_burst(harness_factory) -> None:
    h = harness_factory()
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    n = 12
    stamps = [_send_pair(h, pubs, k)[2] for k in range(n)]  # as fast as we can publish
    assert wait_for(lambda: bool(dets) and dets[-1].header.stamp.nanosec
                    == divmod(stamps[-1], 10**9)[1], 15.0), "last pair never detected"
    got = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in dets]
    assert got == sorted(got)  # never an older frame after a newer one
    assert len(got) + h.node.counters.skipped_stale + _unpaired(h) >= n
    assert h.node.counters.processed == len(got)


def _unpaired(h) -> int:
    """RGB frames that did not leave the synchronizer in a pair (dropped or still queued)."""
    return h.node._received["rgb"] - h.node.pairing_summary()["rgb_paired"]


def test_lifecycle_over_services(harness_factory) -> None:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    h = harness_factory()
    change = h.peer.create_client(ChangeState, f"{h.ns}/dlrmamba_detector/change_state")
    get = h.peer.create_client(GetState, f"{h.ns}/dlrmamba_detector/get_state")
    assert change.wait_for_service(timeout_sec=10) and get.wait_for_service(timeout_sec=10)

    def transition(tid: int) -> bool:
        return change.call(ChangeState.Request(transition=Transition(id=tid)),
                           timeout_sec=30).success

    def state() -> str:
        return get.call(GetState.Request(), timeout_sec=10).current_state.label

    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    assert state() == "unconfigured"
    assert pubs[0].get_subscription_count() == 0
    assert transition(Transition.TRANSITION_CONFIGURE) and state() == "inactive"
    assert transition(Transition.TRANSITION_ACTIVATE) and state() == "active"
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    labels = h.collect(LabelInfo, "labels", latched)  # a late joiner still gets the map
    assert wait_for(lambda: len(labels) == 1)
    assert [(c.class_id, c.class_name) for c in labels[0].class_map] == list(
        enumerate(CLASS_NAMES))
    for p in pubs:
        h.wait_for_subscribers(p)
    _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    assert transition(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
    assert wait_for(lambda: pubs[0].get_subscription_count() == 0)
    assert transition(Transition.TRANSITION_CLEANUP) and state() == "unconfigured"
    assert h.node._detector is None
    # A bad model path: configure fails with a reason and the node stays unconfigured.
    h.node.set_parameters([__import__("rclpy").parameter.Parameter("model",
                                                                   value="/nope/m.onnx")])
    assert not transition(Transition.TRANSITION_CONFIGURE)
    assert state() == "unconfigured"
    assert any(kind == "configure" and "/nope/m.onnx" in text
               for level, kind, text in h.node.events if level == "error")


def test_enable_service_stops_and_resumes(harness_factory) -> None:
    from std_srvs.srv import SetBool

    h = harness_factory()
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    client = h.peer.create_client(SetBool, f"{h.ns}/dlrmamba_detector/enable")
    assert client.wait_for_service(timeout_sec=10)
    resp = client.call(SetBool.Request(data=False), timeout_sec=10)
    assert resp.success and not h.node.enabled
    for k in range(3):
        _send_pair(h, pubs, k)
    assert wait_for(lambda: h.node.counters.disabled >= 6)
    assert dets == []
    assert client.call(SetBool.Request(data=True), timeout_sec=10).success
    _send_pair(h, pubs, 5)
    assert wait_for(lambda: len(dets) == 1)


def test_parameter_validation(harness_factory) -> None:
    from rclpy.parameter import Parameter

    h = harness_factory()
    bad = {
        "sync": "fuzzy",
        "conf_threshold": 1.5,
        "thermal_dropout_policy": "ignore",
        "rgb_qos": "system_default",
        "sync_queue_size": 0,
        "thermal_homography": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    }
    for name, value in bad.items():
        (res,) = h.node.set_parameters([Parameter(name, value=value)])
        assert not res.successful, name
        assert res.reason, name
    singular = [1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0]
    (res,) = h.node.set_parameters([Parameter("thermal_homography", value=singular)])
    assert not res.successful and "singular" in res.reason
    good = [2.0, 0.0, 5.0, 0.0, 2.0, -3.0, 0.0, 0.0, 1.0]
    (res,) = h.node.set_parameters([Parameter("thermal_homography", value=good)])
    assert res.successful
    np.testing.assert_array_equal(h.node._homography, np.reshape(good, (3, 3)))
    (res,) = h.node.set_parameters([Parameter("sync", value="exact")])
    assert res.successful


def test_reliable_subscription_warns_about_best_effort_publisher(harness_factory) -> None:
    from rcl_interfaces.msg import Log

    h = harness_factory(rgb_qos="reliable")
    rosout = h.collect(Log, "/rosout", QoSProfile(depth=100,
                                                  reliability=ReliabilityPolicy.RELIABLE))
    h.configure_activate()
    h.publisher(Image, "rgb/image", QoSProfile(depth=5,
                                               reliability=ReliabilityPolicy.BEST_EFFORT))
    topic = f"{h.ns}/rgb/image"

    def warned() -> list[str]:
        return [t for lvl, kind, t in list(h.node.events) if kind == "qos_incompatible"]

    assert wait_for(lambda: bool(warned()), 10.0), "no QoS warning"
    text = warned()[0]
    assert f"{h.ns}/fake_camera" in text and topic in text and "rgb_qos:=sensor_data" in text
    # The same warning reached the ROS log (/rosout) at WARN level.
    assert wait_for(lambda: any(m.level == Log.WARN and "QoS mismatch" in m.msg
                                and f"{h.ns}/fake_camera" in m.msg for m in list(rosout)))
    assert len(warned()) == 1  # once per publisher, not on every check


def test_no_warning_for_compatible_publishers(harness_factory) -> None:
    h = harness_factory()  # sensor_data (best effort) accepts any publisher
    h.configure_activate()
    h.publisher(Image, "rgb/image", 10)  # reliable
    pub = h.publisher(Image, "thermal/image")
    h.wait_for_subscribers(pub)
    assert wait_for(lambda: h.node._publisher_counts.get("rgb") == 1, 5.0)
    assert not [e for e in h.node.events if e[1] == "qos_incompatible"]


@pytest.mark.parametrize("policy", ["pause", "rgb_only"])
def test_thermal_dropout_and_recovery(harness_factory, policy: str) -> None:
    h = harness_factory(thermal_timeout_s=1.0, thermal_dropout_policy=policy,
                        diagnostics_period_s=0.1)
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    diags = h.collect(DiagnosticArray, "/diagnostics")
    for p in pubs:
        h.wait_for_subscribers(p)
    _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    # Thermal camera goes silent; RGB keeps coming.
    k = 1
    while not h.node.thermal_missing and k < 200:
        rgb, _ = synthetic_pair(k)
        pubs[0].publish(image_msg(rgb, "rgb8", T0 + k * 100 * 10**6, "cam_rgb"))
        wait_for(lambda: False, 0.05)
        k += 1
    assert h.node.thermal_missing
    # A malformed thermal frame does not count as the camera being back.
    _, thermal = synthetic_pair(0)
    pubs[1].publish(image_msg(thermal, "mono16", T0, "cam_t", encoding="rgb8"))
    assert wait_for(lambda: h.node.counters.drops[("thermal", "encoding")] == 1)
    assert h.node.thermal_missing
    expected_level = DiagnosticStatus.ERROR if policy == "pause" else DiagnosticStatus.WARN
    assert wait_for(lambda: any(a.status[0].level == expected_level for a in list(diags)))
    n_before = len(dets)
    for j in range(3):
        rgb, _ = synthetic_pair(k + j)
        pubs[0].publish(image_msg(rgb, "rgb8", T0 + (k + j) * 100 * 10**6, "cam_rgb"))
    if policy == "pause":
        assert wait_for(lambda: h.node.counters.paused >= 3)
        assert len(dets) == n_before
    else:
        assert wait_for(lambda: len(dets) > n_before)
        assert h.node.counters.rgb_only >= 1
    level = "error" if policy == "pause" else "warn"
    assert next(e for e in h.node.events if e[1] == "thermal_missing")[0] == level
    # Thermal returns: fused detection resumes.
    n_before, d_before = len(dets), len(diags)
    _send_pair(h, pubs, 50)
    # Wait on the event itself: in rgb_only mode a late RGB-only detection can arrive first.
    assert wait_for(lambda: any(e[1] == "thermal_recovered" for e in h.node.events))
    assert wait_for(lambda: len(dets) > n_before)
    assert wait_for(lambda: any(a.status[0].level == DiagnosticStatus.OK
                                for a in list(diags)[d_before:]))


def test_bad_inputs_are_counted_logged_once_and_survived(harness_factory) -> None:
    h = harness_factory()
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    rgb, thermal = synthetic_pair(0)
    good_rgb = image_msg(rgb, "rgb8", T0, "cam_rgb")
    broken = [
        (pubs[0], image_msg(rgb, "rgb8", T0, "cam_rgb", encoding="yuv422")),
        (pubs[0], image_msg(rgb, "rgb8", T0, "cam_rgb", encoding="yuv422")),
        (pubs[0], image_msg(rgb, "rgb8", T0, "cam_rgb", data=bytes(good_rgb.data)[:-7])),
        (pubs[1], image_msg(thermal, "mono16", T0, "cam_t", step=thermal.shape[1])),
        (pubs[1], image_msg(thermal, "mono16", T0, "cam_t", encoding="rgb8")),
        (pubs[1], image_msg(thermal, "mono16", T0, "cam_t", height=0, data=b"")),
    ]
    for pub, msg in broken:
        pub.publish(msg)
    drops = h.node.counters.drops
    expected = {("rgb", "encoding"): 2, ("rgb", "size"): 1, ("thermal", "size"): 2,
                ("thermal", "encoding"): 1}
    assert wait_for(lambda: dict(drops) == expected), dict(drops)
    logged = [e for e in h.node.events if e[1].startswith("drop_")]
    assert len(logged) == len(expected)  # one log line per (stream, kind)
    assert any("yuv422" in text and f"{h.ns}/rgb/image" in text for _, _, text in logged)
    # The node still works.
    _send_pair(h, pubs, 1)
    assert wait_for(lambda: len(dets) == 1)
    diag = h.node.diagnostics()
    values = {kv.key: kv.value for kv in diag.status[0].values}
    assert values["rgb_dropped_encoding"] == "2" and values["thermal_dropped_size"] == "2"


def test_corrupt_compressed_frame_dropped_in_worker(harness_factory) -> None:
    h = harness_factory(rgb_compressed=True)
    h.configure_activate()
    pubs = (h.publisher(CompressedImage, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    rgb, thermal = synthetic_pair(0)
    bad = compressed_msg(rgb, "rgb8", "jpeg", T0, "cam_rgb")
    bad.data = bytes(bad.data)[: len(bad.data) // 2]
    pubs[1].publish(image_msg(thermal, "mono16", T0, "cam_t"))
    pubs[0].publish(bad)
    assert wait_for(lambda: h.node.counters.drops[("rgb", "decode")] == 1)
    rgb_ok = compressed_msg(rgb, "rgb8", "jpeg", T0 + 10**8, "cam_rgb")
    pubs[1].publish(image_msg(thermal, "mono16", T0 + 10**8, "cam_t"))
    pubs[0].publish(rgb_ok)
    assert wait_for(lambda: len(dets) == 1)


def test_debug_image_only_when_subscribed(harness_factory) -> None:
    h = harness_factory()
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    assert h.node.counters.debug_rendered == 0
    debug = h.collect(Image, f"{h.ns}/dlrmamba_detector/debug_image")
    assert wait_for(lambda: h.node._pubs["debug"].get_subscription_count() == 1)
    rgb, _, _stamp = _send_pair(h, pubs, 1)
    assert wait_for(lambda: len(debug) == 1)
    img = debug[0]
    assert (img.height, img.width, img.encoding) == (*rgb.shape[:2], "rgb8")
    assert img.header == dets[-1].header
    assert h.node.counters.debug_rendered == 1


def test_diagnostics_report_rates_and_counters(harness_factory) -> None:
    h = harness_factory(diagnostics_period_s=0.2)
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    diags = h.collect(DiagnosticArray, "/diagnostics")
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    for k in range(4):
        _send_pair(h, pubs, k)
        assert wait_for(lambda k=k: len(dets) == k + 1)
    ours = f"{h.node.get_name()}: detector"

    def latest() -> dict[str, str]:
        for arr in reversed(list(diags)):
            st = arr.status[0]
            if st.name == ours and st.hardware_id == h.node.get_fully_qualified_name():
                return {kv.key: kv.value for kv in st.values}
        return {}

    assert wait_for(lambda: latest().get("frames_processed") == "4")
    v = latest()
    assert float(v["rgb_rate_hz"]) > 0 and float(v["thermal_rate_hz"]) > 0
    assert v["rgb_paired"] == "4" and v["thermal_paired"] == "4"
    assert float(v["skew_ms_max"]) == pytest.approx(4.0)
    import importlib.util

    has_mf = importlib.util.find_spec("message_filters") is not None
    assert v["sync_backend"] == ("message_filters" if has_mf else "internal")
    assert float(v["detect_ms_mean"]) > 0 and float(v["latency_ms_p95"]) > 0


def test_negative_stamp_is_dropped_not_fatal(harness_factory) -> None:
    h = harness_factory()
    h.configure_activate()
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    _rgb, thermal = synthetic_pair(0)
    msg = image_msg(thermal, "mono16", 0, "cam_t")
    msg.header.stamp.sec = -5  # builtin_interfaces/Time.sec is a signed int32
    pubs[1].publish(msg)
    assert wait_for(lambda: h.node.counters.drops[("thermal", "stamp")] == 1)
    _send_pair(h, pubs, 1)
    assert wait_for(lambda: len(dets) == 1)


def test_homography_and_live_thresholds_reach_the_detector(harness_factory, nano_model) -> None:
    from rclpy.parameter import Parameter

    # Thermal 120x160 covering the middle of the 240x320 RGB view: scale 1, offset (80, 60).
    H = [1.0, 0.0, 80.0, 0.0, 1.0, 60.0, 0.0, 0.0, 1.0]
    h = harness_factory(thermal_homography=H, ort_spin=True)
    h.configure_activate()
    session = h.node._detector.backend.session  # ort_spin reaches onnxruntime at configure
    assert session.get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "1"
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    reference = Detector(nano_model, threads=1, conf_threshold=CONF)
    rgb, thermal, _ = _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    with_h = reference.detect(rgb, thermal, homography=np.reshape(H, (3, 3)))
    without = reference.detect(rgb, thermal)
    np.testing.assert_allclose(_xyxy(dets[0]), with_h.boxes, atol=1e-3)
    assert len(with_h) != len(without) or not np.allclose(with_h.boxes, without.boxes)
    # Thresholds apply to the next frame without reconfiguring.
    (res,) = h.node.set_parameters([Parameter("max_detections", value=3)])
    assert res.successful
    rgb, thermal, _ = _send_pair(h, pubs, 1)
    assert wait_for(lambda: len(dets) == 2)
    assert len(dets[1].detections) == 3
    assert len(reference.detect(rgb, thermal, homography=np.reshape(H, (3, 3)))) > 3


SHIPPED = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "models").glob("*.onnx"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_runs_in_the_node(ros_context, name: str) -> None:
    """Each shipped model (the default, the previous student, the teacher, the Fusion-Mamba and
    MobileMamba variants) loads with its card and gives the runtime Detector's boxes: a
    variant is chosen with ``model:=`` and nothing else changes."""
    from ros_helpers import Harness

    from dlrmamba_core.data.synthetic import SYNTH_CLASSES, SynthConfig, generate_frame

    path = str(Path(__file__).resolve().parents[2] / "models" / name)
    h = Harness(path, conf_threshold=0.25)
    try:
        h.configure_activate()
        assert h.node._detector.card is not None  # shipped models carry a verified card
        assert h.node._detector.class_names == list(SYNTH_CLASSES)
        pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
        dets = h.collect(Detection2DArray, "detections")
        for p in pubs:
            h.wait_for_subscribers(p)
        frame = generate_frame(SynthConfig(), 3)  # SYNTHETIC, RGB 640x480, thermal 320x256
        n_thermal = h.node._received["thermal"]
        pubs[1].publish(image_msg(frame.thermal, "mono16", T0, "cam_thermal"))
        assert wait_for(lambda: h.node._received["thermal"] > n_thermal)
        pubs[0].publish(image_msg(frame.rgb, "rgb8", T0, "cam_rgb"))
        assert wait_for(lambda: len(dets) == 1, 30.0), f"{name}: no detections message"
        expected = Detector(path, threads=1, conf_threshold=0.25).detect(frame.rgb,
                                                                         frame.thermal)
        assert len(dets[0].detections) == len(expected) > 0  # a night frame, 9 objects
        np.testing.assert_allclose(_xyxy(dets[0]), expected.boxes, atol=1e-3)
        assert [d.results[0].hypothesis.class_id for d in dets[0].detections] == [
            str(int(c)) for c in expected.class_ids]
    finally:
        h.close()


# ------------------------------------------------------------------ instance masks (segment)
def _index_image_reference(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The ~/instance_masks rule written the plain way, over whole frames: 1 + index of the
    highest-scoring detection whose mask covers the pixel (equal scores: lower index)."""
    out = np.zeros(masks.shape[1:], np.int64)
    best = np.full(masks.shape[1:], -np.inf)
    for i, (m, s) in enumerate(zip(masks, scores.tolist(), strict=True)):
        win = (m != 0) & (s > best)
        out[win], best[win] = i + 1, s
    return out


def _watch_detect(h) -> list[bool]:
    """Record the ``masks`` argument of every Detector.detect call the node makes."""
    detector = h.node._detector
    real = detector.detect
    calls: list[bool] = []

    def detect(*args, **kwargs):
        calls.append(bool(kwargs.get("masks", True)))
        return real(*args, **kwargs)

    detector.detect = detect
    return calls


def test_segment_model_publishes_instance_masks_only_when_subscribed(
        harness_factory, segment_model) -> None:
    h = harness_factory(model=segment_model)
    h.configure_activate()
    calls = _watch_detect(h)
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    # Nobody subscribed: detect runs without the mask decode and nothing is published.
    _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    assert calls == [False] and h.node.counters.masks_published == 0
    masks = h.collect(Image, f"{h.ns}/dlrmamba_detector/instance_masks")
    assert wait_for(lambda: h.node._pubs["masks"].get_subscription_count() == 1)
    reference = Detector(segment_model, threads=1, conf_threshold=CONF)
    for k in (1, 2):
        rgb, thermal, _stamp = _send_pair(h, pubs, k)
        assert wait_for(lambda k=k: len(masks) == k and len(dets) == k + 1), f"pair {k}"
        img, det_msg = masks[-1], dets[-1]
        assert img.header == det_msg.header  # the RGB header: the consumer's join key
        assert (img.height, img.width, img.encoding) == (*rgb.shape[:2], "mono8")
        index = np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.step)
        expected = reference.detect(rgb, thermal)
        assert expected.masks is not None and len(det_msg.detections) == len(expected) > 1
        assert [d.id for d in det_msg.detections] == [str(i) for i in range(len(expected))]
        np.testing.assert_allclose(_xyxy(det_msg), expected.boxes, atol=1e-3)
        want = _index_image_reference(expected.masks, expected.scores)
        np.testing.assert_array_equal(index[:, :img.width], want)
        # Not vacuous: several instances are visible and some masks overlap.
        assert len(np.unique(want)) > 2 and (expected.masks.sum(0) > 1).any()
    assert calls == [False, True, True] and h.node.counters.masks_published == 2


def test_instance_masks_parameter_off_means_no_decode(harness_factory, segment_model) -> None:
    h = harness_factory(model=segment_model, instance_masks=False)
    h.configure_activate()
    calls = _watch_detect(h)
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    masks = h.collect(Image, f"{h.ns}/dlrmamba_detector/instance_masks")
    for p in pubs:
        h.wait_for_subscribers(p)
    assert wait_for(lambda: h.node._pubs["masks"].get_subscription_count() == 1)
    _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    assert calls == [False] and not masks and h.node.counters.masks_published == 0


def test_detect_model_has_no_instance_masks_topic(harness_factory) -> None:
    h = harness_factory()
    h.configure_activate()
    calls = _watch_detect(h)
    assert "masks" not in h.node._pubs
    topic = f"{h.ns}/dlrmamba_detector/instance_masks"
    masks = h.collect(Image, topic)
    pubs = (h.publisher(Image, "rgb/image"), h.publisher(Image, "thermal/image"))
    dets = h.collect(Detection2DArray, "detections")
    for p in pubs:
        h.wait_for_subscribers(p)
    _send_pair(h, pubs, 0)
    assert wait_for(lambda: len(dets) == 1)
    assert [d.id for d in dets[0].detections] == [str(i) for i in range(len(dets[0].detections))]
    assert calls == [False] and h.peer.count_publishers(topic) == 0 and not masks
