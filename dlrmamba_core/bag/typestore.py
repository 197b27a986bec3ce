"""The rosbags typestore every bag tool uses: ROS 2 Kilted plus ``vision_msgs``.

``vision_msgs`` is not part of rosbags' built-in stores. Its definitions are read at run time
from the installed interface package (``<prefix>/share/vision_msgs/msg/*.msg`` on
``AMENT_PREFIX_PATH``) or, in a source checkout, from ``tools/vision_msgs/msg``. The type hash
rosbags computes from these definitions equals the one of the built ``vision_msgs`` package, so
bags written here and live topics agree.
"""

from __future__ import annotations

from functools import lru_cache
import os
from pathlib import Path
import sys
from typing import Any

from dlrmamba_core.errors import BagError

VISION_TYPES = (
    "Point2D",
    "Pose2D",
    "BoundingBox2D",
    "ObjectHypothesis",
    "ObjectHypothesisWithPose",
    "Detection2D",
    "Detection2DArray",
    "VisionClass",
    "LabelInfo",
)


def vision_msgs_dirs() -> list[Path]:
    """Candidate directories holding ``vision_msgs`` ``.msg`` files, most specific first."""
    dirs: list[Path] = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / "vision_msgs" / "msg")
    dirs.append(Path(sys.prefix) / "share" / "vision_msgs" / "msg")
    # Source checkout: <repo>/tools/vision_msgs/msg (this file is <repo>/dlrmamba_core/bag/).
    dirs.append(Path(__file__).resolve().parents[2] / "tools" / "vision_msgs" / "msg")
    return dirs


def find_vision_msgs_dir() -> Path:
    """The first directory that has every ``vision_msgs`` definition we need.

    Raises:
        BagError: none of the candidates has them.
    """
    candidates = vision_msgs_dirs()
    for d in candidates:
        if all((d / f"{name}.msg").is_file() for name in VISION_TYPES):
            return d
    tried = ", ".join(str(d) for d in candidates)
    raise BagError(
        f"vision_msgs message definitions not found (looked in: {tried}); run `make install` "
        "or source a ROS 2 installation that has vision_msgs"
    )


@lru_cache(maxsize=1)
def get_bag_typestore() -> Any:
    """The shared typestore: ``Stores.ROS2_KILTED`` with ``vision_msgs/msg/*`` registered.

    Returns:
        a ``rosbags.typesys.store.Typestore`` (typed ``Any`` so that importing this module
        does not import rosbags).
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    d = find_vision_msgs_dir()
    types: dict[str, Any] = {}
    for name in VISION_TYPES:
        text = (d / f"{name}.msg").read_text()
        types.update(get_types_from_msg(text, f"vision_msgs/msg/{name}"))
    store.register(types)
    return store
