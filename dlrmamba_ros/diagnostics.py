"""The detector node's /diagnostics: a snapshot of the node in, DiagnosticStatus list out.

No rclpy state is read here: the node fills a :class:`Snapshot`, :func:`statuses` turns it
into statuses, so every rule (what is OK, WARN, ERROR) is in one place and testable.

Statuses (names prefixed with the node name):
    ``detector``  state, rates, pairing and timing values (always first);
    ``inputs``    WARN per kind of dropped input (with counts), WARN per QoS mismatch,
                  WARN when far fewer frames arrive than the publisher sends (large images
                  over DDS), ERROR when both cameras stopped;
    ``runtime``   WARN per input warning the runtime Detector raised (code -> count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclass
class Snapshot:
    """What the node knows at one instant (filled by the node)."""

    name: str
    hardware_id: str
    state: str = "active"  # lifecycle state label
    enabled: bool = True
    thermal_missing: bool = False
    dropout_policy: str = "pause"
    received: dict[str, int] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)  # the detector status' key/values
    drops: dict[tuple[str, str], int] = field(default_factory=dict)
    qos_mismatches: list[str] = field(default_factory=list)  # one text per publisher
    low_delivery: list[str] = field(default_factory=list)  # one text per stream
    both_stopped_s: float | None = None  # seconds since the last image of either input
    input_warnings: dict[str, int] = field(default_factory=dict)  # Detector.input_warnings


def _status(level: int, snap: Snapshot, part: str, message: str,
            values: dict[str, Any]) -> DiagnosticStatus:
    st = DiagnosticStatus(level=level, name=f"{snap.name}: {part}", message=message,
                          hardware_id=snap.hardware_id)
    st.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    return st


def statuses(snap: Snapshot) -> list[DiagnosticStatus]:
    """The node's statuses for ``snap`` (see the module docstring)."""
    level, message = OK, "running"
    if snap.state != "active":
        level, message = WARN, f"{snap.state}: not detecting (configure and activate the node)"
    elif not snap.enabled:
        message = "disabled (~/enable)"
    elif snap.both_stopped_s is not None:
        level, message = ERROR, f"both cameras stopped: no image for {snap.both_stopped_s:.1f} s"
    elif snap.thermal_missing:
        if snap.dropout_policy == "rgb_only":
            level, message = WARN, "thermal missing: RGB-only (degraded)"
        else:
            level, message = ERROR, "thermal missing: detection paused"
    elif snap.received.get("rgb", 0) == 0:
        level, message = WARN, "no RGB images received yet"
    out = [_status(level, snap, "detector", message, {"state": snap.state, **snap.values})]
    if snap.state != "active":
        return out

    in_level, problems = OK, []
    in_values: dict[str, Any] = {}
    if snap.both_stopped_s is not None:
        in_level = ERROR
        problems.append(f"both cameras stopped ({snap.both_stopped_s:.1f} s)")
    for (stream, kind), n in sorted(snap.drops.items()):
        in_values[f"{stream}_dropped_{kind}"] = n
        problems.append(f"{n} {stream} dropped ({kind})")
        in_level = max(in_level, WARN)
    for i, text in enumerate(snap.qos_mismatches):
        in_values[f"qos_mismatch_{i}"] = text
        problems.append("QoS mismatch")
        in_level = max(in_level, WARN)
    for i, text in enumerate(snap.low_delivery):
        in_values[f"low_delivery_{i}"] = text
        problems.append("low delivery")
        in_level = max(in_level, WARN)
    out.append(_status(in_level, snap, "inputs", "; ".join(problems) or "ok", in_values))

    rt_level = WARN if snap.input_warnings else OK
    rt_msg = ", ".join(f"{code} x{n}" for code, n in sorted(snap.input_warnings.items()))
    out.append(_status(rt_level, snap, "runtime", rt_msg or "no input warnings",
                       dict(sorted(snap.input_warnings.items()))))
    return out
