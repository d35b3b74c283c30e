"""Model zoo: ``build_generator`` / ``build_discriminator`` of a config's family.

The family (``cfg.recipe``, trainer/families.py) picks the builders:

Tag GANs (``model.arch`` dcgan, ml2020, resnet; trainer/models/conditional.py):
    G(z [B, z_dim], tags [B, n_tags] | None) -> image [B, 3, S, S] in [-1, 1]
    D(image, tags | None) -> DOutput(score [B], aux list | None, features [B, F])
StarGAN (``stargan``, trainer/models/stargan.py):
    G(image, domains [B, n_domains], source | None) -> image;  D(image) -> (src, cls)
    (``source``, the input's own domains, is read when model.g_condition=difference)
"""

from __future__ import annotations

from torch import nn

from trainer.augment import build_augment
from trainer.config import TrainConfig
from trainer.families import family_of
from trainer.models.conditional import Discriminator, Generator, is_conditional
from trainer.models.layers import DOutput

__all__ = ["DOutput", "Discriminator", "Generator", "build_discriminator", "build_generator",
           "is_conditional"]


def build_generator(cfg: TrainConfig, n_cond: int) -> nn.Module:
    """The generator of ``cfg``. ``n_cond``: length of the tag (or StarGAN domain) vector.

    An unconditional tag-GAN config (``model.cond=none``) ignores ``n_cond``.
    """
    return family_of(cfg).generator(cfg, n_cond)


def build_discriminator(cfg: TrainConfig, group_sizes: list[int]) -> nn.Module:
    """The discriminator of ``cfg``. ``group_sizes``: tags per group (StarGAN: [n_domains]).

    With ``aug.policy`` set, D runs ``trainer.augment.Augment`` on every input while training.
    """
    a = cfg.aug
    augment = build_augment(a.policy, a.p, a.target, a.interval, a.kimg)
    return family_of(cfg).discriminator(cfg, list(group_sizes), augment)
