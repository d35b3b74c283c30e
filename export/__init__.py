"""ONNX export of tagface generators, and a torch-free runtime for the exported files.

- ``export.onnx_export`` (torch): run folder -> one self-contained ``.onnx`` file with
  metadata, checked by onnx.checker and against PyTorch on ONNX Runtime.
- ``export.runtime`` (numpy + onnxruntime only): load a model, encode tags and
  domains by name, generate and translate uint8 images.

This file imports nothing, so ``import export.runtime`` never pulls in torch.
"""
