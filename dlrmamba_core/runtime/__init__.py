"""Runtime: the robot path. ONNX inference, pre/post-processing, frame pairing, image codec.

Nothing in this folder imports torch (``test/core/runtime/test_torch_free.py`` imports every
module here with torch blocked); outside it, the robot loads only ``errors`` and the numpy
pre-processing of ``data`` (letterbox, registration, thermal normalization: the code training
uses too), tested the same way. The torch-side tools that make and measure the models it runs
(ONNX export, quantization, benchmarks, profiling, the optional torch backend) are in
:mod:`dlrmamba_core.deploy`.

Public API: :class:`Detector` (``detect(rgb, thermal) -> Detections``) and
:class:`Detections`.
"""

from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.detector import Detector

__all__ = ["Detections", "Detector"]
