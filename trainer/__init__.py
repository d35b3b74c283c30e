"""tagface: tag-conditioned GANs and StarGAN, trained with Accelerate, exported to ONNX."""

__version__ = "0.1.0"
