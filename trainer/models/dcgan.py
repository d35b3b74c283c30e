"""DCGAN image trunks: vector -> image (G) and image -> 4x4 features (D).

Two families, each at 32/64/128/256 px (``n = log2(size) - 2`` stride-2 layers
between 4x4 and the image; channels halve on the way up and double on the way
down, so ``ch * 2**(n-1)`` channels live at 4x4: 512 at 64 px, 1024 at 128 px
as report 004):

- ``dcgan``: pytorch/examples ``dcgan/main.py``: 4x4 (transposed) convs,
  stride 2, padding 1, no bias, BatchNorm, ReLU / LeakyReLU(0.2), Tanh.
- ``ml2020``: the ML2020 HW11 baseline (report 003): G starts with
  Linear + BatchNorm1d to 4x4 x (ch*8), then 5x5 transposed convs with
  padding 2 and output_padding 1; D uses 5x5 convs with bias.

The real/fake head (and any tag conditioning) sits on the 4x4 features and
lives in ``conditional.py``. Nothing here knows about tags, losses or Accelerate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainer.models.layers import (
    Bilinear2x,
    NearestConv2x,
    PaletteOutput,
    bilinear2x,
    dcgan_init,
    maybe_sn,
    norm2d,
)


def n_stride2(image_size: int) -> int:
    """Stride-2 layers between 4x4 and ``image_size`` (a power of two >= 16)."""
    n = int(math.log2(image_size)) - 2 if image_size > 0 else 0
    if image_size < 16 or 4 * 2**n != image_size:
        raise ValueError(f"image size {image_size}: expected a power of two >= 16")
    return n


def _transposed(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]


def _resize_conv(c_in: int, c_out: int) -> list[nn.Module]:
    """Nearest 2x upsampling + 3x3 conv (Odena et al. 2016): no checkerboard pattern.

    Run as one folded transposed conv (``NearestConv2x``); the Identity keeps the
    parameter names of the two-layer form, so checkpoints saved with it still load.
    """
    return [nn.Identity(), NearestConv2x(c_in, c_out)]


def _conv_bilinear(c_in: int, c_out: int) -> list[nn.Module]:
    """3x3 conv at the lower resolution, then bilinear 2x: a quarter of the conv's FLOPs,
    and an output that cannot change from one pixel to the next (with a palette, no
    isolated pixels of another colour; written as RGB it is blurred)."""
    return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), Bilinear2x()]


# model.g_upsample -> how the DCGAN generator doubles the resolution: a pair
# (every layer but the last, the last layer, which writes the pixels)
UPSAMPLE = {
    "transposed": (_transposed, _transposed),
    "nearest": (_resize_conv, _resize_conv),
    "nearest_last": (_transposed, _resize_conv),  # no checkerboard in the pixels, ~same cost
    "bilinear_last": (_transposed, _conv_bilinear),  # smooth logits for the palette output
}


class DCGANGenerator(nn.Module):
    """pytorch/examples netG: [B, in_dim] -> [B, 3, S, S] in [-1, 1].

    ``upsample="nearest"`` replaces each 4x4 stride-2 transposed conv by a nearest
    2x upsample and a 3x3 conv (no checkerboard grain; run as a folded 4x4 transposed
    conv, ``NearestConv2x``, so at the transposed conv's cost).
    ``skip=True`` adds StyleGAN2's skip outputs: a 1x1 conv to RGB after every block
    below full size, each bilinearly upsampled and summed with the next, the last
    layer adding only the full-size detail. Colour and layout then come from the
    coarse, smooth outputs (3 x (channels + 1) parameters per scale: 1,452 at
    width 32 and 64 px).
    ``palette=K`` makes the last layer write K colour logits per pixel instead of
    RGB; ``PaletteOutput`` paints them from K colours drawn per image from ``h``
    (the flagship's output: flat regions stay flat, docs/cgan_avatars.md).
    """

    def __init__(self, in_dim: int, image_size: int, ch: int = 64, upsample: str = "transposed",
                 skip: bool = False, palette: int = 0, palette_pick: str = "soft",
                 palette_noise: float = 0.0):
        super().__init__()
        n = n_stride2(image_size)
        c = ch * 2 ** (n - 1)  # channels at 4x4
        if palette and skip:
            raise ValueError("model.g_palette and model.g_skip: choose one output layer")
        up, up_last = UPSAMPLE[upsample]  # (c_in, c_out) -> 2x upsampling layers
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(in_dim, c, 4, 1, 0, bias=False),  # [B, c, 4, 4]
            nn.BatchNorm2d(c),
            nn.ReLU(True),
        ]
        taps, rgb_ch = [len(layers) - 1], [c]  # block ends (4x4 .. S/2) and their channels
        for _ in range(n - 1):  # 4 -> S/2, halving channels
            layers += [*up(c, c // 2),  # [B, c/2, 2h, 2w]
                       nn.BatchNorm2d(c // 2),
                       nn.ReLU(True)]
            c //= 2
            taps.append(len(layers) - 1)
            rgb_ch.append(c)
        if palette:  # K colour logits per pixel, painted by PaletteOutput
            layers += [*up_last(c, palette)]  # [B, K, S, S]
        else:
            layers += [*up_last(c, 3), nn.Tanh()]  # [B, 3, S, S]
        self.main = nn.Sequential(*layers)
        self.palette = None
        self.taps = taps if skip else []
        self.to_rgb = nn.ModuleList(nn.Conv2d(k, 3, 1) for k in rgb_ch) if skip else None
        self.apply(dcgan_init)
        if palette:  # after dcgan_init: the colours keep their own initialisation
            self.palette = PaletteOutput(in_dim, palette, pick=palette_pick,
                                         noise=palette_noise)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, in_dim]
        x = h[:, :, None, None]  # as a [B, in_dim, 1, 1] image
        if self.palette is not None:
            return self.palette(self.main(x), h)
        if self.to_rgb is None:
            return self.main(x)
        rgb, t = None, 0
        for i, layer in enumerate(self.main[:-1]):  # all but the Tanh
            x = layer(x)
            if i in self.taps:  # [B, c, h, h] -> RGB at h, plus the coarser ones upsampled
                r = self.to_rgb[t](x)
                rgb = r if rgb is None else bilinear2x(rgb) + r
                t += 1
        return torch.tanh(bilinear2x(rgb) + x)  # x: the last layer's full-size detail [B, 3, S, S]


class ML2020Generator(nn.Module):
    """ML2020 HW11 baseline G (report 003): [B, in_dim] -> [B, 3, S, S] in [-1, 1]."""

    def __init__(self, in_dim: int, image_size: int, ch: int = 64, upsample: str = "transposed",
                 skip: bool = False, palette: int = 0, palette_pick: str = "soft",
                 palette_noise: float = 0.0):
        super().__init__()
        if skip or palette or palette_noise:
            raise ValueError("model.g_skip, model.g_palette: the ml2020 trunk writes RGB only "
                             "(use dcgan)")
        if upsample != "transposed":
            raise ValueError(f"model.g_upsample={upsample!r}: the ml2020 trunk has 5x5 "
                             f"transposed convs only")
        n = n_stride2(image_size)
        c = ch * 2 ** (n - 1)  # channels at 4x4 (dim * 8 at 64 px)
        self.base_ch = c
        self.l1 = nn.Sequential(
            nn.Linear(in_dim, c * 4 * 4, bias=False),  # [B, c*16]
            nn.BatchNorm1d(c * 4 * 4),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 5, 2, padding=2, output_padding=1,
                                          bias=False),  # [B, c/2, 2h, 2w]
                       nn.BatchNorm2d(c // 2),
                       nn.ReLU()]
            c //= 2
        layers += [nn.ConvTranspose2d(c, 3, 5, 2, padding=2, output_padding=1),  # [B, 3, S, S]
                   nn.Tanh()]
        self.l2_5 = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [B, in_dim]
        y = self.l1(h).reshape(h.shape[0], self.base_ch, 4, 4)  # [B, c, 4, 4]
        return self.l2_5(y)


class DCGANEncoder(nn.Module):
    """pytorch/examples netD without its last conv: [B, 3, S, S] -> [B, out_ch, 4, 4].

    BatchNorm on every block but the first (as DCGAN), dropout after every block.
    Without BatchNorm the convs get biases: a bias-free, norm-free D maps a flat
    grey image (all zeros) to exactly the score 0 whatever its weights, a blind
    spot G learns to fill with grey faces (docs/cgan_avatars.md, rows R5-R8).
    """

    kernel, padding, bias = 4, 1, False  # conv geometry; ML2020Encoder overrides

    def __init__(
        self,
        image_size: int,
        ch: int = 64,  # channels of the first conv; doubles every block
        bn: bool = True,  # BatchNorm2d after blocks 2..n (off for WGAN-GP)
        dropout: float = 0.0,  # dropout probability after every block (report 003)
        sn: bool = False,  # spectral norm on every conv
        norm: str = "batch",  # with bn: batch | layer | group (layers.norm2d)
    ):
        super().__init__()
        self.bias = type(self).bias or not bn  # the head's final conv follows (Discriminator)
        n = n_stride2(image_size)
        layers: list[nn.Module] = []
        c_in, c = 3, ch
        for i in range(n):  # S -> 4
            layers.append(maybe_sn(nn.Conv2d(c_in, c, self.kernel, 2, self.padding,
                                             bias=self.bias), sn))  # [B, c, h/2, w/2]
            if bn and i > 0:
                layers.append(norm2d(norm, c))
            layers.append(nn.LeakyReLU(0.2, True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in, c = c, c * 2
        self.main = nn.Sequential(*layers)
        self.out_ch = c_in  # ch * 2**(n-1)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, S, S] -> [B, out_ch, 4, 4]
        return self.main(x)


class ML2020Encoder(DCGANEncoder):
    """ML2020 HW11 baseline D body (report 003): 5x5 convs, stride 2, padding 2, with bias."""

    kernel, padding, bias = 5, 2, True
