"""ResNet trunks (SNGAN-projection / BigGAN style) for 32, 64 and 128 px.

G (``ResNetGenerator``): [z | tag embedding] -> Linear -> 4x4 x (ch * 2**(n-1)),
then ``n`` residual up-blocks to the image size, BatchNorm -> ReLU -> 3x3 conv
-> tanh. Each up-block is cBN -> ReLU -> nearest 2x upsample -> 3x3 conv ->
cBN -> ReLU -> 3x3 conv, plus a 1x1-conv shortcut: upsampling before a 3x3
conv gives no checkerboard grain (Odena et al. 2016), unlike 4x4 stride-2
transposed convolutions. The upsample and the first conv run as one folded
transposed conv (``NearestConv2x``), and the shortcut's 1x1 conv runs before
its upsample (the same values, a quarter of the work). Channels halve on the
way up as in the DCGAN trunk, and never drop below ``ch``.

Conditional BatchNorm (de Vries et al. 2017; Miyato & Koyama 2018): the
normalised features are scaled by ``1 + gain(c)`` and shifted by ``bias(c)``,
two linear maps of the block's condition ``c`` (zero at init, so G starts as
plain BatchNorm). ``c`` is the tag embedding: one embedding vector per tag,
SUMMED over the tag groups (a bias-free linear map of the concatenated one-hots
is exactly that sum). Summing keeps one shared space whatever the number of
groups, costs nothing per extra group, and an untagged group (all zeros) simply
adds nothing; concatenating would give each group its own slice and make the
width grow with the number of groups. With ``hier_z`` (BigGAN) z is split into
``n + 1`` chunks: the first feeds the linear layer, chunk ``i`` joins ``c`` in
block ``i``'s BatchNorms, so noise acts at every scale.

D (``ResNetEncoder``): residual down-blocks (ReLU -> 3x3 conv -> ReLU -> 3x3
conv -> 2x2 average pool, 1x1-conv shortcut; the first block skips the leading
ReLU and pools its shortcut first, as SNGAN) from the image to 4x4 features
with ``ch * 2**(n-1)`` channels, spectral norm on every conv when
``spectral_norm`` is on, then ReLU. The conditioning heads of
``conditional.py`` (projection, ACGAN, none, ...) sit on those 4x4 features
as on the DCGAN trunk's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from trainer.models.dcgan import n_stride2
from trainer.models.layers import NearestConv2x, maybe_sn, nearest2x


def _init(module: nn.Module) -> None:
    """Xavier-uniform convs and linears, zero biases (SNGAN / BigGAN PyTorch ports).

    Spectral-normalised layers are skipped: ``maybe_sn`` initialised them before wrapping.
    """
    if parametrize.is_parametrized(module):
        return
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d whose gain and bias are linear in a condition vector (plain BN if cond_dim=0)."""

    def __init__(self, ch: int, cond_dim: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, affine=cond_dim == 0)
        self.gain = nn.Linear(cond_dim, ch, bias=False) if cond_dim else None
        self.bias = nn.Linear(cond_dim, ch, bias=False) if cond_dim else None
        if cond_dim:
            nn.init.zeros_(self.gain.weight)
            nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = self.bn(x)  # [B, C, H, W]
        if self.gain is None or c is None:
            return h
        c = c.to(h.dtype)
        return h * (1 + self.gain(c))[:, :, None, None] + self.bias(c)[:, :, None, None]


