"""sensor_msgs ``Image`` / ``CompressedImage`` fields <-> numpy (numpy + OpenCV, no cv_bridge).

cv_bridge breaks under numpy 2, so the node and the rosbag tools use these functions instead.
They work on plain fields (or on any object with the fields of the message: an rclpy message,
a ``rosbags`` message), so this module never imports rclpy.

Supported raw encodings: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``8UC1``,
``mono16``, ``16UC1`` (rows may be padded: ``step >= width * bytes_per_pixel``; 16-bit data
in either byte order). Compressed: JPEG and PNG (8-bit gray/colour, 16-bit gray PNG for
thermal cameras).

Every malformed input raises :class:`dlrmamba_core.errors.InputError` naming the problem and
the ``source`` (topic or file) given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
import sys
from typing import Any

import cv2
import numpy as np

from dlrmamba_core.errors import InputError

# encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
}
RGB_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
THERMAL_ENCODINGS = ("mono8", "mono16", "16UC1", "8UC1")

_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
}


class ImageDataError(InputError):
    """A malformed image message.

    Attributes:
        kind: what is wrong, for per-kind drop counters: ``"encoding"`` (unsupported or
            unusable for this camera), ``"size"`` (dimensions, step and data length disagree,
            truncated data) or ``"decode"`` (compressed data that does not decode).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageFields:
    """The payload fields of a ``sensor_msgs/Image`` (header excluded).

    Attributes:
        encoding: one of :data:`ENCODINGS`.
        height: rows (px).
        width: columns (px).
        step: bytes per row, padding included.
        is_bigendian: byte order of multi-byte pixels.
        data: ``step * height`` bytes.
    """

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: bytes


