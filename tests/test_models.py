"""Shapes, parameter counts, initialisation and options of the DCGAN-family models."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from trainer.config import ConfigError, TrainConfig, load_config
from trainer.models import DOutput, build_discriminator, build_generator
from trainer.models.layers import (
    Bilinear2x,
    MinibatchStd,
    NearestConv2x,
    PaletteOutput,
    bilinear2x,
    most_likely,
    nearer_of_two,
    nearest2x,
)

GROUPS = [12, 10]  # hair, eyes: the MLDS / avatar vocabulary
K = sum(GROUPS)
ARCHS = ("dcgan", "ml2020")
SIZES = (32, 64, 128)
CONDS = ("none", "spatial", "dense", "projection", "acgan", "projection_acgan")


def cfg_of(*overrides: str) -> TrainConfig:
    return load_config(None, list(overrides))


def tags_for(b: int) -> torch.Tensor:
    t = torch.zeros(b, K)
    t[torch.arange(b), torch.arange(b) % GROUPS[0]] = 1
    t[torch.arange(b), GROUPS[0] + torch.arange(b) % GROUPS[1]] = 1
    return t


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- expected parameter counts from the layer formulas --------------------------
def conv(cin: int, cout: int, k: int, bias: bool) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def linear(cin: int, cout: int, bias: bool = True) -> int:
    return cin * cout + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c  # weight and bias


def expected_g(arch: str, size: int, z: int, ch: int, n_cond: int, embed: int) -> int:
    n = int(math.log2(size)) - 2
    c = ch * 2 ** (n - 1)
    total, in_dim = 0, z
    if n_cond:
        if embed:
            total += linear(n_cond, embed) + bn(embed)
            in_dim += embed
        else:
            in_dim += n_cond
    if arch == "dcgan":
        total += conv(in_dim, c, 4, False) + bn(c)
        for _ in range(n - 1):
            total += conv(c, c // 2, 4, False) + bn(c // 2)
            c //= 2
        return total + conv(c, 3, 4, False)
    total += linear(in_dim, c * 16, bias=False) + bn(c * 16)
    for _ in range(n - 1):
        total += conv(c, c // 2, 5, False) + bn(c // 2)
        c //= 2
    return total + conv(c, 3, 5, True)


def expected_d(arch: str, size: int, ch: int, cond: str, *, bn_on: bool = True, mbstd: bool = False,
               d_embed: int = 64, hidden: int = 256) -> int:
    n = int(math.log2(size)) - 2
    k, bias = (4, not bn_on) if arch == "dcgan" else (5, True)  # no BatchNorm: biases
    total, cin, c = 0, 3, ch
    for i in range(n):
        total += conv(cin, c, k, bias) + (bn(c) if bn_on and i > 0 else 0)
        cin, c = c, 2 * c
    C = cin + (1 if mbstd else 0)
    head = conv(C, 1, 4, bias)
    proj = (linear(K, d_embed) + (bn(d_embed) if bn_on else 0)) if d_embed else 0
    e = d_embed or K
    if cond == "spatial":
        head = proj + conv(C + e, 1, 4, bias)
    elif cond == "dense":
        head = proj + linear(C * 16 + e, hidden) + linear(hidden, 1)
    elif cond == "projection":
        head += linear(K, C * 16, bias=False)
    if cond in ("acgan", "projection_acgan"):
        head += conv(C, C, 4, True) + sum(linear(C, hidden) + linear(hidden, g) for g in GROUPS)
    if cond == "projection_acgan":
        head += linear(K, C * 16, bias=False)
    return total + head


# -- shapes -------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("cond", CONDS)
def test_shapes_every_arch_size_and_conditioning(arch, size, cond):
    cfg = cfg_of(f"model.arch={arch}", f"data.size={size}", f"model.cond={cond}",
                 "model.g_ch=8", "model.d_ch=8", "model.z_dim=16")
    G, D = build_generator(cfg, K), build_discriminator(cfg, GROUPS)
    b = 3
    tags = tags_for(b) if cond != "none" else None
    x = G(torch.randn(b, 16), tags)
    assert x.shape == (b, 3, size, size)
    assert x.abs().max() <= 1.0
    out = D(x, tags)
    assert isinstance(out, DOutput)
    assert out.score.shape == (b,)
    c4 = 8 * 2 ** (int(math.log2(size)) - 3)  # D channels at 4x4
    assert out.features.shape == (b, c4 * 16)
    if cond in ("acgan", "projection_acgan"):
        assert [a.shape for a in out.aux] == [(b, g) for g in GROUPS]
    else:
        assert out.aux is None


@pytest.mark.parametrize("size", SIZES)
def test_generator_has_the_documented_attributes(size):
    G = build_generator(cfg_of(f"data.size={size}", "model.cond=dense", "model.g_ch=8"), K)
    assert (G.z_dim, G.n_cond, G.image_size) == (100, K, size)
    U = build_generator(cfg_of(f"data.size={size}", "model.g_ch=8"), K)
    assert U.n_cond == 0  # cond=none: tags ignored whatever the vocabulary


# -- parameter counts at the default widths -------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("cond", CONDS)
def test_param_counts_at_default_config_match_the_formula(arch, cond):
    cfg = cfg_of(f"model.arch={arch}", f"model.cond={cond}")
    m = cfg.model
    n_cond = K if cond != "none" else 0
    assert n_params(build_generator(cfg, K)) == expected_g(arch, 64, m.z_dim, m.g_ch, n_cond,
                                                           m.tag_embed)
    assert n_params(build_discriminator(cfg, GROUPS)) == expected_d(
        arch, 64, m.d_ch, cond, d_embed=m.d_tag_embed, hidden=m.d_hidden)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("size", (32, 128))
def test_param_counts_other_resolutions(arch, size):
    cfg = cfg_of(f"model.arch={arch}", f"data.size={size}")
    assert n_params(build_generator(cfg, 0)) == expected_g(arch, size, 100, 64, 0, 0)
    assert n_params(build_discriminator(cfg, [])) == expected_d(arch, size, 64, "none")


@pytest.mark.parametrize("cond", ("spatial", "dense"))
def test_param_counts_options(cond):
    cfg = cfg_of(f"model.cond={cond}", "model.d_bn=false", "model.minibatch_std=true",
                 "model.d_tag_embed=0", "model.tag_embed=0", "model.d_hidden=32",
                 "model.spectral_norm=true")
    assert n_params(build_generator(cfg, K)) == expected_g("dcgan", 64, 100, 64, K, 0)
    assert n_params(build_discriminator(cfg, GROUPS)) == expected_d(
        "dcgan", 64, 64, cond, bn_on=False, mbstd=True, d_embed=0, hidden=32)


# -- initialisation and options ----------------------------------------------------
def test_dcgan_init_statistics():
    cfg = cfg_of("model.cond=projection")
    for model in (build_generator(cfg, K), build_discriminator(cfg, GROUPS)):
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                w = m.weight.detach()
                if w.numel() > 10_000:
                    assert abs(w.std().item() - 0.02) < 0.002, m
                    assert abs(w.mean().item()) < 0.002, m
                if m.bias is not None:
                    assert torch.all(m.bias == 0)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                assert abs(m.weight.mean().item() - 1.0) < 0.01
                assert torch.all(m.bias == 0)


def sn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("cond", CONDS)
def test_spectral_norm_on_every_d_weight_when_asked(cond):
    on = cfg_of(f"model.cond={cond}", "model.spectral_norm=true", "data.size=32",
                "model.d_ch=8", "model.g_ch=8")
    D = build_discriminator(on, GROUPS)
    assert all(parametrize.is_parametrized(m, "weight") for m in sn_layers(D))
    assert not any(parametrize.is_parametrized(m) for m in build_generator(on, K).modules())
    off = build_discriminator(cfg_of(f"model.cond={cond}", "data.size=32", "model.d_ch=8"), GROUPS)
    assert not any(parametrize.is_parametrized(m) for m in off.modules())


def test_spectral_norm_bounds_the_largest_singular_value():
    torch.manual_seed(0)  # the power iteration's start vector is random
    cfg = cfg_of("model.spectral_norm=true", "data.size=32", "model.d_ch=8")
    D = build_discriminator(cfg, [])
    x = torch.randn(4, 3, 32, 32)
    for _ in range(30):  # a power iteration per training-mode forward (15 at wrapping)
        D(x)
    first = D.body.main[0]
    sigma = torch.linalg.matrix_norm(first.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.02)


def test_d_options_add_the_expected_modules():
    cfg = cfg_of("model.d_dropout=0.3", "model.d_bn=false", "model.minibatch_std=true",
                 "data.size=32", "model.d_ch=8")
    D = build_discriminator(cfg, [])
    kinds = [type(m) for m in D.modules()]
    assert kinds.count(nn.Dropout) == 3  # one per block (32 px: 3 blocks)
    assert nn.BatchNorm2d not in kinds
    assert MinibatchStd in kinds


def test_d_without_batchnorm_is_not_blind_to_a_grey_image():
    """A bias-free D without BatchNorm scores an all-zero image 0 whatever its weights."""
    cfg = cfg_of("model.d_bn=false", "data.size=32", "model.d_ch=8", "model.cond=projection")
    D = build_discriminator(cfg, GROUPS)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in D.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)  # any learnt weights, biases too
        score = D(torch.zeros(2, 3, 32, 32), tags_for(2)).score
    assert score.abs().min() > 1e-4


def test_minibatch_std_channel():
    layer = MinibatchStd(group_size=4)
    x = torch.randn(8, 5, 4, 4)
    y = layer(x)
    assert y.shape == (8, 6, 4, 4)
    assert torch.equal(y[:, :5], x)
    g0 = x[:4].std(dim=0, unbiased=False).mean()
    assert torch.allclose(y[:4, 5], g0.expand(4, 4, 4), atol=1e-5)
    same = layer(x[:1].expand(4, -1, -1, -1))
    assert same[:, 5].abs().max() < 1e-3  # identical samples: no spread
    assert layer(torch.randn(6, 2, 4, 4)).shape == (6, 3, 4, 4)  # group 3 divides 6


def test_scores_depend_on_tags_only_when_conditional():
    x = torch.randn(4, 3, 32, 32)
    t1, t2 = tags_for(4), tags_for(4).roll(1, dims=0)
    for cond, depends in (("none", False), ("spatial", True), ("dense", True),
                          ("projection", True)):
        cfg = cfg_of(f"model.cond={cond}", "data.size=32", "model.d_ch=8", "model.d_bn=false")
        D = build_discriminator(cfg, GROUPS).eval()
        with torch.no_grad():
            same = torch.allclose(D(x, t1).score, D(x, t2).score)
        assert same != depends, cond


def test_features_are_the_flattened_trunk_output():
    cfg = cfg_of("data.size=32", "model.d_ch=8", "model.minibatch_std=true")
    D = build_discriminator(cfg, []).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(D(x).features, D.body(x).flatten(1))


def test_channels_last_gives_the_same_outputs():
    cfg = cfg_of("data.size=32", "model.d_ch=8", "model.g_ch=8", "model.cond=dense",
                 "model.minibatch_std=true")
    G, D = build_generator(cfg, K).eval(), build_discriminator(cfg, GROUPS).eval()
    z, t = torch.randn(4, 100), tags_for(4)
    with torch.no_grad():
        x = G(z, t)
        ref = D(x, t)
        G2 = G.to(memory_format=torch.channels_last)
        D2 = D.to(memory_format=torch.channels_last)
        x2 = G2(z, t)
        out = D2(x.contiguous(memory_format=torch.channels_last), t)
    assert torch.allclose(x, x2, atol=1e-5)
    assert torch.allclose(ref.score, out.score, atol=1e-4)
    assert torch.allclose(ref.features, out.features, atol=1e-5)


def test_conditional_models_need_tags():
    cfg = cfg_of("model.cond=dense", "data.size=32", "model.g_ch=8")
    with pytest.raises(ConfigError, match="model.cond"):
        build_generator(cfg, 0)
    with pytest.raises(ConfigError, match="model.cond"):
        build_discriminator(cfg, [])
    with pytest.raises(ValueError, match="tags"):
        build_generator(cfg, K)(torch.randn(2, 100))


def test_stargan_dispatch():
    cfg = cfg_of("recipe=stargan", "model.arch=stargan", "data.size=32", "model.g_ch=8",
                 "model.d_ch=8", "model.repeat_num=1", "model.d_repeat_num=2")
    G, D = build_generator(cfg, 5), build_discriminator(cfg, [5])
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert G(x, torch.zeros(2, 5)).shape == x.shape
    src, cls = D(x)
    assert cls.shape == (2, 5)
    assert src.shape[:2] == (2, 1)


@pytest.mark.parametrize("size", (32, 64, 128))
def test_skip_generator_shapes_and_every_scale_contributes(size):
    cfg = cfg_of("model.g_skip=true", f"data.size={size}", "model.g_ch=8", "model.z_dim=16")
    G = build_generator(cfg, K)
    x = G(torch.randn(2, 16), tags_for(2))
    assert x.shape == (2, 3, size, size) and x.abs().max() <= 1.0
    rgb = G.net.to_rgb
    assert len(rgb) == int(math.log2(size)) - 2  # 4x4 .. size/2
    x.square().mean().backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in rgb)
    plain = build_generator(cfg_of(f"data.size={size}", "model.g_ch=8", "model.z_dim=16"), K)
    assert n_params(G) - n_params(plain) == sum(3 * m.in_channels + 3 for m in rgb)  # 1x1 + bias


def test_skip_generator_is_dcgan_only():
    with pytest.raises(ConfigError, match="g_skip"):
        cfg_of("model.g_skip=true", "model.arch=ml2020")


def test_nearest_last_resizes_only_the_rgb_layer():
    cfg = cfg_of("data.size=32", "model.g_ch=8", "model.z_dim=16", "model.cond=projection",
                 "model.g_upsample=nearest_last")
    G = build_generator(cfg, K)
    convs = [m for m in G.net.main if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [type(m) for m in convs] == [nn.ConvTranspose2d] * 3 + [NearestConv2x]  # 4 -> 8 -> 16 | 32
    assert convs[-1].out_channels == 3 and convs[-1].kernel_size == (3, 3)
    x = torch.randn(2, 5, 4, 3)  # the same values as nn.Upsample, without ONNX's Resize
    assert torch.equal(nearest2x(x), nn.Upsample(scale_factor=2, mode="nearest")(x))
    assert G(torch.randn(2, 16), tags_for(2)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("hw", [(4, 3), (1, 1), (7, 2)])
def test_nearest_conv2x_is_upsample_then_conv(bias, hw):
    torch.manual_seed(0)  # the folded transposed conv against the two layers it replaces
    fused = NearestConv2x(4, 5, bias=bias)
    ref = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4, 5, 3, 1, 1, bias=bias))
    ref[1].load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, *hw, requires_grad=True)
    y, y_ref = fused(x), ref(x)
    assert y.shape == (2, 5, 2 * hw[0], 2 * hw[1])
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)  # and the same gradients, to the input and to the 3x3 weight
    for a, b in zip(torch.autograd.grad(y, (x, fused.weight), g),
                    torch.autograd.grad(y_ref, (x, ref[1].weight), g), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_nearest_last_loads_a_two_layer_checkpoint():
    """Weights saved with the old [Nearest2x, Conv2d] last layer load and draw the same images."""
    cfg = cfg_of("data.size=32", "model.g_ch=8", "model.z_dim=16", "model.cond=projection",
                 "model.g_upsample=nearest_last")
    main = build_generator(cfg, K).net.main.eval()  # [..., upsample slot, 3x3 conv, Tanh]
    old = copy.deepcopy(main)
    conv = nn.Conv2d(main[-2].in_channels, 3, 3, 1, 1, bias=False)
    nn.init.normal_(conv.weight, 0.0, 0.1)
    old[-3], old[-2] = nn.Upsample(scale_factor=2, mode="nearest"), conv
    main.load_state_dict(old.state_dict())  # strict: the parameter names match
    x = torch.randn(2, main[0].in_channels, 1, 1)
    torch.testing.assert_close(main(x), old(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 4, 3), (1, 2, 1, 1), (1, 1, 7, 2)])
def test_bilinear2x_matches_interpolate(shape):
    x = torch.randn(*shape)  # same values as F.interpolate, without ONNX's Resize
    ref = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(bilinear2x(x), ref)


def test_bilinear_last_convolves_at_half_size():
    cfg = cfg_of("data.size=32", "model.g_ch=8", "model.z_dim=16", "model.cond=projection",
                 "model.g_palette=6", "model.g_upsample=bilinear_last")
    G = build_generator(cfg, K)
    assert isinstance(G.net.main[-1], Bilinear2x)
    conv = G.net.main[-2]
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == 6 and conv.kernel_size == (3, 3)
    half = G.net.main[:-1](torch.randn(2, G.net.main[0].in_channels, 1, 1))
    assert half.shape == (2, 6, 16, 16)  # the logits conv runs at half size
    assert G(torch.randn(2, 16), tags_for(2)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("norm,groups", [("layer", 1), ("group", None)])
def test_d_norm_per_image_groupnorm(norm, groups):
    cfg = cfg_of("data.size=32", "model.d_ch=16", "model.cond=projection", f"model.d_norm={norm}")
    D = build_discriminator(cfg, GROUPS).train()
    gns = [m for m in D.body.modules() if isinstance(m, nn.GroupNorm)]
    assert len(gns) == 2 and not any(isinstance(m, nn.BatchNorm2d) for m in D.body.modules())
    assert all(m.num_groups == (groups or m.num_channels // 16) for m in gns)
    x, t = torch.randn(4, 3, 32, 32), tags_for(4)
    with torch.no_grad():  # per-image: an image's score does not depend on the rest of the batch
        alone = D(x[:1], t[:1]).score
        assert torch.allclose(D(x, t).score[:1], alone, atol=1e-5)
    bn = build_discriminator(cfg_of("data.size=32", "model.d_ch=16", "model.cond=projection"),
                             GROUPS).train()
    with torch.no_grad():  # BatchNorm (the default) does depend on it
        assert not torch.allclose(bn(x, t).score[:1], bn(x[:1].expand(4, -1, -1, -1),
                                                         t[:1].expand(4, -1)).score[:1])


def test_d_norm_is_refused_where_it_does_not_apply():
    with pytest.raises(ConfigError, match="model.d_norm"):
        cfg_of("model.d_norm=layer", "model.d_bn=false")
    with pytest.raises(ConfigError, match="model.d_norm"):
        cfg_of("model.d_norm=layer", "model.arch=resnet")
    with pytest.raises(ConfigError, match="model.d_norm"):
        cfg_of("model.d_norm=instance")


def test_palette_generator_paints_from_its_own_colours():
    cfg = cfg_of("data.size=32", "model.g_ch=8", "model.z_dim=16", "model.cond=projection",
                 "model.g_palette=4")
    G = build_generator(cfg, K).eval()
    assert G.net.main[-1].out_channels == 4  # K logits per pixel, no RGB layer
    z, t = torch.randn(2, 16), tags_for(2)
    x = G(z, t)
    assert x.shape == (2, 3, 32, 32) and x.abs().max() <= 1.0
    h = torch.cat([z, G.proj(t)], dim=1)
    pal = G.net.palette.colours(h).reshape(2, 4, 3)
    with torch.no_grad():  # a confident pixel takes its colour exactly; others mix convexly
        logits = torch.zeros(2, 4, 32, 32)
        logits[:, 2] = 50.0
        flat = G.net.palette(logits, h)
        assert torch.allclose(flat, pal[:, 2, :, None, None].expand_as(flat), atol=1e-6)
        mixed = G.net.palette(torch.randn(2, 4, 32, 32), h)
        lo, hi = pal.min(dim=1).values, pal.max(dim=1).values  # [2, 3]
        assert (mixed >= lo[:, :, None, None] - 1e-6).all()
        assert (mixed <= hi[:, :, None, None] + 1e-6).all()
    x.square().mean().backward()  # both the logits and the colours learn
    assert G.net.main[-1].weight.grad.abs().sum() > 0
    assert G.net.palette.colours[0].weight.grad.abs().sum() > 0


def test_palette_picks_the_most_likely_colour_when_asked():
    """pick=hard: softmax mix in training (every colour gets a gradient), exactly one
    palette colour per pixel when sampling."""
    torch.manual_seed(0)
    h, logits = torch.randn(2, 8), torch.randn(2, 4, 6, 6)
    hard = PaletteOutput(8, 4, pick="hard")
    pal = hard.colours(h).reshape(2, 4, 3)
    picked = pal[torch.arange(2)[:, None, None], logits.argmax(1)].permute(0, 3, 1, 2)
    lg = logits.clone().requires_grad_(True)
    soft_train = hard.train()(lg, h)
    soft_train.square().sum().backward()
    assert lg.grad is not None and lg.grad.abs().sum() > 0  # training mixes: the logits learn
    soft_train = soft_train.detach()
    assert not torch.allclose(soft_train, picked, atol=1e-3)
    with torch.no_grad():
        assert torch.allclose(hard.eval()(logits, h), picked, atol=1e-6)
        soft = PaletteOutput(8, 4, pick="soft")
        soft.load_state_dict(hard.state_dict())
        assert torch.equal(soft.eval()(logits, h), soft_train)  # soft: the same in both modes
    # an exact tie shares the weight (no pixel is left without a colour)
    w = most_likely(torch.tensor([[1.0, 3.0, 3.0, 0.0]]))
    assert torch.equal(w, torch.tensor([[0.0, 0.5, 0.5, 0.0]]))


def test_palette_noise_draws_gumbel_softmax_in_training_only():
    """model.g_palette_noise: training mixes the colours by softmax(GAIN * logits + noise * g),
    g ~ Gumbel(0, 1), redrawn per call and per pixel, with gradients to the logits and the
    colours; sampling (eval mode) is the same as without the noise."""
    torch.manual_seed(0)
    h, logits = torch.randn(2, 8), torch.randn(2, 4, 16, 16) / PaletteOutput.GAIN
    plain = PaletteOutput(8, 4, pick="mix_lines")
    noisy = PaletteOutput(8, 4, pick="mix_lines", noise=1.0)
    noisy.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.equal(noisy.eval()(logits, h), plain.eval()(logits, h))
        pal = plain.colours(h).reshape(2, 4, 3)
        w = noisy.train().weights(logits, pal)
        assert torch.allclose(w.sum(1), torch.ones(2, 16, 16)) and (w >= 0).all()
        assert not torch.allclose(w, noisy.weights(logits, pal))  # redrawn on every call
        assert torch.equal(plain.train().weights(logits, pal),
                           (PaletteOutput.GAIN * logits).softmax(1))  # noise 0: the plain mix
        # The Gumbel-max trick: with the logits scaled away the noisy weights turn one-hot,
        # on each colour as often as its softmax probability says (here 0.1, 0.2, 0.3, 0.4).
        probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
        sharp = PaletteOutput(8, 4, noise=1e4)
        tiled = (probs.log()[None, :, None, None] / PaletteOutput.GAIN).expand(1, 4, 100, 100)
        w = sharp.train().weights(tiled * 1e4, pal[:1])
        share = w.argmax(1).flatten().bincount(minlength=4) / 1e4
        assert torch.allclose(share, probs, atol=0.02), share
    lg = logits.clone().requires_grad_(True)
    noisy.train()(lg, h).square().sum().backward()
    assert lg.grad.abs().sum() > 0 and noisy.colours[0].weight.grad.abs().sum() > 0
    G = build_generator(cfg_of("data.size=32", "model.g_ch=8", "model.z_dim=16",
                               "model.g_palette=4", "model.g_palette_noise=0.3"), K)
    assert G.net.palette.noise == 0.3, "the config reaches the layer"
    for bad, says in (("model.g_palette_noise=-1", "expected >= 0"),
                      ("model.g_palette_noise=nan", "expected >= 0")):
        with pytest.raises(ConfigError, match=f"g_palette_noise=.*{says}"):
            cfg_of("model.g_palette=4", bad)
    with pytest.raises(ConfigError, match="g_palette_noise=0.3 needs a palette output"):
        cfg_of("model.g_palette=0", "model.g_palette_pick=soft", "model.g_palette_noise=0.3")


def test_palette_vote_removes_isolated_pixels_and_keeps_regions():
    """pick=vote: each pixel takes the colour most likely over its 3x3 neighbourhood."""
    h = torch.randn(1, 8)
    vote = PaletteOutput(8, 3, pick="vote").eval()
    pal = vote.colours(h).reshape(3, 3)
    logits = torch.zeros(1, 3, 8, 8)
    logits[0, 0] = 1.0  # colour 0 everywhere ...
    logits[0, 0, :, 4:] = 0.0
    logits[0, 1, :, 4:] = 1.0  # ... but colour 1 on the right half
    logits[0, 2, 2, 1] = 5.0  # and one stray pixel of colour 2 on the left
    with torch.no_grad():
        out = vote(logits, h)[0]  # [3, 8, 8]
        hard = PaletteOutput(8, 3, pick="hard").eval()
        hard.load_state_dict(vote.state_dict())
        stray = hard(logits, h)[0]
    assert torch.allclose(stray[:, 2, 1], pal[2])  # hard keeps the stray pixel
    assert torch.allclose(out[:, 2, 1], pal[0])  # vote paints it like its neighbours
    assert torch.allclose(out[:, :, :4], pal[0][:, None, None].expand(3, 8, 4))
    assert torch.allclose(out[:, :, 4:], pal[1][:, None, None].expand(3, 8, 4))  # edge kept


def test_hard_palette_generator_draws_only_palette_colours():
    cfg = cfg_of("data.size=32", "model.g_ch=8", "model.z_dim=16", "model.cond=projection",
                 "model.g_palette=4", "model.g_palette_pick=hard")
    G = build_generator(cfg, K).eval()
    z, t = torch.randn(2, 16), tags_for(2)
    with torch.no_grad():
        x = G(z, t)
        pal = G.net.palette.colours(torch.cat([z, G.proj(t)], dim=1)).reshape(2, 4, 3)
    for i in range(2):  # every pixel is one of the image's 4 colours
        pixels = x[i].reshape(3, -1).T  # [S*S, 3]
        dist = (pixels[:, None, :] - pal[i][None]).abs().amax(-1).amin(-1)
        assert dist.max() < 1e-6


def test_palette_vote_lines_keeps_a_one_pixel_line():
    """pick=vote_lines counts the pixel's own vote 5 times: a confident 1-pixel line
    through a region stays (7 votes against 6), a lone pixel still goes; the plain vote
    paints the line over."""
    h = torch.randn(1, 8)
    logits = torch.zeros(1, 3, 8, 8)
    logits[0, 0] = 1.0  # colour 0 everywhere ...
    logits[0, 1, :, 3] = 2.0  # ... a vertical line of colour 1 ...
    logits[0, 2, 5, 6] = 2.0  # ... and one stray pixel of colour 2
    picks = {}
    for pick in ("vote", "vote_lines"):
        layer = PaletteOutput(8, 3, pick=pick).eval()
        with torch.no_grad():  # each layer's output, read against its own palette
            picks[pick] = layer(logits, h)[0], layer.colours(h).reshape(3, 3)
    out, pal = picks["vote_lines"]
    assert torch.allclose(out[:, :, 3], pal[1][:, None].expand(3, 8))  # the line stays
    assert torch.allclose(out[:, 5, 6], pal[0])  # the stray pixel goes
    out, pal = picks["vote"]
    assert torch.allclose(out[:, 2, 3], pal[0])  # the plain vote paints the line over


def test_palette_mix_lines_takes_the_nearer_of_the_two_likeliest_colours():
    """pick=mix_lines: where the softmax blends white and a tint into a colour the palette
    lacks, the most likely entry (white) loses to the runner-up that is nearer the blend;
    a confident pixel keeps its most likely colour, and a third, less likely colour is
    never drawn even when it is nearer the blend."""
    pal = torch.tensor([[[1.0, 1.0, 1.0], [0.6, 0.4, 0.6], [-1.0, -1.0, -1.0],
                         [0.5, 0.4, 0.5]]])  # white, a tint, black, a colour near the blend
    w = torch.zeros(1, 4, 1, 3)
    w[0, :, 0, 0] = torch.tensor([0.5, 0.3, 0.2, 0.0])  # blend ~ (0.48, 0.42, 0.48)
    w[0, :, 0, 1] = torch.tensor([0.9, 0.05, 0.05, 0.0])  # confident white
    w[0, :, 0, 2] = torch.tensor([0.45, 0.3, 0.1, 0.15])  # entry 3 is nearest, but third
    picked = nearer_of_two(w, pal)[0, :, 0]  # [K, 3 pixels]
    assert torch.equal(picked.argmax(0), torch.tensor([1, 0, 1]))
    assert torch.equal(picked.sum(0), torch.ones(3)) and set(picked.unique().tolist()) == {0.0, 1.0}
    # through the layer: a flat region of that blend is drawn in the tint, where the
    # plain pick paints it white, and a 1-pixel line survives as under vote_lines
    layer = PaletteOutput(8, 4, pick="mix_lines").eval()
    h = torch.randn(1, 8)
    with torch.no_grad():  # the palette MLP's last layer writes exactly ``pal``
        layer.colours[2].weight.zero_()
        layer.colours[2].bias.copy_(torch.atanh(pal[0].clamp(-0.999, 0.999)).reshape(12))
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2, 1e-6]))[None, :, None, None].repeat(1, 1, 6, 6)
    logits = logits / PaletteOutput.GAIN
    logits[0, 2, :, 3] = 5.0  # a confident black line
    with torch.no_grad():
        out = layer(logits, h)[0]
        hard = PaletteOutput(8, 4, pick="vote_lines").eval()
        hard.load_state_dict(layer.state_dict())
        plain = hard(logits, h)[0]
        pal_h = layer.colours(h).reshape(4, 3)
    assert torch.allclose(out[:, 0, 0], pal_h[1]) and torch.allclose(plain[:, 0, 0], pal_h[0])
    assert torch.allclose(out[:, :, 3], pal_h[2][:, None].expand(3, 6))


@pytest.mark.parametrize("bad", [("model.g_palette=1",), ("model.g_palette=8", "model.g_skip=true"),
                                 ("model.g_palette_pick=hard",),
                                 ("model.g_palette=8", "model.g_palette_pick=argmax"),
                                 ("model.g_palette=8", "model.arch=ml2020"),
                                 ("model.g_palette=8", "model.arch=resnet")])
def test_palette_is_refused_where_it_does_not_apply(bad):
    with pytest.raises(ConfigError, match="g_palette"):
        cfg_of(*bad)
