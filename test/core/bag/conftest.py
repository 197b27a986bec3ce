"""Fixtures of the bag tests: small real rosbags and a small real ONNX detector.

``grid_model``: a hand-built ONNX graph (no training, no torch) that follows the dlrmamba
model contract (inputs ``rgb`` (1,3,H,W) and ``thermal`` (1,1,H,W), output ``predictions``
(1, 4 + nc, A), ``dlrmamba.*`` metadata). Its anchors are the cells of a 16-pixel grid; the
score of class ``bright`` is the mean RGB intensity of a cell and that of class ``hot`` the mean
normalized thermal intensity. Its detections therefore follow the image content, so it is a
real, deterministic detector for the pipeline tests (its accuracy is not the point).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dlrmamba_core.bag.synth import StreamFrame, write_frames_bag

GRID_CLASSES = ["bright", "hot"]
GRID_HW = (96, 128)
CELL = 16


def build_grid_model(path: Path, input_hw: tuple[int, int] = GRID_HW,
                     class_names: list[str] | None = None) -> Path:
    """Write the grid detector ONNX file to ``path`` (see the module docstring).

    With ``class_names`` (>= 2 names), class 0 is scored by brightness, class 1 by heat and
    the others are never detected (score 0).
    """
    names = list(class_names or GRID_CLASSES)
    nc = len(names)
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    h, w = input_hw
    gh, gw = h // CELL, w // CELL
    a = gh * gw
    ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")  # (gh, gw) cell indices
    boxes = np.stack([xs * CELL, ys * CELL, xs * CELL + CELL, ys * CELL + CELL]).astype(
        np.float32).reshape(1, 4, a)  # (4, gh, gw) -> (1, 4, A), row-major like the scores
    nodes = [
        helper.make_node("ReduceMean", ["rgb"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["p_rgb"], kernel_shape=[CELL, CELL],
                         strides=[CELL, CELL]),
        helper.make_node("AveragePool", ["thermal"], ["p_th"], kernel_shape=[CELL, CELL],
                         strides=[CELL, CELL]),
        helper.make_node("Concat", ["p_rgb", "p_th", "zero_cells"], ["cells"], axis=1),
        # (1, nc, gh, gw) -> (1, nc, A), row-major like the boxes
        helper.make_node("Reshape", ["cells", "flat_shape"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["predictions"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "grid_detector",
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, h, w]),
         helper.make_tensor_value_info("thermal", TensorProto.FLOAT, [1, 1, h, w])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, [1, 4 + nc, a])],
        initializer=[numpy_helper.from_array(boxes, "boxes"),
                     numpy_helper.from_array(np.zeros((1, nc - 2, gh, gw), np.float32),
                                             "zero_cells"),
                     numpy_helper.from_array(np.array([1, nc, a], np.int64), "flat_shape")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "dlrmamba.class_names": json.dumps(names),
        "dlrmamba.input_hw": json.dumps([h, w]),
        "dlrmamba.variant": "test-grid",
        "dlrmamba.version": "0",
        "dlrmamba.weights_sha256": "0" * 64,
        "dlrmamba.normalization": json.dumps({"mode": "fixed", "lo": 0, "hi": 4000}),
    }
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def segment_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``nano`` segment model (K = 8, classes :data:`GRID_CLASSES`) in ONNX."""
    pytest.importorskip("torch")
    from model_helpers import make_segment_checkpoint

    from dlrmamba_core.deploy.export import export_onnx

    d = tmp_path_factory.mktemp("segment_model")
    ckpt = make_segment_checkpoint(d / "seg.pt", GRID_CLASSES)
    return Path(export_onnx(ckpt, d / "seg.onnx", parity_samples=0).onnx_path)


@pytest.fixture(scope="session")
def grid_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the grid detector ONNX file."""
    return build_grid_model(tmp_path_factory.mktemp("model") / "grid.onnx")


def scene_frames(n_rgb: int = 12, rgb_hz: float = 30.0, thermal_every: int = 3,
                 size: tuple[int, int] = (128, 96), t0_ns: int = 1_700_000_000_000_000_000,
                 thermal_offset_ns: int = 2_000_000) -> list[StreamFrame]:
    """A small scene: a bright 16 px square moving right (RGB), hot in thermal.

    Returns RGB frames at ``rgb_hz`` with ground truth (class 0 "bright" for the square) and a
    thermal frame every ``thermal_every`` RGB frames, ``thermal_offset_ns`` later.
    """
    w, h = size
    frames: list[StreamFrame] = []
    for i in range(n_rgb):
        t = t0_ns + round(i * 1e9 / rgb_hz)
        x = 8 + 4 * i
        rgb = np.full((h, w, 3), 20, np.uint8)
        rgb[32:48, x:x + 16] = 240
        frames.append(StreamFrame("rgb", t, rgb,
                                  boxes=np.array([[x, 32, x + 16, 48]], np.float32),
                                  labels=np.array([0], np.int64)))
        if i % thermal_every == 0:
            th = np.full((h // 2, w // 2), 1000, np.uint16)
            th[16:24, x // 2:x // 2 + 8] = 3500
            frames.append(StreamFrame("thermal", t + thermal_offset_ns, th))
    return frames


@pytest.fixture(params=["sqlite3", "mcap"])
def scene_bag(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A small real bag of :func:`scene_frames` in each storage."""
    s = write_frames_bag(tmp_path / f"scene_{request.param}", scene_frames(), GRID_CLASSES,
                         storage=request.param, compressed=True)
    return s.path
