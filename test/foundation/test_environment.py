"""The environment works: real rclpy pub/sub over loopback, for the message types we use."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.ros


def _wait_for(cond, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_image_and_detections_roundtrip_over_loopback() -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from vision_msgs.msg import (
        BoundingBox2D,
        Detection2D,
        Detection2DArray,
        ObjectHypothesisWithPose,
    )

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        pub_node = rclpy.create_node("env_pub", context=ctx)
        sub_node = rclpy.create_node("env_sub", context=ctx)
        got: dict[str, object] = {}
        sub_node.create_subscription(
            Image, "env/image", lambda m: got.setdefault("image", m), qos_profile_sensor_data
        )
        sub_node.create_subscription(
            Detection2DArray, "env/detections", lambda m: got.setdefault("det", m), 10
        )
        img_pub = pub_node.create_publisher(Image, "env/image", qos_profile_sensor_data)
        det_pub = pub_node.create_publisher(Detection2DArray, "env/detections", 10)

        img = Image()
        img.header.stamp.sec, img.header.stamp.nanosec = 1_700_000_000, 123_456_789
        img.header.frame_id = "camera_rgb_optical"
        img.height, img.width, img.encoding, img.step = 4, 5, "rgb8", 15
        img.data = bytes(range(60))
        det = Detection2DArray()
        det.header = img.header
        d = Detection2D()
        d.header = img.header
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = "boat", 0.875
        d.results.append(hyp)
        d.bbox = BoundingBox2D()
        d.bbox.center.position.x, d.bbox.center.position.y = 320.5, 200.25
        d.bbox.size_x, d.bbox.size_y = 40.0, 22.0
        det.detections.append(d)

        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()

        def publish_until_received() -> bool:
            img_pub.publish(img)
            det_pub.publish(det)
            return "image" in got and "det" in got

        assert _wait_for(publish_until_received, 20.0), f"received only {sorted(got)}"
        r_img, r_det = got["image"], got["det"]
        assert r_img.header == img.header
        assert (r_img.height, r_img.width, r_img.encoding, r_img.step) == (4, 5, "rgb8", 15)
        assert bytes(r_img.data) == bytes(range(60))
        assert r_det.header == img.header
        assert len(r_det.detections) == 1
        rd = r_det.detections[0]
        assert rd.results[0].hypothesis.class_id == "boat"
        assert rd.results[0].hypothesis.score == pytest.approx(0.875)
        assert (rd.bbox.center.position.x, rd.bbox.center.position.y) == (320.5, 200.25)
        assert (rd.bbox.size_x, rd.bbox.size_y) == (40.0, 22.0)
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)


def test_vision_msgs_type_hashes_match_rosbags() -> None:
    """Live topics and bags agree: the built vision_msgs has the hashes rosbags computes."""
    import json
    from pathlib import Path

    from ament_index_python.packages import get_package_share_directory
    from rosbags.typesys import Stores, get_typestore
    from rosbags.typesys.msg import get_types_from_msg

    msg_dir = Path(__file__).resolve().parents[2] / "tools" / "vision_msgs" / "msg"
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for f in sorted(msg_dir.glob("*.msg")):
        types.update(get_types_from_msg(f.read_text(), f"vision_msgs/msg/{f.stem}"))
    store.register(types)
    share = Path(get_package_share_directory("vision_msgs")) / "msg"
    for name in ("Detection2DArray", "LabelInfo", "BoundingBox2D"):
        desc = json.loads((share / f"{name}.json").read_text())
        built = {h["type_name"]: h["hash_string"] for h in desc["type_hashes"]}
        full = f"vision_msgs/msg/{name}"
        assert built[full] == store.hash_rihs01(full), name
