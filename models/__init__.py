"""Model packages (``model.onnx`` + ``metadata.json``) and, later, the registry of them."""
