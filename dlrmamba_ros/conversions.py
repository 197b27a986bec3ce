"""Conversions between ROS messages and dlrmamba_core types (no tensor math here).

* images: ``sensor_msgs`` Image / CompressedImage -> numpy through
  :mod:`dlrmamba_core.runtime.image_codec` (our own codec: cv_bridge breaks under numpy 2);
* detections: :class:`dlrmamba_core.runtime.detections.Detections` ->
  ``vision_msgs/Detection2DArray`` whose header IS the RGB image's header;
* class map -> ``vision_msgs/LabelInfo``;
* instance masks (a segment model) -> one index image, ``sensor_msgs/Image`` ``mono8`` or
  ``mono16`` (pixel = 1 + index of the detection in the Detection2DArray, 0 = background).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from dlrmamba_core.runtime import image_codec as ic
from dlrmamba_core.runtime.segment import (  # noqa: F401  (the node's names for them)
    MONO8_MAX_DETECTIONS,
    instance_index_image,
    instance_mask_encoding,
)


def stamp_ns(header: Header) -> int:
    """A header's stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def check_image_msg(msg: Image | CompressedImage, role: str, topic: str) -> None:
    """O(1) sanity check of a raw Image for the ``role`` camera ("rgb" or "thermal").

    CompressedImage data can only be checked by decoding (see :func:`decode_image_msg`).

    Raises:
        ImageDataError: unsupported encoding for this camera or inconsistent sizes.
    """
    if isinstance(msg, CompressedImage):
        if len(msg.data) == 0:
            raise ic.ImageDataError(f"empty CompressedImage data on {topic}", "size")
        return
    allowed = ic.RGB_ENCODINGS if role == "rgb" else ic.THERMAL_ENCODINGS
    ic.check_image_fields(msg.encoding, msg.height, msg.width, msg.step, len(msg.data),
                          allowed, topic)


def decode_image_msg(msg: Image | CompressedImage, role: str, topic: str) -> np.ndarray:
    """Decode an RGB or thermal message to the array the Detector takes.

    Args:
        msg: the message.
        role: "rgb" -> (H, W, 3) uint8 RGB; "thermal" -> (Ht, Wt) uint8 or uint16 raw counts.
        topic: topic name for error messages.

    Raises:
        ImageDataError: malformed data (``kind`` says which problem).
    """
    if isinstance(msg, CompressedImage):
        img, encoding = ic.compressed_to_numpy(msg.format, msg.data, topic)
    else:
        img = ic.image_msg_to_numpy(msg, topic)
        encoding = msg.encoding
    if role == "rgb":
        return ic.to_rgb(img, encoding, topic)
    if img.ndim != 2:
        raise ic.ImageDataError(
            f"thermal image on {topic} has {img.shape[2]} channels ({encoding}): publish "
            f"a single-channel image ({', '.join(ic.THERMAL_ENCODINGS)}, or 8/16-bit png)",
            "encoding",
        )
    return img


def numpy_to_image_msg(img: np.ndarray, encoding: str, header: Header) -> Image:
    """An ``Image`` message holding ``img`` (laid out as ``encoding``)."""
    f = ic.numpy_to_image(img, encoding)
    msg = Image(header=header, height=f.height, width=f.width, encoding=f.encoding,
                is_bigendian=int(f.is_bigendian), step=f.step)
    msg.data = f.data
    return msg


def detections_to_msg(dets: Any, header: Header) -> Detection2DArray:
    """``Detections`` -> ``Detection2DArray``.

    Args:
        dets: boxes (N, 4) xyxy in original RGB pixels, scores (N,), class_ids (N,).
        header: the RGB image's header; copied to the array and to every Detection2D.

    Returns:
        The message: bbox center/size in RGB pixels, ``class_id`` the class index as a
        string (stable; names in LabelInfo), ``score`` the confidence, ``id`` the index of
        the detection in the array as a string (its rank by score; the pixel value - 1 of
        ``~/instance_masks`` for a segment model).
    """
    items = []
    # Plain Python floats/ints (tolist) so the message setters do no numpy conversion.
    for k, (box, score, cls) in enumerate(
        zip(dets.boxes.tolist(), dets.scores.tolist(), dets.class_ids.tolist(), strict=True)
    ):
        x1, y1, x2, y2 = box
        det = Detection2D(header=header, id=str(k))
        bbox = det.bbox
        bbox.center.position.x = (x1 + x2) / 2.0
        bbox.center.position.y = (y1 + y2) / 2.0
        bbox.size_x = x2 - x1
        bbox.size_y = y2 - y1
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(cls)
        hyp.hypothesis.score = score
        det.results.append(hyp)
        items.append(det)
    return Detection2DArray(header=header, detections=items)


def label_info_msg(class_names: list[str], header: Header, threshold: float) -> LabelInfo:
    """The model's class map as ``LabelInfo`` (class_id k <-> class_names[k])."""
    msg = LabelInfo(header=header, threshold=float(threshold))
    msg.class_map = [VisionClass(class_id=k, class_name=n) for k, n in enumerate(class_names)]
    return msg


def instance_masks_msg(dets: Any, header: Header, encoding: str) -> Image:
    """``~/instance_masks`` of one frame: the index image of ``dets.masks`` on ``header``.

    Args:
        dets: Detections with ``masks`` (N, H, W) (a segment model, ``detect(masks=True)``).
        header: the RGB image's header (the same as the Detection2DArray's).
        encoding: ``mono8`` or ``mono16`` (:func:`instance_mask_encoding`).

    Returns:
        An (H, W) Image: pixel = 1 + index of the detection in the Detection2DArray of the
        same header (``Detection2D.id``), 0 = background; see :func:`instance_index_image`.
    """
    index = instance_index_image(dets.masks, dets.scores, dets.boxes, encoding)
    return numpy_to_image_msg(index, encoding, header)
