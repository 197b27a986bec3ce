"""Message conversions of the node that need no running node: the instance index image."""

from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header

from dlrmamba_core.errors import InputError
from dlrmamba_core.runtime.detections import Detections
from dlrmamba_ros import conversions as cv

BOXES = np.array([[0, 0, 6, 4], [2, 1, 8, 5], [5, 0, 8, 3]], np.float32)


def _masks(h: int = 6, w: int = 8) -> np.ndarray:
    """Three box-filled masks (each 0 outside its box, as the runtime's masks are)."""
    m = np.zeros((len(BOXES), h, w), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(BOXES.astype(int).tolist()):
        m[i, y1:y2, x1:x2] = 1
    return m


def test_index_image_values_and_overlap_goes_to_the_higher_score() -> None:
    m = _masks()
    out = cv.instance_index_image(m, np.array([0.5, 0.9, 0.5]), BOXES)
    assert out.dtype == np.uint8 and out.shape == (6, 8)
    assert out[0, 0] == 1 and out[5, 0] == 0  # detection 0 alone; background
    assert out[2, 3] == 2  # 0 and 1 overlap: 1 scores higher
    assert out[2, 6] == 2  # 1 beats 2
    assert out[0, 5] == 1  # 0 and 2 tie at 0.5: the lower index wins
    assert out[0, 7] == 3
    np.testing.assert_array_equal(out != 0, m.any(0))


def test_index_image_mono16_and_limits() -> None:
    m = _masks()
    out = cv.instance_index_image(m, np.array([0.9, 0.8, 0.7]), BOXES, "mono16")
    assert out.dtype == np.uint16 and out[2, 3] == 1
    assert cv.instance_mask_encoding(255) == "mono8"
    assert cv.instance_mask_encoding(256) == "mono16"
    with pytest.raises(InputError, match="same N"):
        cv.instance_index_image(m[:2], np.ones(3), BOXES)
    with pytest.raises(InputError, match="mono8 or mono16"):
        cv.instance_index_image(m, np.ones(3), BOXES, "rgb8")
    many = np.zeros((256, 2, 2), np.uint8)
    with pytest.raises(InputError, match="do not fit"):
        cv.instance_index_image(many, np.ones(256), np.zeros((256, 4)), "mono8")


def test_instance_masks_msg_carries_the_header_and_the_index_image() -> None:
    dets = Detections.of(BOXES, [0.9, 0.8, 0.7], [0, 1, 2])
    dets.masks = _masks()
    header = Header(frame_id="cam_rgb")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    msg = cv.instance_masks_msg(dets, header, "mono16")
    assert msg.header == header and (msg.height, msg.width, msg.encoding) == (6, 8, "mono16")
    got = np.frombuffer(bytes(msg.data), "<u2").reshape(6, msg.step // 2)[:, :8]
    np.testing.assert_array_equal(got, cv.instance_index_image(dets.masks, dets.scores,
                                                               dets.boxes, "mono16"))
