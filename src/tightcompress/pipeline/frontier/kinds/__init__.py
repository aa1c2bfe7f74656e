"""The kinds of model a frontier measures (`base.ModelKind`): the demo, ONNX files, PyTorch models."""
