"""The pictures a run leaves: a progress grid per sample step, then the final figures.

The grids come from inputs fixed for the whole run (the recipe's ``fixed_inputs``),
drawn by the EMA generator, so they show training progress and nothing else. At the
end: progress.png (crops of the grids over time), losses.png and the recipe's
``final_grids``. Main process only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.config import TrainConfig
from trainer.recipes.base import Recipe
from trainer.runs import checkpoint_name
from trainer.viz import plot_losses, progress_strip, save_grid


class Pictures:
    """Writes ``samples/step_N.png`` and, at the end, the run's summary pictures."""

    def __init__(self, run_dir: Path, recipe: Recipe, cfg: TrainConfig, dataset: Any,
                 device: torch.device):
        self.run_dir, self.recipe, self.cfg, self.dataset = Path(run_dir), recipe, cfg, dataset
        fixed = recipe.fixed_inputs(dataset, cfg.n_samples, cfg.seed)
        self.fixed = {k: v.to(device) for k, v in fixed.items()}

    @torch.no_grad()
    def sample(self, G: nn.Module, step: int) -> None:
        """The progress grid of ``G`` (the EMA generator) at ``step``."""
        images, nrow = self.recipe.sample(G, self.fixed)
        save_grid(images, self.run_dir / "samples" / f"{checkpoint_name(step)}.png", nrow)

    def finish(self, G: nn.Module) -> None:
        """progress.png, losses.png and the recipe's final grids."""
        rd = self.run_dir
        samples = sorted((rd / "samples").glob("step_*.png"))
        progress_strip(samples, rd / "progress.png", image_size=self.cfg.data.size,
                       crop_cols=self.recipe.strip_cols)
        plot_losses(rd / "metrics.jsonl", rd / "losses.png", title=self.cfg.name)
        for name, (images, nrow) in self.recipe.final_grids(G, self.dataset,
                                                            self.cfg.seed).items():
            save_grid(images, rd / f"{name}.png", nrow)