class UpBlock(nn.Module):
    """[B, c_in, h, w] -> [B, c_out, 2h, 2w]: cBN-ReLU-up-conv3, cBN-ReLU-conv3, + up-conv1."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, cond_dim)
        self.conv1 = NearestConv2x(c_in, c_out, bias=True)  # nearest 2x, then this 3x3 conv
        self.bn2 = ConditionalBatchNorm2d(c_out, cond_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, 1, 0)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.relu(self.bn1(x, c)))  # upsamples
        h = self.conv2(F.relu(self.bn2(h, c)))
        return h + nearest2x(self.skip(x))  # a 1x1 conv commutes with nearest upsampling


class ResNetGenerator(nn.Module):
    """(z [B, z_dim], c [B, cond_dim] | None) -> image [B, 3, S, S] in [-1, 1]."""

    conditional_norm = True  # Generator passes the tag embedding separately, not joined to z

    def __init__(
        self,
        z_dim: int,
        cond_dim: int,  # width of the tag embedding (0: unconditional)
        image_size: int,  # 32, 64 or 128 (n = log2(S) - 2 up-blocks)
        ch: int = 32,  # channels at full resolution; 4x4 has ch * 2**(n-1)
        hier_z: bool = False,  # split z over the linear layer and every block (BigGAN)
    ):
        super().__init__()
        n = n_stride2(image_size)
        if image_size > 128:
            raise ValueError(f"image size {image_size}: the resnet trunk supports 32, 64, 128 px")
        self.n, self.hier_z, self.z_dim = n, hier_z, z_dim
        # z chunks: [linear, block 1, ..., block n]; the first takes the remainder
        self.chunk = z_dim // (n + 1) if hier_z else 0
        if hier_z and self.chunk < 1:
            raise ValueError(f"model.hier_z needs z_dim >= {n + 1} (one chunk per block), "
                             f"got {z_dim}")
        first = z_dim - n * self.chunk
        block_cond = cond_dim + self.chunk
        c = ch * 2 ** (n - 1)  # channels at 4x4
        self.base_ch = c
        self.linear = nn.Linear(first + (0 if hier_z else cond_dim), c * 16)  # [B, c*4*4]
        blocks = []
        for _ in range(n):
            blocks.append(UpBlock(c, max(c // 2, ch), block_cond))
            c = max(c // 2, ch)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(True),
                                 nn.Conv2d(c, 3, 3, 1, 1), nn.Tanh())  # [B, 3, S, S]
        self.apply(_init)
        for b in self.blocks:  # keep cBN's zero init (apply re-initialised its linears)
            for bn in (b.bn1, b.bn2):
                if bn.gain is not None:
                    nn.init.zeros_(bn.gain.weight)
                    nn.init.zeros_(bn.bias.weight)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if self.hier_z:
            zs = list(z.split([z.shape[1] - self.n * self.chunk] + [self.chunk] * self.n, dim=1))
            h = self.linear(zs[0])
            conds = [zs[i + 1] if c is None else torch.cat([c.to(z.dtype), zs[i + 1]], dim=1)
                     for i in range(self.n)]
        else:
            h = self.linear(z if c is None else torch.cat([z, c.to(z.dtype)], dim=1))
            conds = [c] * self.n
        h = h.reshape(z.shape[0], self.base_ch, 4, 4)  # [B, c, 4, 4]
        for block, cond in zip(self.blocks, conds, strict=True):
            h = block(h, cond)
        return self.out(h)


class DownBlock(nn.Module):
    """[B, c_in, h, w] -> [B, c_out, h/2, w/2]: (ReLU)-conv3-ReLU-conv3-avgpool, + conv1 shortcut."""

    def __init__(self, c_in: int, c_out: int, first: bool, sn: bool, bn: bool):
        super().__init__()
        self.first = first  # the image block: no leading ReLU, shortcut pools first
        self.conv1 = maybe_sn(nn.Conv2d(c_in, c_out, 3, 1, 1), sn)
        self.conv2 = maybe_sn(nn.Conv2d(c_out, c_out, 3, 1, 1), sn)
        self.skip = maybe_sn(nn.Conv2d(c_in, c_out, 1, 1, 0), sn)
        self.bn1 = nn.BatchNorm2d(c_out) if bn and not first else nn.Identity()
        self.bn2 = nn.BatchNorm2d(c_out) if bn and not first else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h)))))
        h = F.avg_pool2d(h, 2)
        s = self.skip(F.avg_pool2d(x, 2)) if self.first else F.avg_pool2d(self.skip(x), 2)
        return h + s


class ResNetEncoder(nn.Module):
    """[B, 3, S, S] -> ReLU'd features [B, out_ch, 4, 4] (the conditioning heads come after)."""

    bias = True  # the heads' final 4x4 conv has a bias (SNGAN's linear has one)

    def __init__(
        self,
        image_size: int,
        ch: int = 32,  # channels of the first block; doubles every block
        bn: bool = False,  # BatchNorm in blocks 2..n (SNGAN has none; spectral norm instead)
        dropout: float = 0.0,  # dropout after every block
        sn: bool = True,  # spectral norm on every conv
    ):
        super().__init__()
        n = n_stride2(image_size)
        if image_size > 128:
            raise ValueError(f"image size {image_size}: the resnet trunk supports 32, 64, 128 px")
        layers: list[nn.Module] = []
        c_in, c = 3, ch
        for i in range(n):  # S -> 4
            layers.append(DownBlock(c_in, c, first=i == 0, sn=sn, bn=bn))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            c_in, c = c, c * 2
        self.main = nn.Sequential(*layers)
        self.out_ch = c_in  # ch * 2**(n-1)
        self.apply(_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.main(x))  # [B, out_ch, 4, 4]
