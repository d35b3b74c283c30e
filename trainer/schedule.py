"""The learning-rate schedule of the loop: constant, then linear decay to 0 (``lr_decay_start``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class LinearDecay:
    """Every optimizer's learning rates fall linearly from ``start`` to 0 at ``end``.

    The base rates are read once, when built; ``start <= 0`` keeps them constant.
    (StarGAN's official schedule decays over the second half of training.)
    """

    def __init__(self, optimizers: Mapping[str, torch.optim.Optimizer], start: int, end: int):
        self.optimizers, self.start, self.end = optimizers, start, end
        self.base = {n: [g["lr"] for g in o.param_groups] for n, o in optimizers.items()}

    def apply(self, step: int) -> None:
        """Set the learning rates for iteration ``step``."""
        if self.start <= 0 or step < self.start:
            return
        frac = max(0.0, 1.0 - (step - self.start) / max(1, self.end - self.start))
        for n, opt in self.optimizers.items():
            for g, base in zip(opt.param_groups, self.base[n], strict=True):
                g["lr"] = base * frac