def _as_u8(data: bytes | bytearray | memoryview | np.ndarray | list[int]) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` (bytes, array.array, memoryview, list)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, list):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)  # zero-copy for any buffer-protocol object


def _where(source: str) -> str:
    return f" on {source}" if source else ""


def image_to_numpy(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: bytes | bytearray | memoryview | np.ndarray | list[int],
    source: str = "",
) -> np.ndarray:
    """Decode raw ``Image`` fields to an array in the message's own channel order.

    Args:
        encoding: the message's encoding (see :data:`ENCODINGS`).
        height: rows (px).
        width: columns (px).
        step: bytes per row (>= width * bytes per pixel; extra bytes are row padding).
        is_bigendian: byte order of 16-bit pixels.
        data: exactly ``step * height`` bytes.
        source: topic or file name used in error messages.

    Returns:
        (H, W) for one channel or (H, W, C) array, uint8 or native-order uint16, owning its
        memory (safe to keep after the message is gone).

    Raises:
        InputError: unknown encoding, zero size, step too small, or data size != step*height.
    """
    if encoding not in ENCODINGS:
        raise ImageDataError(
            f"unsupported image encoding {encoding!r}{_where(source)}: "
            f"publish one of {sorted(ENCODINGS)}",
            "encoding",
        )
    dtype, channels = ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDataError(f"empty image {width}x{height}{_where(source)}", "size")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDataError(
            f"image step {step} < width*bytes_per_pixel = {row_bytes} for {encoding} "
            f"{width}x{height}{_where(source)}: the publisher sets a wrong step",
            "size",
        )
    buf = _as_u8(data)
    if buf.size != step * height:
        kind = "truncated" if buf.size < step * height else "oversized"
        raise ImageDataError(
            f"{kind} image data{_where(source)}: {buf.size} bytes, expected step*height = "
            f"{step}*{height} = {step * height} ({encoding} {width}x{height})",
            "size",
        )
    rows = buf.reshape(height, step)[:, :row_bytes]  # (H, step) -> drop row padding
    wire = dtype.newbyteorder(">") if is_bigendian else dtype.newbyteorder("<")
    img = np.ascontiguousarray(rows).view(wire)  # (H, row_bytes) bytes -> (H, W*C) pixels
    img = img.astype(dtype.newbyteorder("="), copy=True)  # native byte order, own memory
    return img.reshape(height, width) if channels == 1 else img.reshape(height, width, channels)


def numpy_to_image(
    img: np.ndarray,
    encoding: str,
    is_bigendian: bool = False,
    row_padding: int = 0,
) -> ImageFields:
    """Encode an array as raw ``Image`` fields (the inverse of :func:`image_to_numpy`).

    Args:
        img: (H, W) or (H, W, C) uint8/uint16 array laid out as ``encoding`` says.
        encoding: target encoding (see :data:`ENCODINGS`); no colour conversion happens.
        is_bigendian: write 16-bit pixels big-endian.
        row_padding: extra bytes at the end of each row (some drivers align rows).

    Raises:
        InputError: unknown encoding or an array whose dtype/channels do not fit it.
    """
    if encoding not in ENCODINGS:
        raise InputError(
            f"unsupported image encoding {encoding!r}: use one of {sorted(ENCODINGS)}"
        )
    dtype, channels = ENCODINGS[encoding]
    got_channels = 1 if img.ndim == 2 else (img.shape[2] if img.ndim == 3 else -1)
    if img.dtype != dtype or got_channels != channels:
        raise InputError(
            f"array {img.dtype} {img.shape} does not fit encoding {encoding} "
            f"({dtype}, {channels} channel(s))"
        )
    h, w = img.shape[:2]
    px = np.ascontiguousarray(img, dtype=dtype.newbyteorder(">") if is_bigendian
                              else dtype.newbyteorder("<"))
    rows = px.reshape(h, -1).view(np.uint8)  # (H, W*C*itemsize) bytes
    if row_padding:
        rows = np.concatenate([rows, np.zeros((h, row_padding), np.uint8)], axis=1)
    return ImageFields(encoding, h, w, int(rows.shape[1]), bool(is_bigendian), rows.tobytes())


def check_image_fields(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data_len: int,
    allowed: tuple[str, ...] | None = None,
    source: str = "",
) -> None:
    """O(1) validation of raw ``Image`` fields, without decoding (for subscription callbacks).

    Args:
        encoding, height, width, step: the message's fields.
        data_len: ``len(msg.data)`` (bytes).
        allowed: encodings acceptable for this camera (None: all of :data:`ENCODINGS`).
        source: topic name for error messages.

    Raises:
        ImageDataError: with ``kind`` "encoding" or "size".
    """
    if encoding not in ENCODINGS or (allowed is not None and encoding not in allowed):
        ok = sorted(ENCODINGS) if allowed is None else list(allowed)
        raise ImageDataError(
            f"unsupported image encoding {encoding!r}{_where(source)}: publish one of {ok}",
            "encoding",
        )
    dtype, channels = ENCODINGS[encoding]
    row_bytes = width * channels * dtype.itemsize
    if height <= 0 or width <= 0 or step < row_bytes or data_len != step * height:
        raise ImageDataError(
            f"image size mismatch{_where(source)}: {encoding} {width}x{height}, step {step}, "
            f"{data_len} data bytes (need step >= {row_bytes} and data = step*height)",
            "size",
        )


def image_msg_to_numpy(msg: Any, source: str = "") -> np.ndarray:
    """:func:`image_to_numpy` on any object with the fields of ``sensor_msgs/Image``."""
    return image_to_numpy(
        msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, source
    )


def to_rgb(img: np.ndarray, encoding: str, source: str = "") -> np.ndarray:
    """Convert a decoded colour/gray image to (H, W, 3) uint8 RGB.

    Raises:
        InputError: an encoding that is not an RGB-camera encoding (e.g. mono16).
    """
    if encoding == "rgb8":
        return img
    if encoding not in _TO_RGB:
        raise ImageDataError(
            f"encoding {encoding!r}{_where(source)} is not usable as the RGB image: "
            f"use one of {RGB_ENCODINGS}",
            "encoding",
        )
    return cv2.cvtColor(img, _TO_RGB[encoding])


def _jpeg_complete(buf: np.ndarray) -> bool:
    """True when JPEG bytes start with SOI (FF D8) and end with EOI (FF D9), zero padding ok."""
    if buf.size < 4 or buf[0] != 0xFF or buf[1] != 0xD8:
        return False
    end = buf.size
    while end > 2 and buf[end - 1] == 0:
        end -= 1
    return bool(buf[end - 2] == 0xFF and buf[end - 1] == 0xD9)


def _compressed_kind(fmt: str, source: str) -> str:
    """'jpeg' or 'png' from a CompressedImage.format such as 'rgb8; jpeg compressed bgr8'."""
    low = fmt.lower()
    if "png" in low:
        return "png"
    if "jpeg" in low or "jpg" in low:
        return "jpeg"
    raise ImageDataError(
        f"unsupported CompressedImage format {fmt!r}{_where(source)}: expected jpeg or png",
        "encoding",
    )


def compressed_to_numpy(
    fmt: str, data: bytes | bytearray | memoryview | np.ndarray | list[int], source: str = ""
) -> tuple[np.ndarray, str]:
    """Decode ``CompressedImage`` fields.

    Args:
        fmt: the message's ``format`` ("jpeg", "png", "bgr8; jpeg compressed bgr8",
            "mono16; png compressed", ...).
        data: the compressed bytes.
        source: topic or file name used in error messages.

    Returns:
        ``(image, encoding)``: colour images come back as ``bgr8`` (H, W, 3) or ``bgra8``
        (H, W, 4) (OpenCV order); gray ones as ``mono8`` (H, W) uint8 or ``mono16`` (H, W)
        uint16 (16-bit PNG keeps its full depth).

    Raises:
        InputError: unknown format, empty or undecodable (truncated/corrupt) data.
    """
    kind = _compressed_kind(fmt, source)
    buf = _as_u8(data)
    if buf.size == 0:
        raise ImageDataError(f"empty CompressedImage data{_where(source)}", "size")
    if kind == "jpeg" and not _jpeg_complete(buf):
        # libjpeg "decodes" a cut-off JPEG by filling the rest with gray: refuse it instead.
        raise ImageDataError(
            f"truncated JPEG{_where(source)}: {buf.size} bytes without an end-of-image marker",
            "decode",
        )
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageDataError(
            f"cannot decode CompressedImage ({fmt!r}, {buf.size} bytes){_where(source)}: "
            "data truncated or corrupt",
            "decode",
        )
    if img.ndim == 2:
        if img.dtype == np.uint16:
            return img, "mono16"
        if img.dtype == np.uint8:
            return img, "mono8"
    elif img.ndim == 3 and img.dtype == np.uint8 and img.shape[2] in (3, 4):
        return img, "bgr8" if img.shape[2] == 3 else "bgra8"
    raise ImageDataError(
        f"CompressedImage{_where(source)} decodes to unsupported {img.dtype} {img.shape}: "
        "publish 8-bit colour/gray or 16-bit gray",
        "encoding",
    )


def numpy_to_compressed(
    img: np.ndarray, encoding: str, fmt: str = "jpeg", jpeg_quality: int = 90
) -> tuple[str, bytes]:
    """Encode an array as ``CompressedImage`` fields ``(format, data)``.

    Args:
        img: (H, W, 3|4) uint8 in ``encoding`` order, (H, W) uint8, or (H, W) uint16 (PNG only).
        encoding: the array's layout (one of :data:`ENCODINGS`).
        fmt: "jpeg" or "png".
        jpeg_quality: 0..100.

    Returns:
        ``(format string in compressed_image_transport style, bytes)``.

    Raises:
        InputError: unsupported combination (e.g. 16-bit JPEG) or an encoder failure.
    """
    kind = _compressed_kind(fmt, "")
    dtype, channels = ENCODINGS.get(encoding, (None, 0))
    if dtype is None:
        raise InputError(f"unsupported image encoding {encoding!r}")
    if kind == "jpeg" and dtype == np.uint16:
        raise InputError("JPEG cannot hold 16-bit thermal images: use png")
    if channels == 3 and encoding == "rgb8":
        work, stored = cv2.cvtColor(img, cv2.COLOR_RGB2BGR), "bgr8"
    elif channels == 4 and encoding == "rgba8":
        work, stored = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA), "bgra8"
    else:
        work, stored = img, encoding
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if kind == "jpeg" else []
    ok, out = cv2.imencode(".jpg" if kind == "jpeg" else ".png", work, params)
    if not ok:
        raise InputError(f"OpenCV failed to encode {img.dtype} {img.shape} as {kind}")
    return f"{encoding}; {kind} compressed {stored}", out.tobytes()


def native_is_bigendian() -> bool:
    """Byte order of this machine (what a driver on it usually publishes)."""
    return sys.byteorder == "big"
