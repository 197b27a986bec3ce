"""Runtime: ONNX inference, pre/post-processing, frame pairing, image codec (torch-free).

Public API: :class:`Detector` (``detect(rgb, thermal) -> Detections``) and
:class:`Detections`. Export (``runtime.export``), quantization (``runtime.quantize``) and the
torch backend import torch lazily; nothing imported here needs it.
"""

from dlrmamba_core.runtime.detections import Detections
from dlrmamba_core.runtime.detector import Detector

__all__ = ["Detections", "Detector"]
