"""StarGAN generator and discriminator, as the official code (yunjey/stargan, model.py).

G: image + spatially replicated target-domain vector -> 7x7 conv, two stride-2
downsamplings, ``repeat_num`` residual blocks, two stride-2 transposed
upsamplings (``upsample="nearest"``: nearest 2x + 3x3 conv instead, an option), 7x7
conv + Tanh. InstanceNorm2d(affine=True,
track_running_stats=True) after every conv but the last; no conv bias.
D: PatchGAN of ``d_repeat_num`` stride-2 4x4 convs with LeakyReLU(0.01), a 3x3
real/fake head and a domain-classification head whose kernel covers the whole
last feature map (image_size / 2**d_repeat_num).

Which InstanceNorm statistics inference uses is a setting of the generator
(``StarGANConfig.norm_stats``, ``set_inference_norm``): see ``InstanceNorm2d``.

``g_output="attention"`` (an option; the official output is ``"image"``) ends G
as GANimation (Pumarola et al. 2018) does: a colour head C (7x7 conv + Tanh)
and an attention head A (7x7 conv + Sigmoid), output ``A * input + (1 - A) * C``.
A starts near 1 (its bias is ``ATTENTION_INIT_BIAS``), so an untrained G is
close to the identity and training only has to learn what to change: on flat
cartoon art that is the difference between minutes and hours.

``condition="difference"`` (an option; the official G is told the target domains)
feeds G the change asked for, target minus source, as STGAN (Liu et al. 2019)
does: a hair-colour target then reads 0 on every other attribute, and G need not
re-derive from the image what to leave alone (docs/stargan.md).
The models know nothing of Accelerate, losses or the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tagvocab import G_CONDITIONS  # model.g_condition: what G is told of the domains
from trainer.config import ConfigError, TrainConfig
from trainer.models.layers import NearestConv2x

NORM_STATS = ("running", "instance")
G_OUTPUTS = ("image", "attention")
G_UPSAMPLE = ("transposed", "nearest")  # model.g_upsample for StarGAN's G
ATTENTION_INIT_BIAS = 2.0  # sigmoid(2) = 0.88: an untrained attention G keeps 88% of its input


@dataclass
class StarGANConfig:
    image_size: int = 128  # square input/output resolution
    n_domains: int = 5  # length of the domain vector (c_dim)
    g_conv_dim: int = 64  # G width after the first conv (doubles twice in the bottleneck)
    d_conv_dim: int = 64  # D width after the first conv (doubles every stride-2 conv)
    repeat_num: int = 6  # residual blocks in G
    d_repeat_num: int = 6  # stride-2 convs in D
    norm_stats: str = "running"  # InstanceNorm statistics in eval mode: running | instance
    g_output: str = "image"  # G's last layer: image (official) | attention (GANimation)
    upsample: str = "transposed"  # G's 2x layers: transposed (official, 4x4) | nearest (+ 3x3)
    condition: str = "target"  # G's domain input: target (official) | difference (STGAN)

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, n_domains: int) -> StarGANConfig:
        m = cfg.model
        return cls(image_size=cfg.data.size, n_domains=n_domains, g_conv_dim=m.g_ch,
                   d_conv_dim=m.d_ch, repeat_num=m.repeat_num, d_repeat_num=m.d_repeat_num,
                   norm_stats=m.norm_stats, g_output=m.g_output, upsample=m.g_upsample,
                   condition=m.g_condition)

    def validate(self, net: str = "GD") -> None:
        """Raise ConfigError naming the config key of a value ``net`` (G, D or both) cannot use."""
        if self.n_domains < 1:
            raise ConfigError(f"StarGAN needs at least one domain (data.attrs), got "
                              f"{self.n_domains}")
        if self.repeat_num < 0:
            raise ConfigError(f"model.repeat_num={self.repeat_num}: must be >= 0")
        if "D" in net and self.d_repeat_num < 1:
            raise ConfigError(f"model.d_repeat_num={self.d_repeat_num}: must be >= 1")
        if self.image_size % 4:
            raise ConfigError(f"data.size={self.image_size}: StarGAN G needs a multiple of 4")
        if "D" in net and self.image_size % 2 ** self.d_repeat_num:
            raise ConfigError(f"model.d_repeat_num={self.d_repeat_num}: data.size="
                              f"{self.image_size} is not divisible by 2**{self.d_repeat_num}; "
                              f"use d_repeat_num <= {_max_halvings(self.image_size)}")
        if self.norm_stats not in NORM_STATS:
            raise ConfigError(f"model.norm_stats={self.norm_stats!r}: expected one of "
                              f"{', '.join(NORM_STATS)}")
        if self.g_output not in G_OUTPUTS:
            raise ConfigError(f"model.g_output={self.g_output!r}: expected one of "
                              f"{', '.join(G_OUTPUTS)}")
        if "G" in net and self.condition not in G_CONDITIONS:
            raise ConfigError(f"model.g_condition={self.condition!r}: expected one of "
                              f"{', '.join(G_CONDITIONS)}")
        if "G" in net and self.upsample not in G_UPSAMPLE:
            raise ConfigError(f"model.g_upsample={self.upsample!r}: StarGAN's G takes one of "
                              f"{', '.join(G_UPSAMPLE)}")


def _max_halvings(size: int) -> int:
    n = 0
    while size % 2 == 0:
        size //= 2
        n += 1
    return n


class InstanceNorm2d(nn.InstanceNorm2d):
    """InstanceNorm2d(affine=True, track_running_stats=True) with a choice of eval statistics.

    Training always normalises each image by its own statistics and updates the
    running averages, exactly as the official model. In eval mode:

    - ``"running"``: the running averages (PyTorch's eval behaviour). Exports
      to ONNX as BatchNormalization.
    - ``"instance"``: each image's own statistics, as the official test does
      (it never calls ``.eval()``), without touching the running averages.
      Exports to ONNX as InstanceNormalization.

    The state dict is the same as ``nn.InstanceNorm2d``'s either way.
    """

    def __init__(self, num_features: int, inference_stats: str = "running") -> None:
        super().__init__(num_features, affine=True, track_running_stats=True)
        self.inference_stats = inference_stats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.inference_stats == "running":
            return super().forward(x)
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class ResidualBlock(nn.Module):
    """conv3x3-IN-ReLU-conv3x3-IN plus identity."""

    def __init__(self, dim: int, norm_stats: str) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False),
            InstanceNorm2d(dim, norm_stats),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False),
            InstanceNorm2d(dim, norm_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class StarGANGenerator(nn.Module):
    """G(image [B,3,S,S] in [-1,1], domains [B,K], source [B,K] | None) -> image [B,3,S,S].

    ``g_output="image"``: the official layout, ``main`` ends in 7x7 conv + Tanh.
    ``g_output="attention"``: ``main`` ends at the last upsampling; heads
    ``color`` and ``attention`` blend a new image with the input.
    ``upsample="nearest"``: each 4x4 stride-2 transposed conv becomes a nearest 2x
    upsample and a 3x3 conv (``NearestConv2x``, at the transposed conv's cost), whose
    every output pixel has the same total weight: no checkerboard dots in what G paints.
    The layer keeps its name and index, so only the kernel's shape differs.
    """

    def __init__(self, cfg: StarGANConfig) -> None:
        super().__init__()
        cfg.validate("G")
        self.cfg = cfg
        ns, d = cfg.norm_stats, cfg.g_conv_dim
        layers: list[nn.Module] = [
            nn.Conv2d(3 + cfg.n_domains, d, kernel_size=7, stride=1, padding=3, bias=False),
            InstanceNorm2d(d, ns),
            nn.ReLU(inplace=True),
        ]  # [B, d, S, S]
        for _ in range(2):  # -> [B, 2d, S/2, S/2] -> [B, 4d, S/4, S/4]
            layers += [nn.Conv2d(d, d * 2, kernel_size=4, stride=2, padding=1, bias=False),
                       InstanceNorm2d(d * 2, ns),
                       nn.ReLU(inplace=True)]
            d *= 2
        layers += [ResidualBlock(d, ns) for _ in range(cfg.repeat_num)]  # [B, 4d, S/4, S/4]
        for _ in range(2):  # -> [B, 2d, S/2, S/2] -> [B, d, S, S]
            up = (NearestConv2x(d, d // 2) if cfg.upsample == "nearest" else
                  nn.ConvTranspose2d(d, d // 2, kernel_size=4, stride=2, padding=1, bias=False))
            layers += [up,
                       InstanceNorm2d(d // 2, ns),
                       nn.ReLU(inplace=True)]
            d //= 2
        if cfg.g_output == "image":
            layers += [nn.Conv2d(d, 3, kernel_size=7, stride=1, padding=3, bias=False),
                       nn.Tanh()]  # [B, 3, S, S]
        else:
            self.color = nn.Sequential(  # [B, 3, S, S]
                nn.Conv2d(d, 3, kernel_size=7, stride=1, padding=3, bias=False), nn.Tanh())
            self.attention = nn.Sequential(  # [B, 1, S, S]: weight of the input pixel
                nn.Conv2d(d, 1, kernel_size=7, stride=1, padding=3), nn.Sigmoid())
            nn.init.constant_(self.attention[0].bias, ATTENTION_INIT_BIAS)
        self.main = nn.Sequential(*layers)

    @property
    def norm_stats(self) -> str:
        return self.cfg.norm_stats

    def set_inference_norm(self, mode: str) -> StarGANGenerator:
        """Choose the InstanceNorm statistics used in eval mode: "running" or "instance"."""
        if mode not in NORM_STATS:
            raise ValueError(f"norm_stats {mode!r}: expected one of {', '.join(NORM_STATS)}")
        self.cfg.norm_stats = mode
        for m in self.modules():
            if isinstance(m, InstanceNorm2d):
                m.inference_stats = mode
        return self

    def forward(self, image: torch.Tensor, domains: torch.Tensor,
                source: torch.Tensor | None = None, with_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """The translation of ``image`` to the target ``domains``; with ``with_attention``
        also the attention [B,1,S,S] (None for the official output). ``source``: the
        image's own domains, which ``condition="difference"`` needs (G is then fed
        ``domains - source``) and ``"target"`` ignores. Keywords pass through DDP."""
        k = self.cfg.n_domains
        for name, v in (("domain", domains), ("source", source)):
            if v is not None and (v.dim() != 2 or v.shape[1] != k):
                raise ValueError(f"{name} vector has shape {tuple(v.shape)}, expected [B, {k}]")
        if self.cfg.condition == "difference":
            if source is None:
                raise ValueError("model.g_condition=difference: G needs the source domains "
                                 "(the image's own attributes) as well as the target")
            domains = domains.to(image.dtype) - source.to(image.dtype)
        c = domains.to(image.dtype)[:, :, None, None].expand(-1, -1, *image.shape[2:])
        h = self.main(torch.cat([image, c], dim=1))
        a = None
        if self.cfg.g_output == "attention":
            a = self.attention(h)
            h = a * image + (1 - a) * self.color(h)
        return (h, a) if with_attention else h


class StarGANDiscriminator(nn.Module):
    """D(image [B,3,S,S]) -> (src [B,1,S/2^n,S/2^n] PatchGAN scores, cls [B,K] logits)."""

    def __init__(self, cfg: StarGANConfig) -> None:
        super().__init__()
        cfg.validate("D")
        self.cfg = cfg
        d = cfg.d_conv_dim
        layers: list[nn.Module] = [nn.Conv2d(3, d, kernel_size=4, stride=2, padding=1),
                                   nn.LeakyReLU(0.01)]  # [B, d, S/2, S/2]
        for _ in range(1, cfg.d_repeat_num):  # each: channels x2, size /2
            layers += [nn.Conv2d(d, d * 2, kernel_size=4, stride=2, padding=1),
                       nn.LeakyReLU(0.01)]
            d *= 2
        self.main = nn.Sequential(*layers)  # [B, d * 2^(n-1), S/2^n, S/2^n]
        kernel = cfg.image_size // 2 ** cfg.d_repeat_num
        # Official names (conv1, conv2), so official checkpoints load as they are.
        self.conv1 = nn.Conv2d(d, 1, kernel_size=3, stride=1, padding=1, bias=False)  # src
        self.conv2 = nn.Conv2d(d, cfg.n_domains, kernel_size=kernel, bias=False)  # cls, 1x1
        self.augment: nn.Module | None = None  # trainer.augment, set by the model zoo

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.augment is not None and self.training:
            image = self.augment(image)
        h = self.main(image)
        return self.conv1(h), self.conv2(h).flatten(1)


def build_stargan_generator(cfg: TrainConfig, n_domains: int) -> StarGANGenerator:
    """The generator for ``cfg`` (model.g_ch, repeat_num, norm_stats, g_output, g_upsample;
    data.size)."""
    return StarGANGenerator(StarGANConfig.from_train_config(cfg, n_domains))


def build_stargan_discriminator(cfg: TrainConfig, n_domains: int) -> StarGANDiscriminator:
    """The discriminator for ``cfg`` (model.d_ch, model.d_repeat_num, data.size)."""
    return StarGANDiscriminator(StarGANConfig.from_train_config(cfg, n_domains))
