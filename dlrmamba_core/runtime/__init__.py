"""Runtime: the robot path. ONNX inference, pre/post-processing, frame pairing, image codec.

Nothing in this folder imports torch (``test/core/runtime/test_torch_free.py`` imports every
module here with torch blocked). The torch-side tools that make and measure the models it runs
(ONNX export, quantization, benchmarks, profiling, the optional torch backend) are in
:mod:`dlrmamba_core.deploy`.

Public API: :class:`Detector` (``detect(rgb, thermal) -> Detections``) and
:class:`Detections`.
"""

from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.detector import Detector

__all__ = ["Detections", "Detector"]
