"""Differentiable augmentation of every image the discriminator sees (DiffAugment / ADA).

With a few thousand training images D memorises them: its logits on reals climb
while G's loss rises, and G's samples keep a grain D has learnt to punish. Zhao
et al. 2020 (DiffAugment) augment real AND fake images with the same random,
differentiable transforms, so D cannot memorise exact pixels and G still gets
gradients through the transform; Karras et al. 2020 (ADA) apply each transform
with probability ``p`` and adjust ``p`` so that D's overfitting heuristic
``r_t = E[sign(D(real))]`` stays at a target.

``Augment`` is an ``nn.Module`` that a discriminator runs first in its forward
while training (``model.augment``), so every phase of every recipe (real and
fake, the gradient penalty and R1 too) sees augmented images without a branch
in the loop. ``p`` and the statistics of the interval in progress are buffers:
they travel with D's weights in checkpoints, so a resumed run adjusts ``p`` at the
same steps and by the same amounts as an uninterrupted one. Each process draws its
own transform parameters from its own random stream; ``p`` stays identical on every
process because the ``r_t`` statistics are summed over processes as they are
collected.

Ops (Zhao et al.'s reference implementation, on images in [-1, 1]):
``color`` (brightness, saturation, contrast), ``translation`` (up to 1/8 of
the size, zero padded), ``cutout`` (a zeroed square of half the size).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from trainer.collectives import process_sum

Op = Callable[[torch.Tensor], torch.Tensor]


def _rand(x: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, dtype=x.dtype, device=x.device)


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add one offset in [-0.5, 0.5) per image."""
    return x + (_rand(x, 1, 1, 1) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance to the per-pixel grey by a factor in [0, 2) per image."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance to the image mean by a factor in [0.5, 1.5) per image."""
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1) + 0.5) + mean


def color(x: torch.Tensor) -> torch.Tensor:
    return contrast(saturation(brightness(x)))


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size in x and y; vacated pixels become 0."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gy, gx = torch.meshgrid(torch.arange(b, device=x.device),
                                torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gy = (gy + ty + 1).clamp(0, h + 1)  # index into the 1-pixel zero padding
    gx = (gx + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])  # [B, C, H+2, W+2]
    return padded.permute(0, 2, 3, 1)[gb, gy, gx].permute(0, 3, 1, 2)  # [B, C, H, W]


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of ``ratio`` times the size per image, at a random place."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    dy = torch.arange(h, device=x.device)[None, :, None] - oy + ch // 2  # [B, H, 1]
    dx = torch.arange(w, device=x.device)[None, None, :] - ox + cw // 2  # [B, 1, W]
    inside = (dy >= 0) & (dy < ch) & (dx >= 0) & (dx < cw)  # [B, H, W]
    return x * (~inside).to(x.dtype)[:, None]


OPS: dict[str, Op] = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> list[str]:
    """``"color,translation,cutout"`` -> its op names, checked; ``""`` -> []."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    for n in names:
        if n not in OPS:
            raise ValueError(f"aug.policy: unknown op {n!r}; expected a comma-separated list of "
                             f"{', '.join(OPS)}")
    return names


class Augment(nn.Module):
    """Apply the policy's ops, each to a random share ``p`` of the batch (``p = 1``: DiffAugment).

    With ``target > 0`` (ADA), ``observe`` collects sign(D(real)) and every ``interval``
    calls moves ``p`` by ``images / (kimg * 1000)`` towards keeping E[sign] at ``target``.
    """

    def __init__(self, policy: list[str], p: float = 1.0, target: float = 0.0,
                 interval: int = 4, kimg: float = 50.0):
        super().__init__()
        self.names = list(policy)
        self.target = float(target)  # 0: p stays fixed
        self.interval = int(interval)  # D steps between adjustments
        self.kimg = float(kimg)  # thousands of images for p to move by 1
        self.register_buffer("p", torch.tensor(0.0 if target > 0 else float(p)))
        # the interval in progress, summed over processes: sum of signs, images, calls
        self.register_buffer("ada_stats", torch.zeros(3))  # float32: exact counts, any device
        # host copies of p and of the call count, so that a step reads neither from the
        # device (a GPU sync per D forward); refreshed when p moves and when a state loads
        self._p, self._calls = float(self.p), 0

    def extra_repr(self) -> str:
        return f"policy={','.join(self.names)}, target={self.target}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self._p
        if p <= 0:
            return x
        for name in self.names:
            y = OPS[name](x)
            if p < 1:  # each image keeps its original with probability 1 - p
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) >= p
                y = torch.where(keep, x, y)
            x = y
        return x

    @torch.no_grad()
    def observe(self, real_scores: torch.Tensor) -> None:
        """Record D's logits on real images; adjust ``p`` every ``interval`` calls (ADA only)."""
        if self.target <= 0:
            return
        s = real_scores.detach().float().flatten()
        batch = torch.stack([s.sign().sum(), torch.tensor(float(s.numel()), device=s.device)])
        stats = self.ada_stats
        stats[:2] += process_sum(batch.to(stats))  # every process holds the same sums
        stats[2] += 1  # kept on the device too, so a checkpoint resumes mid-interval
        self._calls += 1
        if self._calls % self.interval:
            return
        rt = float(stats[0] / stats[1].clamp(min=1))  # one sync per interval
        step = float(stats[1]) / (self.kimg * 1000)
        self._p = min(max(self._p + (step if rt > self.target else -step), 0.0), 1.0)
        self.p.fill_(self._p)
        stats.zero_()

    @property
    def rt(self) -> float:
        """The overfitting heuristic over the current interval so far (0 before any call)."""
        return float(self.ada_stats[0] / self.ada_stats[1].clamp(min=1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before ``ada_stats`` existed load with an empty interval."""
        state_dict.setdefault(prefix + "ada_stats", torch.zeros(3))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._p, self._calls = float(self.p), int(self.ada_stats[2])


def build_augment(policy: str, p: float = 1.0, target: float = 0.0, interval: int = 4,
                  kimg: float = 50.0) -> Augment | None:
    """An ``Augment`` for a non-empty policy, else None (no augmentation, no buffer in D)."""
    names = parse_policy(policy)
    return Augment(names, p, target, interval, kimg) if names else None


def augment_of(D: nn.Module) -> Augment | None:
    """The ``Augment`` a (possibly wrapped) discriminator runs first, or None."""
    for m in D.modules():
        if isinstance(m, Augment):
            return m
    return None
