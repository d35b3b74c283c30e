"""Gradio demo on ONNX Runtime: tag-conditioned generation and StarGAN style transfer.

``python -m demo --models DIR`` serves every ``.onnx`` file in DIR (see demo/app.py).
The demo process imports ``export.runtime`` (numpy + onnxruntime), never torch.
This file imports nothing.
"""
