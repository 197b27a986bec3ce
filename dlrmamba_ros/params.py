"""The detector node's parameters: one table (name, default, range, description) + validation.

The table is the single source of truth: the node declares every parameter from it (with a
``ParameterDescriptor`` carrying the description and range), the on-set-parameters callback
validates against it, and ``config/detector.yaml`` documents the same names (a test checks
that the YAML and the table agree).
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.parameter import Parameter

QOS_CHOICES = ("sensor_data", "best_effort", "reliable")
SYNC_CHOICES = ("approximate", "exact")
DROPOUT_CHOICES = ("pause", "rgb_only")
BACKEND_CHOICES = ("onnxruntime", "torch")
SYNC_BACKEND_CHOICES = ("auto", "internal")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of the node.

    Attributes:
        name: parameter name.
        default: default value (its Python type fixes the ROS type); ``None`` for an optional
            double array that starts unset.
        description: what it does, with units.
        lo, hi: inclusive numeric range (None: unbounded).
        choices: allowed strings (None: any).
        applies: when a change takes effect: "live", "activate" (next activate) or
            "configure" (next configure).
    """

    name: str
    default: Any
    description: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    applies: str = "live"


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "ONNX model file; empty = the package default named by "
              "share/dlrmamba_ros/models/default.json", applies="configure"),
    ParamSpec("backend", "onnxruntime", "inference backend", choices=BACKEND_CHOICES,
              applies="configure"),
    ParamSpec("threads", 2, "inference threads (intra-op)", lo=1, hi=64, applies="configure"),
    ParamSpec("ort_spin", False, "let onnxruntime's idle inference threads busy-wait between "
              "frames (faster only on a CPU that runs nothing else; they slow the camera "
              "drivers, the executor and pre-processing)", applies="configure"),
    ParamSpec("conf_threshold", 0.25, "minimum detection score [0..1]", lo=0.0, hi=1.0),
    ParamSpec("iou_threshold", 0.5, "NMS IoU threshold (0..1]", lo=0.01, hi=1.0),
    ParamSpec("max_detections", 100, "maximum detections per frame", lo=1, hi=1000),
    ParamSpec("rgb_compressed", False, "subscribe rgb/image as sensor_msgs/CompressedImage "
              "(jpeg/png) instead of Image", applies="activate"),
    ParamSpec("thermal_compressed", False, "subscribe thermal/image as CompressedImage "
              "(png, 16-bit kept)", applies="activate"),
    ParamSpec("rgb_qos", "sensor_data", "RGB subscription QoS: sensor_data (best effort, "
              "keep last), best_effort, or reliable", choices=QOS_CHOICES, applies="activate"),
    ParamSpec("thermal_qos", "sensor_data", "thermal subscription QoS (as rgb_qos)",
              choices=QOS_CHOICES, applies="activate"),
    ParamSpec("qos_depth", 5, "history depth of both image subscriptions (messages)",
              lo=1, hi=100, applies="activate"),
    ParamSpec("max_image_pixels", 5_242_880, "largest accepted input image, width x height "
              "pixels (4x a 1280x1024 camera); larger frames are dropped, counted, logged once",
              lo=1, hi=400_000_000),
    ParamSpec("sync", "approximate", "pairing policy: approximate (nearest stamp within "
              "sync_slop_s) or exact (equal stamps)", choices=SYNC_CHOICES, applies="activate"),
    ParamSpec("sync_backend", "auto", "auto = message_filters when importable, else the "
              "built-in pairer; internal = always the built-in pairer (has drop counters)",
              choices=SYNC_BACKEND_CHOICES, applies="activate"),
    ParamSpec("sync_queue_size", 10, "messages kept per input while waiting for a partner",
              lo=1, hi=100, applies="activate"),
    ParamSpec("sync_slop_s", 0.05, "largest RGB/thermal stamp difference of a pair (s)",
              lo=0.001, hi=1.0, applies="activate"),
    ParamSpec("thermal_homography", None, "row-major 3x3 homography (9 floats) mapping "
              "thermal pixels to RGB pixels; unset = thermal already registered (resized "
              "to the RGB size)"),
    ParamSpec("thermal_timeout_s", 1.0, "thermal input older than this (s) counts as missing",
              lo=0.05, hi=60.0),
    ParamSpec("thermal_dropout_policy", "pause", "when thermal is missing: pause (no "
              "detections, diagnostic ERROR) or rgb_only (detect on RGB with a blank thermal "
              "image, diagnostic WARN)", choices=DROPOUT_CHOICES),
    ParamSpec("debug_image", True, "publish ~debug_image (boxes over RGB, thermal inset) "
              "when someone subscribes to it; false = never"),
    ParamSpec("instance_masks", True, "segment models: decode the instance masks and publish "
              "~instance_masks (mono8/mono16 index image, pixel = 1 + Detection2D index, 0 = "
              "background) when someone subscribes to it; false = never (detect models: no "
              "topic)"),
    ParamSpec("diagnostics_period_s", 1.0, "period of /diagnostics and of the publisher "
              "QoS check (s)", lo=0.1, hi=60.0, applies="activate"),
    ParamSpec("start_enabled", True, "start with detection enabled (~/enable toggles it)",
              applies="activate"),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of ``spec`` (description, range, constraint text)."""
    when = {"live": "applies immediately", "activate": "applies at the next activate",
            "configure": "applies at the next configure"}[spec.applies]
    constraints = when
    if spec.choices:
        constraints = f"one of {', '.join(spec.choices)}; {when}"
    d = ParameterDescriptor(description=spec.description, additional_constraints=constraints)
    if spec.lo is not None and spec.hi is not None:
        if isinstance(spec.default, bool):
            pass
        elif isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(spec.lo), to_value=int(spec.hi),
                                            step=0)]
        elif isinstance(spec.default, float):
            d.floating_point_range = [FloatingPointRange(from_value=float(spec.lo),
                                                         to_value=float(spec.hi), step=0.0)]
    return d


def declare_all(node: Any) -> None:
    """Declare every parameter of :data:`SPECS` on ``node`` (an rclpy Node)."""
    for spec in SPECS:
        value: Any = spec.default if spec.default is not None else Parameter.Type.DOUBLE_ARRAY
        node.declare_parameter(spec.name, value, descriptor(spec))


def validate(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for parameter ``name``, or None when it is.

    Ranges are enforced by the descriptors too; this also checks choices and the homography,
    so a rejected update says what to do.
    """
    spec = SPEC_BY_NAME.get(name)
    if spec is None:
        return None
    if spec.choices is not None and value not in spec.choices:
        return f"{name}={value!r} is not one of {list(spec.choices)}"
    lo, hi = spec.lo, spec.hi
    if lo is not None and hi is not None and not isinstance(value, bool) and (
            not isinstance(value, int | float) or not lo <= value <= hi):
        return f"{name}={value!r} is outside [{lo}, {hi}]"
    if name == "thermal_homography" and value is not None:
        return homography_problem(list(value))
    return None


def homography_problem(values: list[float]) -> str | None:
    """Why 9 floats are not a usable thermal->RGB homography, or None."""
    if len(values) != 9:
        return f"thermal_homography needs 9 floats (row-major 3x3), got {len(values)}"
    if not all(math.isfinite(v) for v in values):
        return "thermal_homography has non-finite values"
    a, b, c, d, e, f, g, h, i = values
    # Determinant by cofactor expansion: a singular matrix cannot warp an image.
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if abs(det) < 1e-12:
        return "thermal_homography is singular (determinant 0): check the calibration"
    return None
