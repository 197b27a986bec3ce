"""The one onnxruntime session factory: options applied, clear errors (real ORT, a real graph
built with onnx.helper)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dlrmamba_core.errors import ConfigError, ModelFileError
from dlrmamba_core.runtime.ort_session import ort_session


def _add_one_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add_one", [x],
                              [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_runs_from_bytes_and_path_with_the_options(tmp_path: Path) -> None:
    data = _add_one_model()
    path = tmp_path / "add.onnx"
    path.write_bytes(data)
    x = np.array([1.0, 2.0], np.float32)
    for source in (data, path, str(path)):
        sess = ort_session(source, threads=1)
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x + 1)
        assert sess.get_providers() == ["CPUExecutionProvider"]
    prof = ort_session(path, threads=2, profile_prefix=str(tmp_path / "prof"))
    prof.run(None, {"x": x})
    assert Path(prof.end_profiling()).is_file()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"threads": 0}, "need >= 1"),
    ({"inter_op_threads": 0}, "need >= 1"),
    ({"graph_optimization": "max"}, "use one of"),
    ({"providers": ["NoSuchExecutionProvider"]}, "not available"),
])
def test_bad_options_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ort_session(_add_one_model(), **kwargs)


def test_unloadable_model_is_a_model_file_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelFileError, match=r"bad.onnx: onnxruntime cannot load it"):
        ort_session(bad)
    with pytest.raises(ModelFileError, match="the serialized model"):
        ort_session(b"\x00\x01")
