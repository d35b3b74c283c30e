"""Recipes: the networks, optimizers and phases of each model family."""

from __future__ import annotations

from trainer.config import TrainConfig
from trainer.recipes.base import Phase, Recipe


def build_recipe(cfg: TrainConfig, vocab, image_size: int) -> Recipe:
    """The recipe of ``cfg``'s family (trainer/families.py; imported lazily)."""
    from trainer.families import family_of

    return family_of(cfg).recipe(cfg, vocab, image_size)


__all__ = ["Phase", "Recipe", "build_recipe"]
