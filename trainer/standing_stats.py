"""Standing statistics: re-estimate a generator's BatchNorm statistics for its own weights.

The EMA generator (trainer/ema.py) averages G's weights but can only copy G's
running BatchNorm statistics, which were measured on the live weights, not on
the average, and over the last few batches only. BigGAN's "standing statistics"
measure them again: forward a few batches of the training distribution (z ~ N(0, 1),
tags of real images) through the EMA copy in train mode and keep the plain average
of the batch statistics (docs/cgan_avatars.md measures what it buys).

Only the statistics change, never a weight, and the draws come from their own
seeded generator, so training, resume and the global random streams are untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

Draw = Callable[[int, torch.Generator], tuple]  # (batch size, generator) -> G's arguments


def batchnorms(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def standing_statistics(G: nn.Module, draw: Draw, batches: int, batch_size: int,
                        seed: int = 0) -> int:
    """Replace G's BatchNorm running statistics by their average over ``batches`` batches.

    ``draw(batch_size, generator)`` returns G's arguments for one batch. G's mode and
    the layers' momentum are restored afterwards. Returns the number of layers updated
    (0: nothing to do, and nothing is drawn).
    """
    layers = batchnorms(G)
    if not layers or batches <= 0:
        return 0
    g = torch.Generator().manual_seed(seed)
    momenta = [m.momentum for m in layers]
    training = G.training
    device = next(G.parameters()).device
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: the plain mean over batches
        # Only the BatchNorm layers in train mode: the rest samples as in eval mode, so a
        # layer that draws noise in training (model.g_palette_noise) takes nothing from
        # the global random stream here.
        G.eval()
        for m in layers:
            m.train()
        for _ in range(batches):
            args = draw(batch_size, g)
            G(*(a.to(device) if isinstance(a, torch.Tensor) else a for a in args))
    finally:
        for m, mom in zip(layers, momenta, strict=True):
            m.momentum = mom
        G.train(training)
    return len(layers)
