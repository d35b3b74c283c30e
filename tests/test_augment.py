"""Differentiable augmentation: what each op does, gradients to G, ADA's p, checkpointing."""

from __future__ import annotations

import pytest
import torch

from trainer.augment import (
    OPS,
    Augment,
    augment_of,
    build_augment,
    cutout,
    parse_policy,
    translation,
)
from trainer.config import ConfigError, load_config
from trainer.models import build_discriminator, build_generator


def images(b: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_are_differentiable_and_keep_shape(name):
    x = images().requires_grad_(True)
    y = OPS[name](x)
    assert y.shape == x.shape
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_draw_per_image(name):
    torch.manual_seed(0)
    x = images(1).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    y = OPS[name](x)
    assert len({tuple(r.flatten()[::7].tolist()) for r in y}) > 1, "every image got the same op"


def test_translation_moves_pixels_and_zero_fills():
    torch.manual_seed(1)
    x = torch.ones(32, 1, 16, 16)
    y = translation(x)
    zeros = (y == 0).flatten(1).sum(1)
    assert (zeros > 0).any() and (zeros < 16 * 16).all()
    assert set(y.unique().tolist()) <= {0.0, 1.0}  # values are moved, never mixed


def test_cutout_zeroes_a_square_of_half_the_size():
    torch.manual_seed(2)
    y = cutout(torch.ones(64, 3, 16, 16))
    zeroed = (y[:, 0] == 0).flatten(1).sum(1)
    assert zeroed.max() == 8 * 8  # a whole 8x8 square when it lies inside
    assert (zeroed > 0).all()
    assert torch.equal(y[:, 0], y[:, 2])  # the same square in every channel


def test_policy_parsing_and_errors():
    assert parse_policy("color, translation,cutout") == ["color", "translation", "cutout"]
    assert parse_policy("") == []
    assert build_augment("") is None
    with pytest.raises(ValueError, match="unknown op 'flip'"):
        parse_policy("color,flip")
    with pytest.raises(ConfigError, match="aug.policy: unknown op 'colour'"):
        load_config("cgan_avatars", ["aug.policy=colour"])
    with pytest.raises(ConfigError, match="aug.p"):
        load_config("cgan_avatars", ["aug.p=1.5"])


def test_p_zero_is_the_identity_and_p_one_always_changes():
    x = images()
    assert torch.equal(Augment(["color", "translation", "cutout"], p=0.0)(x), x)
    torch.manual_seed(3)
    y = Augment(["cutout"], p=1.0)(x)
    assert ((y - x).abs().flatten(1).amax(1) > 0).all()


def test_partial_p_keeps_some_images():
    torch.manual_seed(4)
    x = images(256)
    y = Augment(["cutout"], p=0.5)(x)
    changed = (y != x).flatten(1).any(1).float().mean()
    assert 0.35 < changed < 0.65


def test_ada_moves_p_towards_the_target():
    aug = Augment(["color"], target=0.6, interval=2, kimg=0.1)  # 100 images move p by 1
    assert float(aug.p) == 0.0
    for _ in range(4):  # D is sure of every real image: overfitting -> p rises
        aug.observe(torch.full((10,), 3.0))
    high = float(aug.p)
    assert high == pytest.approx(0.4)  # 2 adjustments of 20 images each
    for _ in range(2):  # D calls reals fake: p falls
        aug.observe(torch.full((10,), -3.0))
    assert float(aug.p) == pytest.approx(high - 0.2)
    for _ in range(40):
        aug.observe(torch.full((10,), -3.0))
    assert float(aug.p) == 0.0  # clamped


def test_ada_state_resumes_mid_interval_exactly():
    """A checkpoint between two adjustments: the restored copy adjusts p at the same calls
    and by the same amounts as the uninterrupted one (the interval's signs travel too)."""
    scores = [torch.randn(8, generator=torch.Generator().manual_seed(i)) + 0.9
              for i in range(23)]
    whole = Augment(["translation"], target=0.6, interval=4, kimg=0.05)
    first = Augment(["translation"], target=0.6, interval=4, kimg=0.05)
    for s in scores[:10]:  # 10 calls: two adjustments and 2 calls into the third interval
        whole.observe(s)
        first.observe(s)
    resumed = Augment(["translation"], target=0.6, interval=4, kimg=0.05)
    resumed.load_state_dict(first.state_dict())
    assert resumed.rt == pytest.approx(whole.rt) and resumed.rt != 0.0
    for s in scores[10:]:
        whole.observe(s)
        resumed.observe(s)
        assert float(resumed.p) == float(whole.p)
    assert float(whole.p) > 0.0


def test_ada_loads_a_state_written_without_the_interval_statistics():
    old = {"p": torch.tensor(0.25)}  # a D checkpoint from before ada_stats existed
    aug = Augment(["translation"], target=0.6)
    aug.load_state_dict(old)
    assert float(aug.p) == 0.25 and aug.rt == 0.0


def test_forward_follows_p_as_ada_moves_it_and_as_a_state_loads_it():
    """forward reads a host copy of p: it must follow every way p changes."""
    x = torch.rand(8, 3, 16, 16)
    aug = Augment(["cutout"], target=0.6, interval=1, kimg=0.001)
    assert torch.equal(aug(x), x)  # ADA starts at p = 0
    aug.observe(torch.full((8,), 5.0))  # D sure of every real image: p jumps to 1
    assert float(aug.p) == 1.0 and not torch.equal(aug(x), x)
    aug.load_state_dict({"p": torch.tensor(0.0), "ada_stats": torch.zeros(3)})
    assert torch.equal(aug(x), x)
    fixed = Augment(["cutout"], p=0.0)
    fixed.load_state_dict({"p": torch.tensor(1.0), "ada_stats": torch.zeros(3)})
    assert not torch.equal(fixed(x), x)


def test_fixed_p_ignores_observations():
    aug = Augment(["color"], p=0.7)
    for _ in range(8):
        aug.observe(torch.full((4,), 5.0))
    assert float(aug.p) == pytest.approx(0.7)


def test_discriminator_augments_in_training_only_and_g_gets_gradients():
    cfg = load_config("cgan_avatars", ["data.size=32", "model.g_ch=8", "model.d_ch=8",
                                       "aug.policy=color,translation,cutout"])
    G, D = build_generator(cfg, 22), build_discriminator(cfg, [12, 10])
    assert augment_of(D) is not None
    assert "augment.p" in D.state_dict()  # p travels with D's checkpoint
    tags = torch.zeros(4, 22)
    tags[:, 0] = tags[:, 12] = 1
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    D.eval()
    assert torch.equal(D(x, tags).score, D(x, tags).score)  # no augmentation in eval mode
    D.train()
    torch.manual_seed(0)
    a = D(x, tags).score
    torch.manual_seed(1)
    b = D(x, tags).score
    assert not torch.equal(a, b)  # a new draw of the transforms each call
    fake = G(torch.randn(4, cfg.model.z_dim), tags)
    D(fake, tags).score.sum().backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad)


