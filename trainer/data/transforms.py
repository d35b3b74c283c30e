"""Image preprocessing: once per image when the cache is built, and per batch on tensors.

``load_image`` (PIL, at cache-build time): scale 16-bit greyscale to 8 bits, composite
transparency onto white, centre crop, resize (bilinear with antialiasing, torchvision's default), uint8 CHW.
``to_model_input`` (torch, every batch): random horizontal flips and scaling to [-1, 1],
on whatever device the batch lives on.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image


def center_crop_box(width: int, height: int, side: int | None = None) -> tuple[int, int, int, int]:
    """Box of the centred square of ``side`` (largest square if None), as torchvision does."""
    side = min(width, height) if side is None else min(side, width, height)
    left = int(round((width - side) / 2.0))
    top = int(round((height - side) / 2.0))
    return left, top, left + side, top + side


# Greyscale modes of more than 8 bits (16-bit PNG, 32-bit integer or float TIFF) and
# their full-scale value; PIL's convert("RGB") would clip them at 255 instead of scaling.
HIGH_BIT_DEPTH = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535,
                  "I": 65535, "F": 1.0}


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale a high-bit-depth greyscale image to 8-bit "L" (16-bit PNGs decode as I;16 or I).

    Mode "I" is read as 16-bit, as PNG decoders give it; "F" as values in [0, 1].
    """
    full = HIGH_BIT_DEPTH[img.mode]
    a = np.asarray(img, dtype=np.float64)
    a = np.clip(np.nan_to_num(a) * (255.0 / full), 0, 255)
    return Image.fromarray(np.rint(a).astype(np.uint8))  # 2-D uint8: mode "L"


def load_image(source: str | Path | BinaryIO, size: int, crop: int | None = None) -> np.ndarray:
    """Decode one image to uint8 [3, size, size]. Raises OSError/ValueError if unreadable."""
    with Image.open(source) as img:
        img.load()  # a truncated file raises here, not later
        if img.mode in HIGH_BIT_DEPTH:
            img = _to_8bit(img)
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgb = Image.alpha_composite(white, rgba).convert("RGB")
        else:
            rgb = img.convert("RGB")
    box = center_crop_box(*rgb.size, crop)
    if box != (0, 0, *rgb.size):
        rgb = rgb.crop(box)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def to_model_input(batch: torch.Tensor, flip: bool,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float32 in [-1, 1], each image flipped left-right with p=0.5.

    ``generator`` (on the batch's device, or CPU) makes the flips reproducible.
    """
    if batch.dtype != torch.uint8 or batch.ndim != 4:
        raise ValueError(f"expected a uint8 batch [B, 3, S, S], got {batch.dtype} "
                         f"{list(batch.shape)}")
    if flip:  # on uint8: a quarter of the memory traffic of flipping floats
        device = generator.device if generator is not None else batch.device
        mask = torch.rand(batch.shape[0], generator=generator, device=device) < 0.5
        batch = torch.where(mask.to(batch.device)[:, None, None, None], batch.flip(-1), batch)
    return batch.float().div_(127.5).sub_(1.0)
