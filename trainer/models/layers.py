"""Small building blocks shared by the GAN models: init, spectral norm, minibatch std, DOutput."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

INIT_STD = 0.02  # DCGAN (Radford et al.): every weight from N(0, 0.02)


class DOutput(NamedTuple):
    """What every DCGAN-family discriminator returns."""

    score: torch.Tensor  # [B] real/fake logit (no sigmoid; losses work on logits)
    aux: list[torch.Tensor] | None  # ACGAN: one [B, n_g] logit tensor per tag group, else None
    features: torch.Tensor  # [B, F] flattened last conv features (feature matching)
    score_wrong: torch.Tensor | None = None  # [B] scores of the same images under ``wrong_tags``

    def split(self, n: int) -> tuple[DOutput, DOutput]:
        """The first ``n`` rows and the rest, of every field (None stays None)."""
        def cut(t, rows: slice):
            if t is None:
                return None
            return [x[rows] for x in t] if isinstance(t, list) else t[rows]
        head, tail = slice(None, n), slice(n, None)
        return DOutput(*(cut(f, head) for f in self)), DOutput(*(cut(f, tail) for f in self))


def dcgan_init(module: nn.Module) -> None:
    """DCGAN initialisation, for ``model.apply``: as pytorch/examples ``weights_init``.

    Conv / ConvTranspose / Linear weights ~ N(0, 0.02), biases 0; BatchNorm
    weights ~ N(1, 0.02), biases 0. (pytorch/examples leaves Linear at its
    default; the reports' Linear layers are tag projections, initialised the same way here.)
    Modules already under spectral norm are skipped: ``maybe_sn`` initialises
    before wrapping, so the power-iteration vectors match the weight.
    """
    if parametrize.is_parametrized(module):
        return
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, INIT_STD)
        nn.init.zeros_(module.bias)


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Wrap a Conv/Linear in spectral normalisation (Miyato et al. 2018) when enabled.

    Uses the parametrization API: the weight is recomputed from
    ``parametrizations.weight.original`` on each forward, with one power
    iteration in training mode. The power iteration depends on the weight
    only, so replicas with equal weights stay equal under DDP.
    """
    if not enabled:
        return module
    dcgan_init(module)
    return spectral_norm(module)


# model.d_norm -> the normalisation after D's blocks 2..n (with model.d_bn)
D_NORMS = ("batch", "layer", "group")


def norm2d(kind: str, channels: int) -> nn.Module:
    """D's feature normalisation: BatchNorm (DCGAN) or a per-image GroupNorm.

    BatchNorm over a batch of fakes alone removes whatever all of them share
    (a too-bright background, the same grain everywhere) before D's head can
    see it; ``layer`` (GroupNorm with one group) and ``group`` (groups of 16
    channels) normalise each image on its own, so such a shift stays visible.
    On the avatars ``layer`` lost to BatchNorm (docs/cgan_avatars.md, row Q4).
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "group":
        return nn.GroupNorm(max(1, channels // 16), channels)
    raise ValueError(f"model.d_norm={kind!r}: expected one of {', '.join(D_NORMS)}")


class MinibatchStd(nn.Module):
    """Append the mean standard deviation over groups of samples as one extra channel.

    ProGAN/StyleGAN: D sees how varied a small group of its inputs is, so a
    generator that draws the same image for every z is easy to spot. The
    group is the largest divisor of the batch that is <= ``group_size``;
    groups are contiguous runs of samples.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, C+1, H, W]
        b, _, h, w = x.shape
        g = next(k for k in range(min(self.group_size, b), 0, -1) if b % k == 0)
        y = x.float().reshape(b // g, g, -1)  # [n, g, C*H*W]
        # by hand: Tensor.var over this strided dim is several times slower on CPU
        d = y - y.mean(dim=1, keepdim=True)
        std = (d.square().mean(dim=1) + self.eps).sqrt()  # [n, C*H*W]
        stat = std.mean(dim=1).to(x.dtype)  # [n]
        stat = stat.repeat_interleave(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
        return torch.cat([x, stat], dim=1)


def nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour 2x upsampling by expand + reshape: [B, C, H, W] -> [B, C, 2H, 2W].

    The same values as ``F.interpolate(x, scale_factor=2, mode="nearest")``, but
    exported without ONNX's Resize, whose float ``scales`` input the float16
    converter breaks (``export --fp16``).
    """
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def bilinear2x(x: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x upsampling by weighted neighbours: [B, C, H, W] -> [B, C, 2H, 2W].

    The same values as ``F.interpolate(x, scale_factor=2, mode="bilinear",
    align_corners=False)`` (each output pixel 3/4 of its nearest input and 1/4 of
    the next one, edges replicated), built from slices, concatenations and reshapes
    so that the export has no Resize either (see ``nearest2x``).
    """
    def up(t: torch.Tensor, dim: int) -> torch.Tensor:  # double one spatial axis
        n = t.shape[dim]
        prev = torch.cat([t.narrow(dim, 0, 1), t.narrow(dim, 0, n - 1)], dim)
        nxt = torch.cat([t.narrow(dim, 1, n - 1), t.narrow(dim, n - 1, 1)], dim)
        even, odd = 0.75 * t + 0.25 * prev, 0.75 * t + 0.25 * nxt
        shape = list(t.shape)
        shape[dim] = 2 * n
        return torch.stack([even, odd], dim + 1).reshape(shape)

    return up(up(x, 2), 3)


def _fold_nearest(w: torch.Tensor, dim: int) -> torch.Tensor:
    """Taps [w0, w1, w2] of a 3x3 kernel along ``dim`` -> [w2, w1 + w2, w0 + w1, w0].

    Along one axis, a 3-tap convolution of a nearest-2x-upsampled signal reads
    each output pixel from two input pixels: even outputs 2m take w0 from m - 1
    and w1 + w2 from m, odd outputs 2m + 1 take w0 + w1 from m and w2 from m + 1.
    That is a 4-tap, stride-2, padding-1 transposed convolution with these taps.
    Additions only, so autocast leaves the fold in the weight's precision.
    """
    w0, w1, w2 = w.unbind(dim)
    return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)


class NearestConv2x(nn.Conv2d):
    """Nearest 2x upsampling then this 3x3 conv (stride 1, padding 1), in one op.

    Computed as the equal 4x4 stride-2 transposed conv on the small input, its
    kernel folded from the 3x3 weight on every call (``_fold_nearest``): the same
    function and parameters as ``nearest2x`` then ``nn.Conv2d(c_in, c_out, 3, 1, 1)``,
    at 16/36 of the multiply-adds and without the upsampled copy, whose backward
    (a sum over the expanded pixels) cost more than the convolution on a CPU.
    Checkerboard-free like the two-layer form: the folded kernel gives every
    output pixel the same total weight. Exports as one ConvTranspose.
    """

    def __init__(self, c_in: int, c_out: int, bias: bool = False):
        super().__init__(c_in, c_out, 3, 1, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = _fold_nearest(_fold_nearest(self.weight, 2), 3)  # [out, in, 4, 4]
        return F.conv_transpose2d(x, k.transpose(0, 1), self.bias, stride=2, padding=1)


class Bilinear2x(nn.Module):
    """``bilinear2x`` as a layer, for ``nn.Sequential`` trunks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bilinear2x(x)


# model.g_palette_pick -> how PaletteOutput turns K logits per pixel into colour weights
PALETTE_PICKS = ("soft", "hard", "vote", "vote_lines", "mix_lines")
VOTE_CENTRE = {"vote": 1.0, "vote_lines": 5.0, "mix_lines": 5.0}  # weight of a pixel's own vote


def most_likely(scores: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """One-hot weights of the largest score along ``dim`` (an exact tie shares its weight).

    Written as max / equal / divide rather than argmax + one_hot, so that it exports
    to ONNX as plain ReduceMax and Equal nodes, in float16 too.
    """
    top = (scores == scores.amax(dim=dim, keepdim=True)).to(scores.dtype)
    return top / top.sum(dim=dim, keepdim=True)


def nearer_of_two(w: torch.Tensor, pal: torch.Tensor) -> torch.Tensor:
    """One-hot [B, K, S, S] weights: of each pixel's two most likely colours (softmax
    weights ``w``), the one nearer in RGB to the soft mix ``sum_k w_k pal_k``.

    ``pal``: [B, K, 3]. A generator that learnt on the softmax mix may paint a colour
    its palette lacks as a blend of two entries (a pastel background as white plus a
    darker tint, a light iris as white plus blue); the most likely entry alone then
    draws white patches or a wrong eye colour, the nearer of the two draws what the mix
    meant. Max, equal and matmul only, so it exports to ONNX as the other picks do.
    """
    flat = w.flatten(2)  # [B, K, pixels]
    first = most_likely(flat)
    second = most_likely(flat * (1 - first) - first)  # the runner-up (first pushed below 0)
    pal_t = pal.transpose(1, 2)  # [B, 3, K]
    mix = torch.matmul(pal_t, flat)  # [B, 3, S*S]
    d1 = (torch.matmul(pal_t, first) - mix).square().sum(1, keepdim=True)
    d2 = (torch.matmul(pal_t, second) - mix).square().sum(1, keepdim=True)
    take_first = (d1 <= d2).to(w.dtype)
    return (take_first * first + (1 - take_first) * second).reshape(w.shape)


def neighbourhood_votes(w: torch.Tensor, centre: float = 1.0) -> torch.Tensor:
    """[B, K, S, S] colour probabilities summed over each pixel's 3x3 neighbourhood, the
    pixel itself counted ``centre`` times (edges replicated).

    ``centre=1``: a plain 3x3 majority, which also outvotes a 1-pixel line drawn between
    two regions of one colour. ``centre=5`` against 8 neighbours still outvotes a lone
    pixel or a pair, while a confident 1-pixel line (the pixel and two neighbours on
    the line: 7 against 6) keeps its colour.
    """
    k = w.new_ones(3, 3)
    k[1, 1] = centre
    c = w.shape[1]
    return F.conv2d(F.pad(w, (1, 1, 1, 1), mode="replicate"), k.expand(c, 1, 3, 3), groups=c)


class PaletteOutput(nn.Module):
    """Paint each pixel from a per-image palette of K colours drawn from ``h``.

    Flat-colour art (the avatars: ~8 colours cover 87% of an image's pixels) has
    regions that are exactly one colour. A generator writing RGB directly must
    drive every pixel of such a region to the same value, and any residual
    noise shows as speckle; here a pixel is a convex mix of K colours drawn
    from ``h`` (the generator's input vector, so the colours follow z and the
    tags), and once a region's softmax is confident small changes in its
    logits no longer change its colour. Edges mix neighbouring colours, as
    anti-aliasing does. Output in [-1, 1] (tanh palette, convex weights).

    ``pick`` (``model.g_palette_pick``) says how a pixel's colour is chosen when the
    generator samples (eval mode: sample grids, evaluation, export, the demo);
    training always uses the softmax mix, whose gradient reaches every colour (with
    ``noise`` > 0, ``model.g_palette_noise``, of the logits plus Gumbel noise x ``noise``:
    a Gumbel-softmax, so a pixel that G leaves between two colours flickers between
    them in what D sees, instead of passing as a blend that sampling draws as a blotch):

    - ``soft``: the softmax mix.
    - ``hard``: the pixel's most likely colour, so a region is exactly one colour
      even where the softmax is not fully confident.
    - ``vote``: the colour most likely over the pixel's 3x3 neighbourhood (the
      probabilities summed over it, ``neighbourhood_votes``): ``hard`` without its
      stray pixels of another colour, and without the thin, faint outlines too.
    - ``vote_lines``: the same vote with the pixel itself counted 5 times: lone pixels
      and pairs go, confident 1-pixel lines stay.
    - ``mix_lines``: each pixel first takes whichever of its two most likely colours is
      nearer the soft mix (``nearer_of_two``), then the ``vote_lines`` vote runs over
      those one-hot picks. Where G blends two entries into a colour its palette lacks,
      the nearer one is what the blend meant: fewer white patches, truer eye colours.

    The faint mix that a soft pixel keeps, and a stray pixel, read as texture to
    Inception (real avatars with 2 levels of noise score FID ~100 against clean ones);
    the same checkpoint scores far lower drawn by a vote (docs/cgan_avatars.md,
    "Picking one colour per pixel").
    """

    GAIN = 10.0  # logits are scaled up so that a region can turn confident in a few steps

    def __init__(self, in_dim: int, k: int, hidden: int = 128, pick: str = "soft",
                 noise: float = 0.0):
        super().__init__()
        if pick not in PALETTE_PICKS:
            raise ValueError(f"model.g_palette_pick={pick!r}: expected one of "
                             f"{', '.join(PALETTE_PICKS)}")
        self.k = k
        self.pick = pick
        self.noise = noise  # model.g_palette_noise: Gumbel noise x this while training
        self.colours = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(True),
                                     nn.Linear(hidden, 3 * k), nn.Tanh())  # PyTorch's init:
        # distinct colours from the start (the generator applies dcgan_init before adding this)

    def weights(self, logits: torch.Tensor, pal: torch.Tensor) -> torch.Tensor:
        """[B, K, S, S] logits, [B, K, 3] palette -> [B, K, S, S] convex weights (see the
        class docstring; only ``mix_lines`` reads the palette)."""
        scores = self.GAIN * logits
        if self.training and self.noise > 0:  # Gumbel(0, 1) = -log(-log(U)), drawn in fp32
            u = torch.rand(scores.shape, device=scores.device).clamp_(1e-6, 1 - 1e-6)
            scores = scores.float() - self.noise * u.log().neg_().log_()
        w = scores.softmax(dim=1)
        if self.pick == "soft" or self.training:
            return w
        if self.pick == "hard":
            return most_likely(w)
        if self.pick == "mix_lines":
            w = nearer_of_two(w, pal)
        return most_likely(neighbourhood_votes(w, VOTE_CENTRE[self.pick]))

    def forward(self, logits: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """logits [B, K, S, S], h [B, in_dim] -> image [B, 3, S, S]."""
        pal = self.colours(h).reshape(h.shape[0], self.k, 3)  # [B, K, 3]
        b, k, s, _ = logits.shape
        w = self.weights(logits, pal).reshape(b, k, s * s)  # [B, K, S*S]
        # a plain MatMul (not einsum, no casts), which ONNX's float16 conversion handles
        return torch.matmul(pal.transpose(1, 2), w).reshape(b, 3, s, s)


def set_palette_pick(model: nn.Module, pick: str) -> int:
    """Sample ``model``'s palette output layers with ``pick`` from now on (evaluation of a
    run with another pick than it was configured with). Returns how many it changed."""
    if pick not in PALETTE_PICKS:
        raise ValueError(f"palette pick {pick!r}: expected one of {', '.join(PALETTE_PICKS)}")
    layers = [m for m in model.modules() if isinstance(m, PaletteOutput)]
    for m in layers:
        m.pick = pick
    return len(layers)
