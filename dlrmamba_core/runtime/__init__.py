"""Runtime: ONNX inference, pre/post-processing, frame pairing, image codec (torch-free)."""