def test_no_policy_leaves_d_as_before():
    cfg = load_config("cgan_avatars", ["data.size=32"])
    D = build_discriminator(cfg, [12, 10])
    assert augment_of(D) is None and not any("augment" in k for k in D.state_dict())


def test_stargan_discriminator_augments():
    cfg = load_config("stargan_avatars", ["data.size=32", "model.d_repeat_num=5",
                                          "aug.policy=translation"])
    D = build_discriminator(cfg, [5]).train()
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(0)
    a = D(x)[0]
    torch.manual_seed(1)
    assert not torch.equal(a, D(x)[0])
    assert "augment.p" in D.state_dict()


def test_stargan_recipe_builds_its_discriminator_with_the_augmentation():
    from trainer.data.vocab import Domains
    from trainer.recipes.stargan import StarGanRecipe

    domains = Domains(("Black_Hair", "Blond_Hair", "Brown_Hair", "Eyeglasses", "Short_Hair"),
                      (("Black_Hair", "Blond_Hair", "Brown_Hair"),))
    overrides = ["data.size=32", "model.g_ch=8", "model.d_ch=8", "model.repeat_num=1",
                 "model.d_repeat_num=5"]
    plain = StarGanRecipe(load_config("stargan_avatars", overrides), domains, 32)
    assert plain.augment is None and "augment.p" not in plain.models["D"].state_dict()
    cfg = load_config("stargan_avatars", [*overrides, "aug.policy=translation,cutout"])
    recipe = StarGanRecipe(cfg, domains, 32)
    assert recipe.augment is not None and recipe.augment is recipe.models["D"].augment
    assert "augment.p" in recipe.models["D"].state_dict()
