"""The ResNet family (SNGAN-projection / BigGAN style): shapes, parameter counts, options."""

from __future__ import annotations

import math

import pytest
import torch
from test_models import GROUPS, K, n_params, tags_for  # the same 22 avatar tags
from torch import nn
from torch.nn.utils import parametrize

from trainer.config import ConfigError, load_config
from trainer.models import DOutput, build_discriminator, build_generator
from trainer.models.resnet import ConditionalBatchNorm2d


def cfg_of(*overrides: str):
    return load_config(None, ["model.arch=resnet", *overrides])


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def expected_g(size: int, z: int, ch: int, embed: int, hier: bool) -> int:
    """Parameter count of ResNetGenerator from its layer formulas."""
    n = int(math.log2(size)) - 2
    chunk = z // (n + 1) if hier else 0
    first = z - n * chunk
    cond = embed + chunk
    c = ch * 2 ** (n - 1)
    total = K * embed  # the bias-free tag embedding
    total += (first + (0 if hier else embed)) * c * 16 + c * 16  # linear
    for _ in range(n):
        out = max(c // 2, ch)
        total += 2 * cond * c + 2 * cond * out  # cBN gains and biases (bias-free linears)
        total += conv(c, out, 3) + conv(out, out, 3) + conv(c, out, 1)
        c = out
    return total + 2 * c + conv(c, 3, 3)  # final BN, output conv


def expected_d(size: int, ch: int) -> int:
    """ResNetEncoder + projection head (4x4 conv with bias, bias-free embedding)."""
    n = int(math.log2(size)) - 2
    total, c_in, c = 0, 3, ch
    for _ in range(n):
        total += conv(c_in, c, 3) + conv(c, c, 3) + conv(c_in, c, 1)
        c_in, c = c, c * 2
    return total + conv(c_in, 1, 4) + K * c_in * 16


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("hier", [False, True])
def test_generator_shapes_and_parameter_count(size, hier):
    cfg = cfg_of(f"data.size={size}", "model.cond=projection", "model.g_ch=8",
                 "model.tag_embed=16", f"model.hier_z={str(hier).lower()}")
    G = build_generator(cfg, K)
    out = G(torch.randn(3, cfg.model.z_dim), tags_for(3))
    assert out.shape == (3, 3, size, size)
    assert out.abs().max() <= 1
    assert n_params(G) == expected_g(size, cfg.model.z_dim, 8, 16, hier)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_discriminator_shapes_and_parameter_count(size):
    cfg = cfg_of(f"data.size={size}", "model.cond=projection", "model.d_ch=8",
                 "model.spectral_norm=true", "model.d_bn=false")
    D = build_discriminator(cfg, GROUPS)
    out = D(torch.randn(3, 3, size, size), tags_for(3))
    assert isinstance(out, DOutput) and out.score.shape == (3,)
    assert n_params(D) == expected_d(size, 8)
    convs = [m for m in D.body.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(parametrize.is_parametrized(m, "weight") for m in convs)


@pytest.mark.parametrize("cond", ["none", "acgan", "projection", "dense", "spatial",
                                  "projection_acgan"])
def test_every_head_fits_the_resnet_body(cond):
    cfg = cfg_of("data.size=32", f"model.cond={cond}", "model.d_ch=8", "model.g_ch=8")
    G = build_generator(cfg, K)
    D = build_discriminator(cfg, GROUPS if cond != "none" else [])
    tags = tags_for(2) if cond != "none" else None
    fake = G(torch.randn(2, cfg.model.z_dim), tags)
    out = D(fake, tags)
    assert out.score.shape == (2,)
    assert (out.aux is not None) == cond.endswith("acgan")


def test_tags_change_the_image_through_conditional_batchnorm():
    torch.manual_seed(0)
    cfg = cfg_of("data.size=32", "model.cond=projection", "model.g_ch=8")
    G = build_generator(cfg, K)
    for m in G.modules():  # cBN starts as plain BN (zero gains): give it some weight
        if isinstance(m, ConditionalBatchNorm2d) and m.gain is not None:
            nn.init.normal_(m.gain.weight, 0, 0.5)
    G.eval()
    z = torch.randn(1, cfg.model.z_dim).repeat(2, 1)
    t = tags_for(2)
    assert not torch.allclose(G(z, t)[0], G(z, t)[1])
    assert torch.allclose(G(z, t)[0], G(z[:1], t[:1])[0], atol=1e-5)  # eval: per image


def test_conditional_batchnorm_starts_as_plain_batchnorm():
    bn = ConditionalBatchNorm2d(4, 6)
    x = torch.randn(5, 4, 3, 3)
    ref = nn.BatchNorm2d(4, affine=False)
    assert torch.allclose(bn(x, torch.randn(5, 6)), ref(x), atol=1e-6)


def test_summed_embedding_is_one_vector_per_tag():
    """The tag embedding of [hair i, eyes j] is the embedding of hair i plus that of eyes j."""
    cfg = cfg_of("data.size=32", "model.cond=projection", "model.tag_embed=16")
    emb = build_generator(cfg, K).proj
    t = tags_for(1)
    hair, eyes = t.clone(), t.clone()
    hair[:, GROUPS[0]:] = 0
    eyes[:, :GROUPS[0]] = 0
    assert torch.allclose(emb(t), emb(hair) + emb(eyes), atol=1e-6)
    assert torch.allclose(emb(torch.zeros(1, K)), torch.zeros(1, 16))  # untagged adds nothing


def test_config_errors_name_the_option():
    with pytest.raises(ConfigError, match="model.hier_z needs model.arch=resnet"):
        load_config(None, ["model.hier_z=true"])
    with pytest.raises(ConfigError, match="model.arch=resnet supports"):
        cfg_of("data.size=256")
    with pytest.raises(ConfigError, match="model.g_upsample"):
        load_config(None, ["model.arch=ml2020", "model.g_upsample=nearest"])


def test_nearest_upsampling_dcgan_generator_has_no_transposed_convs():
    cfg = load_config(None, ["data.size=64", "model.cond=projection", "model.g_upsample=nearest"])
    G = build_generator(cfg, K)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in G.net.main[3:])
    assert G(torch.randn(2, 100), tags_for(2)).shape == (2, 3, 64, 64)
