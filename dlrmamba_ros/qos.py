"""Subscription QoS from parameters, and a check of publishers' QoS against ours.

A reliable subscription never receives anything from a best-effort camera driver and ROS says
nothing by default: the most reported failure of detection nodes. :func:`incompatible_publishers`
lists, by node name, the publishers of a topic whose offered QoS cannot match ours.
"""

from __future__ import annotations

from dataclasses import dataclass

from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSCompatibility,
    QoSProfile,
    ReliabilityPolicy,
    qos_check_compatible,
    qos_profile_sensor_data,
)


def make_qos(kind: str, depth: int) -> QoSProfile:
    """QoS of an image subscription.

    Args:
        kind: "sensor_data" (rclpy's sensor-data profile: best effort, volatile),
            "best_effort" or "reliable".
        depth: keep-last depth (messages).
    """
    if kind == "sensor_data":
        return QoSProfile(
            history=qos_profile_sensor_data.history, depth=depth,
            reliability=qos_profile_sensor_data.reliability,
            durability=qos_profile_sensor_data.durability,
        )
    reliability = (ReliabilityPolicy.RELIABLE if kind == "reliable"
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def describe(qos: QoSProfile) -> str:
    """Short text of the policies that decide compatibility."""
    return f"{qos.reliability.name.lower()}/{qos.durability.name.lower()}"


@dataclass(frozen=True)
class Mismatch:
    """One publisher whose QoS cannot match our subscription."""

    topic: str
    node: str
    gid: tuple[int, ...]
    offered: str
    requested: str
    reason: str


def incompatible_publishers(node: Node, topic: str, requested: QoSProfile) -> list[Mismatch]:
    """Publishers of ``topic`` (fully qualified) whose QoS is incompatible with ``requested``."""
    out = []
    for info in node.get_publishers_info_by_topic(topic):
        compat, reason = qos_check_compatible(info.qos_profile, requested)
        if compat == QoSCompatibility.ERROR:
            ns = info.node_namespace.rstrip("/")
            out.append(Mismatch(topic, f"{ns}/{info.node_name}", tuple(info.endpoint_gid),
                                describe(info.qos_profile), describe(requested),
                                reason.strip()))
    return out
