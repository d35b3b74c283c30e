"""Recipes: the networks, optimizers and phases of each GAN family."""

from __future__ import annotations

from trainer.config import TrainConfig
from trainer.recipes.base import Phase, Recipe


def build_recipe(cfg: TrainConfig, vocab, image_size: int) -> Recipe:
    """The recipe named by ``cfg.recipe`` (imported lazily: StarGAN users skip DCGAN code)."""
    if cfg.recipe == "stargan":
        from trainer.recipes.stargan import StarGanRecipe

        return StarGanRecipe(cfg, vocab, image_size)
    from trainer.recipes.gan import GanRecipe

    return GanRecipe(cfg, vocab, image_size)


__all__ = ["Phase", "Recipe", "build_recipe"]
