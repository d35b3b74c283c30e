"""Standing statistics: the EMA generator's BatchNorm statistics, measured on its own weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.models.layers import PaletteOutput
from trainer.standing_stats import batchnorms, standing_statistics


class TinyG(nn.Module):
    """z, tags -> Linear -> BatchNorm1d -> Linear -> BatchNorm1d (tags are added to z)."""

    def __init__(self):
        super().__init__()
        self.a, self.bn_a = nn.Linear(4, 6), nn.BatchNorm1d(6)
        self.b, self.bn_b = nn.Linear(6, 3), nn.BatchNorm1d(3, momentum=0.3)

    def forward(self, z, tags=None):
        h = z if tags is None else z + tags
        return self.bn_b(self.b(torch.relu(self.bn_a(self.a(h)))))


def draw(n: int, g: torch.Generator) -> tuple:
    return torch.randn(n, 4, generator=g) * 2 + 1, torch.ones(n, 4)


def test_statistics_are_the_mean_over_batches_and_nothing_else_changes():
    G = TinyG().eval()
    for _ in range(3):  # give the running statistics something to forget
        G.train()(*draw(5, torch.Generator().manual_seed(7)))
    G.eval()
    params = {k: v.clone() for k, v in G.named_parameters()}
    rng = torch.random.get_rng_state()

    assert standing_statistics(G, draw, batches=6, batch_size=10, seed=3) == 2

    g = torch.Generator().manual_seed(3)
    means, variances = [], []
    with torch.no_grad():
        for _ in range(6):
            h = G.a(sum(draw(10, g)))
            means.append(h.mean(0))
            variances.append(h.var(0, unbiased=True))
    assert torch.allclose(G.bn_a.running_mean, torch.stack(means).mean(0), atol=1e-6)
    assert torch.allclose(G.bn_a.running_var, torch.stack(variances).mean(0), atol=1e-6)
    assert int(G.bn_a.num_batches_tracked) == 6
    assert not G.training, "G's mode is restored"
    assert G.bn_a.momentum == 0.1 and G.bn_b.momentum == 0.3, "momenta are restored"
    assert all(torch.equal(v, params[k]) for k, v in G.named_parameters())
    assert torch.equal(torch.random.get_rng_state(), rng), "the global random stream moved"


def test_same_seed_same_statistics_and_a_generator_without_batchnorm_is_left_alone():
    a, b = TinyG(), TinyG()
    b.load_state_dict(a.state_dict())
    standing_statistics(a, draw, 4, 8, seed=1)
    standing_statistics(b, draw, 4, 8, seed=1)
    assert torch.equal(a.bn_b.running_var, b.bn_b.running_var)

    def no_draw(n, g):
        raise AssertionError("nothing to measure, nothing should be drawn")

    plain = nn.Sequential(nn.Linear(4, 4), nn.InstanceNorm1d(4, track_running_stats=True))
    assert batchnorms(plain) == []
    assert standing_statistics(plain, no_draw, 4, 8) == 0
    assert standing_statistics(TinyG(), no_draw, 0, 8) == 0, "batches=0 turns it off"


class NoisyPaletteG(nn.Module):
    """z -> Linear -> BatchNorm1d -> 4 palette logits per pixel, painted with Gumbel noise
    in training (model.g_palette_noise)."""

    def __init__(self, noise: float):
        super().__init__()
        self.a, self.bn = nn.Linear(4, 4 * 3 * 3), nn.BatchNorm1d(4 * 3 * 3)
        self.palette = PaletteOutput(4, 4, hidden=8, pick="mix_lines", noise=noise)

    def forward(self, z, tags=None):
        return self.palette(self.bn(self.a(z)).reshape(-1, 4, 3, 3), z)


def test_a_generator_that_draws_noise_in_training_leaves_the_global_stream_alone():
    """Only the BatchNorm layers measure in train mode: the palette's training noise is not
    drawn, so a checkpoint or a sample grid does not move the run's random stream (exact
    resume), and the statistics are those of the noise-free generator."""
    noisy, plain = NoisyPaletteG(1.0), NoisyPaletteG(0.0)
    plain.load_state_dict(noisy.state_dict())
    rng = torch.random.get_rng_state()
    standing_statistics(noisy.train(), draw, 4, 8, seed=2)
    assert torch.equal(torch.random.get_rng_state(), rng), "the global random stream moved"
    assert noisy.training and noisy.palette.training, "G's mode is restored"
    standing_statistics(plain, draw, 4, 8, seed=2)
    assert torch.equal(noisy.bn.running_mean, plain.bn.running_mean)
    assert torch.equal(noisy.bn.running_var, plain.bn.running_var)
    x = torch.randn(16, 4)
    noisy.train()(x)  # sanity: in training the layer does draw from the global stream
    assert not torch.equal(torch.random.get_rng_state(), rng)


def test_ema_bn_batches_must_not_be_negative():
    from trainer.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="ema_bn_batches=-1"):
        load_config("cgan_avatars", ["ema_bn_batches=-1"])
