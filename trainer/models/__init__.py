"""Model zoo: ``build_generator`` / ``build_discriminator`` dispatch on ``cfg.model.arch``.

DCGAN family (``dcgan``, ``ml2020``, ``resnet``):
    G(z [B, z_dim], tags [B, n_tags] | None) -> image [B, 3, S, S] in [-1, 1]
    D(image, tags | None) -> DOutput(score [B], aux list | None, features [B, F])
StarGAN (``stargan``, trainer/models/stargan.py):
    G(image, domains [B, n_domains]) -> image;  D(image) -> (src, cls)
"""

from __future__ import annotations

from torch import nn

from trainer.augment import build_augment
from trainer.config import ConfigError, TrainConfig
from trainer.models.conditional import Discriminator, Generator
from trainer.models.layers import DOutput

__all__ = ["DOutput", "Discriminator", "Generator", "build_discriminator", "build_generator",
           "is_conditional"]


def is_conditional(cfg: TrainConfig) -> bool:
    """Whether the DCGAN-family G takes tags (every D conditioning mode but ``none``)."""
    return cfg.model.cond != "none"


def build_generator(cfg: TrainConfig, n_cond: int) -> nn.Module:
    """The generator of ``cfg``. ``n_cond``: length of the tag (or StarGAN domain) vector.

    An unconditional DCGAN-family config (``model.cond=none``) ignores ``n_cond``.
    """
    if cfg.model.arch == "stargan":
        from trainer.models.stargan import build_stargan_generator

        return build_stargan_generator(cfg, n_cond)
    if is_conditional(cfg) and n_cond <= 0:
        raise ConfigError(f"model.cond={cfg.model.cond!r} needs a dataset with tags; this one "
                          f"has none (use model.cond=none)")
    return Generator(cfg.model, cfg.data.size, n_cond if is_conditional(cfg) else 0)


def build_discriminator(cfg: TrainConfig, group_sizes: list[int]) -> nn.Module:
    """The discriminator of ``cfg``. ``group_sizes``: tags per group (StarGAN: [n_domains]).

    With ``aug.policy`` set, D runs ``trainer.augment.Augment`` on every input while training.
    """
    a = cfg.aug
    augment = build_augment(a.policy, a.p, a.target, a.interval, a.kimg)
    if cfg.model.arch == "stargan":
        from trainer.models.stargan import build_stargan_discriminator

        D = build_stargan_discriminator(cfg, sum(group_sizes))
        D.augment = augment
        return D
    if is_conditional(cfg) and not group_sizes:
        raise ConfigError(f"model.cond={cfg.model.cond!r} needs a dataset with tags; this one "
                          f"has none (use model.cond=none)")
    return Discriminator(cfg.model, cfg.data.size, list(group_sizes), augment=augment)
