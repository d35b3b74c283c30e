"""What a recipe gives the training loop: networks, optimizers and phases.

A phase is one optimizer update: D, G, a D regulariser... The loop runs the
phases of every iteration in order, each on its interval, and owns everything
else (devices, DDP, precision, EMA, checkpoints, logging). n_critic = 5 is
``Phase("G", every=5)``; G:D = 2:1 is ``Phase("G", repeat=2)``; WGAN weight
clipping is the ``after`` hook of the D phase. The loop never branches on the
loss or the recipe name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Batch = dict[str, torch.Tensor]  # "image": float [B,3,H,W] in [-1,1]; "labels": [B,K]
StepResult = tuple[torch.Tensor, dict[str, torch.Tensor]]  # loss to minimise, scalars to log


@dataclass
class Phase:
    name: str  # "D", "G", ...: prefix of the logged scalars
    model: str  # key of Recipe.models (and Recipe.optimizers) this phase trains
    step: Callable[[Batch], StepResult]  # forward + loss; the loop does backward and step
    every: int = 1  # run on iterations where step % every == 0
    repeat: int = 1  # times per iteration; each repeat after the first draws a new batch
    after: Callable[[], None] | None = None  # after the optimizer step, e.g. weight clipping


class Recipe:
    """Base class: subclasses fill models / optimizers and say how to sample.

    The loop replaces ``self.models[k]`` with its prepared (device, DDP) version
    before calling any phase, so step functions must read ``self.models[k]``
    at call time. Penalties call D through ``trainer.modes.fp32`` (fp32, no
    wrappers), since the prepared forward runs under autocast.
    """

    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema_of: str = "G"  # the loop keeps an EMA copy of this model; samples and export use it
    strip_cols: int = 4  # grid columns per frame of progress.png (0: whole rows)
    augment = None  # D's trainer.augment.Augment, if aug.policy is set
    lecam = None  # D's trainer.losses.LeCam, if loss.lecam is set
    epoch = 0  # the data epoch of the iteration being run; the loop sets it (from the
    #            resumed data position too), so a schedule by epoch resumes exactly

    def observe_real(self, scores: torch.Tensor, logs: dict[str, torch.Tensor]) -> None:
        """Feed D's logits on real images to adaptive augmentation; log its ``p``."""
        if self.augment is not None:
            self.augment.observe(scores)
            logs["aug_p"] = self.augment.p.detach().float().clone()

    def lecam_term(self, weight: float, real_scores: torch.Tensor, fake_scores: torch.Tensor,
                   logs: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """``weight`` x the LeCam penalty of D's logits (0 without ``loss.lecam``); logged."""
        if self.lecam is None:
            return 0.0
        reg = self.lecam(real_scores, fake_scores)
        logs["lecam"] = reg.detach()
        return weight * reg

    def phases(self) -> list[Phase]:
        """The optimizer updates of one iteration, in order."""
        raise NotImplementedError

    def fixed_inputs(self, dataset, n: int, seed: int) -> dict[str, torch.Tensor]:
        """Inputs for the progress grid, fixed for the whole run (z and tags, or real images)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, G: nn.Module, fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Images in [-1, 1] for the progress grid from the EMA generator, and the grid's nrow."""
        raise NotImplementedError

    def g_inputs(self, dataset, n: int, g: torch.Generator) -> tuple:
        """G's arguments for ``n`` draws of the training distribution, from ``g`` (CPU).

        Used to measure the EMA generator's BatchNorm statistics on its own weights
        (trainer/standing_stats.py); only needed by generators with BatchNorm.
        """
        raise NotImplementedError(f"{type(self).__name__}.g_inputs: needed for the standing "
                                  f"statistics of a generator with BatchNorm (ema_bn_batches=0 "
                                  f"turns them off)")

    @torch.no_grad()
    def final_grids(self, G: nn.Module, dataset, seed: int) -> dict[str, tuple[torch.Tensor, int]]:
        """Extra named grids written at the end of a run (e.g. same tags, different noise)."""
        return {}
