"""Export a run's model for use outside PyTorch (``medcnn export``): ONNX, checked for parity."""
