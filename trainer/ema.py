"""The EMA generator: an fp32 copy of G that follows its weights; samples and export use it."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``model``: an fp32, eval-mode, gradient-free copy of G, updated after each G step.

    The decay warms up as tf.train.ExponentialMovingAverage(num_updates) does,
    ``min(decay, (1 + t) / (10 + t))``, so early samples follow G; before ``start``
    it is a plain copy. Buffers (BatchNorm statistics) are copied as they are; before
    the copy is sampled or saved the loop measures them again on the averaged weights
    (trainer/standing_stats.py, ``ema_bn_batches``).
    """

    def __init__(self, G: nn.Module, decay: float, start: int = 0):
        self.model = copy.deepcopy(G).eval().float()
        self.model.requires_grad_(False)
        self.decay, self.start = decay, start

    def to(self, device: torch.device) -> EMA:
        self.model.to(device)
        return self

    def decay_at(self, step: int) -> float:
        """The decay used by the update after iteration ``step``."""
        return 0.0 if step < self.start else min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, src: nn.Module, step: int) -> None:
        """Move towards ``src`` (the bare G) by ``1 - decay_at(step)``."""
        ema_p = list(self.model.parameters())
        src_p = [p.detach().to(e.dtype) for p, e in zip(src.parameters(), ema_p, strict=True)]
        torch._foreach_lerp_(ema_p, src_p, 1.0 - self.decay_at(step))
        for e, b in zip(self.model.buffers(), src.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """fp32 CPU tensors, as ``g_ema.safetensors`` stores them."""
        return {k: v.detach().float().cpu().contiguous()
                for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
