"""What the two-network recipes share: optimizers, the G/D pair, the phase list, lazy R1.

``OPTIMIZERS`` is the registry behind ``g_optim.name`` / ``d_optim.name`` (the config's
choices are read from it): adding an optimizer is one function and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from trainer.augment import augment_of
from trainer.config import ConfigError, OptimConfig, TrainConfig
from trainer.losses import LeCam, r1_penalty
from trainer.recipes.base import Batch, Phase, Recipe, StepResult


def _fused(cls: type[torch.optim.Optimizer], params: list, **kw) -> torch.optim.Optimizer:
    """``cls`` with fused kernels where torch has them for this device, else foreach."""
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, TypeError):  # an older torch or an unsupported device
        return cls(params, foreach=True, **kw)


def _adam(params: list, oc: OptimConfig) -> torch.optim.Optimizer:
    return _fused(torch.optim.Adam, params, betas=tuple(oc.betas), lr=oc.lr,
                  weight_decay=oc.weight_decay)


def _sgd(params: list, oc: OptimConfig) -> torch.optim.Optimizer:
    return _fused(torch.optim.SGD, params, momentum=oc.momentum, lr=oc.lr,
                  weight_decay=oc.weight_decay)


def _rmsprop(params: list, oc: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, momentum=oc.momentum, foreach=True, lr=oc.lr,
                               weight_decay=oc.weight_decay)


OPTIMIZERS: dict[str, Callable[[list, OptimConfig], torch.optim.Optimizer]] = {
    "adam": _adam,
    "sgd": _sgd,
    "rmsprop": _rmsprop,
}


def build_optimizer(params: Iterable[nn.Parameter], oc: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``oc.name`` (registry ``OPTIMIZERS``) over ``params``."""
    if oc.name not in OPTIMIZERS:
        raise ConfigError(f"optimizer name {oc.name!r}: expected {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[oc.name](list(params), oc)


def check_image_size(cfg: TrainConfig, image_size: int) -> None:
    """ConfigError unless the dataset's images have the configured size."""
    if image_size != cfg.data.size:
        raise ConfigError(f"data.size={cfg.data.size} but the dataset images are "
                          f"{image_size} px")


def set_pair(recipe: Recipe, G: nn.Module, D: nn.Module, cfg: TrainConfig) -> None:
    """``recipe.models`` G and D, their optimizers, D's augmentation and LeCam state (if any).

    ``loss.lecam`` adds a ``LeCam`` module to D (buffers only), so its averages are saved
    and resumed with D's weights.
    """
    recipe.lecam = LeCam(cfg.loss.lecam_decay) if cfg.loss.lecam > 0 else None
    if recipe.lecam is not None:
        D.lecam = recipe.lecam
    recipe.models = {"G": G, "D": D}
    recipe.augment = augment_of(D)
    recipe.optimizers = {"G": build_optimizer(G.parameters(), cfg.g_optim),
                         "D": build_optimizer(D.parameters(), cfg.d_optim)}


def adversarial_phases(cfg: TrainConfig, d_step: Callable[[Batch], StepResult],
                       g_step: Callable[[Batch], StepResult],
                       r1_step: Callable[[Batch], StepResult],
                       d_after: Callable[[], None] | None = None) -> list[Phase]:
    """D (then lazy R1 if ``loss.r1``) then G, on the config's intervals and repeats."""
    phases = [Phase("D", "D", d_step, every=cfg.d_every, repeat=cfg.d_repeat, after=d_after),
              Phase("G", "G", g_step, every=cfg.g_every, repeat=cfg.g_repeat)]
    if cfg.loss.r1 > 0:  # lazy R1: its own D update every r1_every iterations
        phases.insert(1, Phase("D_reg", "D", r1_step, every=cfg.loss.r1_every))
    return phases


def lazy_r1(cfg: TrainConfig, critic: Callable[[torch.Tensor], torch.Tensor],
            real: torch.Tensor) -> StepResult:
    """gamma / 2 * E||grad D(real)||^2, times the interval (StyleGAN2's lazy R1).

    ``critic`` must run in fp32 (``trainer.modes.fp32``).
    """
    lc = cfg.loss
    r1 = r1_penalty(critic, real)
    return 0.5 * lc.r1 * lc.r1_every * r1, {"r1": r1.detach()}
