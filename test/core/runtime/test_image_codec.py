"""Tests of our Image/CompressedImage codec against rosbags-image as the reference decoder."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dlrmamba_core.errors import InputError
from dlrmamba_core.runtime import image_codec as ic

rosbags_image = pytest.importorskip("rosbags.image")
typesys = pytest.importorskip("rosbags.typesys")

TYPESTORE = typesys.get_typestore(typesys.Stores.ROS2_KILTED)
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
RosImage = TYPESTORE.types["sensor_msgs/msg/Image"]
RosCompressed = TYPESTORE.types["sensor_msgs/msg/CompressedImage"]


def _header() -> object:
    return Header(stamp=Time(sec=1, nanosec=2), frame_id="cam")


def _random(encoding: str, h: int = 7, w: int = 11, seed: int = 0) -> np.ndarray:
    dtype, ch = ic.ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (h, w) if ch == 1 else (h, w, ch)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _ros_msg(f: ic.ImageFields) -> object:
    return RosImage(
        header=_header(), height=f.height, width=f.width, encoding=f.encoding,
        is_bigendian=int(f.is_bigendian), step=f.step,
        data=np.frombuffer(f.data, dtype=np.uint8),
    )


@pytest.mark.parametrize("encoding", sorted(ic.ENCODINGS))
@pytest.mark.parametrize("bigendian", [False, True])
def test_raw_decode_matches_rosbags_image(encoding: str, bigendian: bool) -> None:
    img = _random(encoding, seed=len(encoding))
    fields = ic.numpy_to_image(img, encoding, is_bigendian=bigendian)
    reference = rosbags_image.message_to_cvimage(_ros_msg(fields))
    ours = ic.image_msg_to_numpy(_ros_msg(fields))
    assert ours.dtype == reference.dtype.newbyteorder("=")
    np.testing.assert_array_equal(ours, reference)
    np.testing.assert_array_equal(ours, img)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_to_rgb_matches_rosbags_image_conversion(encoding: str) -> None:
    img = _random(encoding, seed=3)
    fields = ic.numpy_to_image(img, encoding)
    reference = rosbags_image.message_to_cvimage(_ros_msg(fields), "rgb8")
    ours = ic.to_rgb(ic.image_msg_to_numpy(_ros_msg(fields)), encoding)
    assert ours.shape == (7, 11, 3)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("encoding", ["rgb8", "mono16"])
def test_row_padding_is_removed(encoding: str) -> None:
    img = _random(encoding, seed=5)
    padded = ic.numpy_to_image(img, encoding, row_padding=5)
    plain = ic.numpy_to_image(img, encoding)
    assert padded.step == plain.step + 5
    out = ic.image_to_numpy(**vars(padded))
    np.testing.assert_array_equal(out, img)
    # Reference on the unpadded equivalent (rosbags-image ignores step).
    np.testing.assert_array_equal(out, rosbags_image.message_to_cvimage(_ros_msg(plain)))


def test_accepts_array_array_and_list_data() -> None:
    import array

    img = _random("mono8")
    f = ic.numpy_to_image(img, "mono8")
    for data in (array.array("B", f.data), list(f.data), memoryview(f.data)):
        np.testing.assert_array_equal(
            ic.image_to_numpy(f.encoding, f.height, f.width, f.step, False, data), img
        )


def test_decoded_array_owns_its_memory() -> None:
    f = ic.numpy_to_image(_random("rgb8"), "rgb8")
    buf = bytearray(f.data)
    out = ic.image_to_numpy(f.encoding, f.height, f.width, f.step, False, buf)
    before = out.copy()
    buf[:] = bytes(len(buf))
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422' on /cam/image"),
        ({"data_cut": 1}, "truncated image data on /cam/image"),
        ({"data_extra": 3}, "oversized image data"),
        ({"step": 10}, "step 10 < width"),
        ({"height": 0}, "empty image"),
        ({"width": 12}, "step 33 < width"),
    ],
)
def test_malformed_raw_images_raise_input_error(change: dict, match: str) -> None:
    f = vars(ic.numpy_to_image(_random("rgb8"), "rgb8")).copy()
    data = f["data"]
    if "data_cut" in change:
        f["data"] = data[: -change.pop("data_cut")]
    if "data_extra" in change:
        f["data"] = data + bytes(change.pop("data_extra"))
    f.update(change)
    with pytest.raises(InputError, match=match):
        ic.image_to_numpy(**f, source="/cam/image")


def test_to_rgb_rejects_thermal_encoding() -> None:
    with pytest.raises(InputError, match="mono16"):
        ic.to_rgb(_random("mono16"), "mono16")


def _smooth_rgb(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_colour_matches_rosbags_image(fmt: str) -> None:
    rgb = _smooth_rgb()
    fmt_str, data = ic.numpy_to_compressed(rgb, "rgb8", fmt)
    assert fmt in fmt_str
    msg = RosCompressed(header=_header(), format=fmt_str, data=np.frombuffer(data, np.uint8))
    ours, enc = ic.compressed_to_numpy(msg.format, msg.data)
    assert enc == "bgr8"
    np.testing.assert_array_equal(ours, rosbags_image.message_to_cvimage(msg))
    np.testing.assert_array_equal(
        ic.to_rgb(ours, enc), rosbags_image.message_to_cvimage(msg, "rgb8")
    )
    if fmt == "png":
        np.testing.assert_array_equal(ic.to_rgb(ours, enc), rgb)  # lossless
    else:
        assert np.abs(ic.to_rgb(ours, enc).astype(int) - rgb).mean() < 3.0


def test_compressed_mono8_matches_rosbags_image() -> None:
    gray = _smooth_rgb()[..., 0]
    fmt_str, data = ic.numpy_to_compressed(gray, "mono8", "png")
    msg = RosCompressed(header=_header(), format=fmt_str, data=np.frombuffer(data, np.uint8))
    ours, enc = ic.compressed_to_numpy(msg.format, msg.data)
    assert enc == "mono8"
    np.testing.assert_array_equal(ours, rosbags_image.message_to_cvimage(msg))


def test_sixteen_bit_png_keeps_full_depth() -> None:
    thermal = np.random.default_rng(0).integers(0, 65535, size=(24, 32)).astype(np.uint16)
    fmt_str, data = ic.numpy_to_compressed(thermal, "mono16", "png")
    out, enc = ic.compressed_to_numpy(fmt_str, data)
    assert enc == "mono16"
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, thermal)
    # Independent decoder check: OpenCV's own 16-bit reader gives the same pixels.
    np.testing.assert_array_equal(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH), thermal
    )


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_compressed_raises(fmt: str) -> None:
    fmt_str, data = ic.numpy_to_compressed(_smooth_rgb(), "rgb8", fmt)
    with pytest.raises(InputError, match=r"truncated|cannot decode"):
        ic.compressed_to_numpy(fmt_str, data[: len(data) // 2], source="/cam/compressed")


@pytest.mark.parametrize(
    ("fmt", "data", "match"),
    [
        ("jpeg", b"", "empty CompressedImage"),
        ("tiff", b"abc", "unsupported CompressedImage format 'tiff'"),
        ("png", b"\x89PNG garbage", "cannot decode"),
    ],
)
def test_bad_compressed_raises(fmt: str, data: bytes, match: str) -> None:
    with pytest.raises(InputError, match=match):
        ic.compressed_to_numpy(fmt, data)


def test_sixteen_bit_jpeg_refused() -> None:
    with pytest.raises(InputError, match="16-bit"):
        ic.numpy_to_compressed(np.zeros((4, 4), np.uint16), "mono16", "jpeg")


def test_numpy_to_image_rejects_misfit_array() -> None:
    with pytest.raises(InputError, match="does not fit encoding mono16"):
        ic.numpy_to_image(np.zeros((4, 4), np.uint8), "mono16")


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"encoding": "rgb8", "height": 4, "width": 5, "step": 15, "data_len": 60}, None),
        ({"encoding": "rgb16", "height": 4, "width": 5, "step": 30, "data_len": 120}, "encoding"),
        ({"encoding": "mono16", "height": 4, "width": 5, "step": 10, "data_len": 40}, "encoding"),
        ({"encoding": "rgb8", "height": 4, "width": 5, "step": 15, "data_len": 59}, "size"),
        ({"encoding": "rgb8", "height": 4, "width": 5, "step": 14, "data_len": 56}, "size"),
        ({"encoding": "rgb8", "height": 4, "width": 5, "step": 16, "data_len": 64}, None),
    ],
)
def test_check_image_fields_kinds(fields: dict, kind: str | None) -> None:
    allowed = ic.RGB_ENCODINGS
    if kind is None:
        ic.check_image_fields(**fields, allowed=allowed, source="/rgb")
        return
    with pytest.raises(ic.ImageDataError, match="/rgb") as info:
        ic.check_image_fields(**fields, allowed=allowed, source="/rgb")
    assert info.value.kind == kind
    assert isinstance(info.value, InputError)


def test_decode_errors_carry_kinds() -> None:
    with pytest.raises(ic.ImageDataError) as info:
        ic.compressed_to_numpy("png", b"\x89PNG garbage")
    assert info.value.kind == "decode"
    with pytest.raises(ic.ImageDataError) as info:
        ic.image_to_numpy("rgb8", 2, 2, 6, False, b"\x00" * 11)
    assert info.value.kind == "size"
